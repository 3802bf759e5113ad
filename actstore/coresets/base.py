"""Budgets, input checks and the selector registry shared by every coreset selector.

A selector is registered with a *per-class* function
``fn(X_c, budgets, *, rates, seed, label, **params)`` that returns, for each (budget, rate), the
sorted local indices it keeps. The array-level functions and
the store-level driver both call it class by class, so a new selector plugs in by registering one
function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SelectionError

__all__ = ["PAPER_RATES", "SelectionError", "Selector", "register", "get_selector", "list_selectors", "class_budget", "check_rate",
           "check_features", "class_groups", "run_per_class"]


PAPER_RATES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.95)
"""The paper's grid of selection rates ρ (§4.1)."""

PerClass = Callable[..., list[np.ndarray]]


@dataclass(frozen=True)
class Selector:
    """A registered selector: its per-class function and what it needs."""

    name: str
    per_class: PerClass
    needs_features: bool = True
    needs_scores: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    constraints: dict[str, list[Any]] = field(default_factory=dict)  # scikit-learn style, one list per parameter


_REGISTRY: dict[str, Selector] = {}


def register(name: str, *, needs_features: bool = True, needs_scores: bool = False,
             defaults: dict[str, Any] | None = None, description: str = "",
             constraints: dict[str, list[Any]] | None = None) -> Callable[[PerClass], PerClass]:
    """Decorator: register ``fn`` as the per-class function of selector ``name``; ``constraints`` declare
    each parameter's type and range (:mod:`actstore.params`), checked before any work."""
    def wrap(fn: PerClass) -> PerClass:
        _REGISTRY[name] = Selector(name, fn, needs_features, needs_scores, dict(defaults or {}), description,
                                   dict(constraints or {}))
        return fn

    return wrap


def get_selector(name: str) -> Selector:
    if name not in _REGISTRY:
        raise SelectionError(f"unknown selection method '{name}'; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_selectors() -> dict[str, Selector]:
    """Every registered selector by name."""
    return dict(_REGISTRY)


def check_params(selector: Selector, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` coerced to their declared types, validated and merged over the selector's defaults;
    unknown names are an error."""
    unknown = set(params) - set(selector.defaults)
    if unknown:
        allowed = ", ".join(sorted(selector.defaults)) or "none"
        raise SelectionError(f"unknown parameter(s) {sorted(unknown)} for '{selector.name}'; allowed: {allowed}")
    from ..params import check_params as checked

    return {**selector.defaults, **checked(selector.constraints, params, f"'{selector.name}'")}


def check_rate(rate: float) -> float:
    rate = float(rate)
    if not (0.0 < rate <= 1.0) or not np.isfinite(rate):
        raise SelectionError(f"rate must be in (0, 1], got {rate}")
    return rate


def class_budget(n: int, rate: float) -> int:
    """B_c = floor(ρ·n_c + 1/2), clipped to [1, n_c] (0 for an empty class)."""
    if n <= 0:
        return 0
    return int(min(n, max(1, np.floor(rate * n + 0.5))))


def check_features(X: np.ndarray, where: str = "features") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise SelectionError(f"{where} must be 2-D (rows x features), got shape {X.shape}")
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise SelectionError(f"{where} hold NaN or Inf (first at row {bad[0]}, column {bad[1]}); "
                             "re-extract the store or drop those rows")
    return X


def class_groups(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices of each label present, in ascending row order."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise SelectionError(f"labels must be 1-D, got shape {labels.shape}")
    order = np.argsort(labels, kind="stable")
    values, starts = np.unique(labels[order], return_index=True)
    bounds = [*starts[1:], len(order)]
    return {int(v): order[s:e] for v, s, e in zip(values, starts, bounds, strict=True)}


def run_per_class(name: str, X: np.ndarray | None, labels: np.ndarray, rate: float, seed: int,
                  scores: np.ndarray | None = None, **params: Any) -> np.ndarray:
    """Array-level driver: the sorted rows ``name`` keeps at ``rate``, class by class."""
    selector = get_selector(name)
    params = check_params(selector, params)
    rate = check_rate(rate)
    labels = np.asarray(labels)
    if X is not None:
        X = check_features(X)
        if X.shape[0] != labels.shape[0]:
            raise SelectionError(f"features have {X.shape[0]} rows but labels {labels.shape[0]}")
    if scores is not None:
        scores = check_features(np.asarray(scores, dtype=np.float64)[:, None], "scores")[:, 0]
        if scores.shape[0] != labels.shape[0]:
            raise SelectionError(f"scores have {scores.shape[0]} rows but labels {labels.shape[0]}")
    keep = []
    for label, rows in class_groups(labels).items():
        extra = {"scores": scores[rows]} if selector.needs_scores else {}
        Xc = X[rows] if X is not None else np.empty((len(rows), 0))
        (local,) = selector.per_class(Xc, [class_budget(len(rows), rate)], rates=[rate], seed=seed,
                                      label=label, **extra, **params)
        keep.append(rows[local])
    return np.sort(np.concatenate(keep)) if keep else np.empty(0, np.int64)
