"""Interpreters (VEBI, ICE, topics): scikit-learn estimators, their store-level protocols found through a
registry, and the Features artifact (``actstore.interpret(...)`` calls :func:`interpret`)."""

from .._callable import make_callable
from ..errors import InterpretError
from .base import (ClassData, EvalContext, Interpreter, Target, get_interpreter, list_interpreters, register,
                   store_model, store_model_head)
from .features import Features
from .ice import ICE
from .run import default_params, interpret, save_features
from .topic import TopicModel
from .vebi import DEFAULT_MU, VEBI, calibrate_mu, gram_stats, solve_mu_lasso

__all__ = ["ICE", "VEBI", "TopicModel", "DEFAULT_MU", "InterpretError", "gram_stats", "solve_mu_lasso", "calibrate_mu",
           "Features", "Interpreter", "ClassData", "EvalContext", "Target", "register", "get_interpreter",
           "list_interpreters", "default_params", "interpret", "save_features", "store_model", "store_model_head"]

make_callable(__name__, interpret)
