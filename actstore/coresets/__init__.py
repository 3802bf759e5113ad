"""Coreset selectors (random, moderate, dgpruning, d2pruning, kcenter), the Coreset artifact, store-level selection."""

from ..errors import SelectionError
from .base import PAPER_RATES, class_budget, get_selector, list_selectors, register
from .selectors import d2pruning, dgpruning, kcenter, knn_graph, moderate, random, random_subset
from .artifact import Coreset
from .select import save_coreset, select, select_many

__all__ = ["SelectionError", "class_budget", "get_selector", "register", "list_selectors", "d2pruning", "dgpruning",
           "kcenter", "knn_graph", "moderate", "random", "random_subset", "Coreset", "PAPER_RATES", "save_coreset", "select", "select_many"]
