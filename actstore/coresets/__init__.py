"""Coreset selectors (random, moderate, dgpruning, d2pruning, kcenter), the Coreset artifact, store-level selection."""

from .base import SelectionError, class_budget, get_selector, register, list_selectors
from .selectors import d2pruning, dgpruning, kcenter, knn_graph, moderate, random
from .artifact import Coreset
from .select import PAPER_RATES, save_coreset, select, select_many

__all__ = ["SelectionError", "class_budget", "get_selector", "register", "list_selectors", "d2pruning", "dgpruning",
           "kcenter", "knn_graph", "moderate", "random", "Coreset", "PAPER_RATES", "save_coreset", "select", "select_many"]
