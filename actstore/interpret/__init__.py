"""Interpreters (VEBI, ICE) as sklearn-style estimators, their store-level drivers and the Features artifact
(``actstore.interpret(...)`` calls :func:`interpret`)."""

from .._callable import make_callable
from .features import Features
from .ice import ICE
from .run import METHODS, fit_ice, fit_vebi, interpret, save_features, vebi_stats
from .vebi import DEFAULT_MU, VEBI, InterpretError, gram_stats, solve_mu_lasso

__all__ = ["ICE", "VEBI", "DEFAULT_MU", "InterpretError", "gram_stats", "solve_mu_lasso", "Features", "METHODS",
           "fit_ice", "fit_vebi", "interpret", "save_features", "vebi_stats"]

make_callable(__name__, interpret)
