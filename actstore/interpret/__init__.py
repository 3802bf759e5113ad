"""Interpreters (VEBI, ICE) as sklearn-style estimators, and their store-level drivers."""

from .ice import ICE
from .vebi import DEFAULT_MU, VEBI, InterpretError, gram_stats, solve_mu_lasso

__all__ = ["ICE", "VEBI", "DEFAULT_MU", "InterpretError", "gram_stats", "solve_mu_lasso"]
