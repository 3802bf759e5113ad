"""Interpreters (VEBI, ICE, topics) as sklearn-style estimators, their store-level drivers and the Features artifact
(``actstore.interpret(...)`` calls :func:`interpret`)."""

from .._callable import make_callable
from .features import Features
from .ice import ICE
from .run import METHODS, fit_ice, fit_topic, fit_vebi, interpret, save_features, vebi_stats
from .topic import TOPIC_DEFAULTS, TopicModel
from .vebi import DEFAULT_MU, VEBI, InterpretError, gram_stats, solve_mu_lasso

__all__ = ["ICE", "VEBI", "DEFAULT_MU", "InterpretError", "gram_stats", "solve_mu_lasso", "Features", "METHODS",
           "fit_ice", "fit_topic", "fit_vebi", "interpret", "save_features", "vebi_stats", "TOPIC_DEFAULTS", "TopicModel"]

make_callable(__name__, interpret)
