"""VEBI (Oramas et al.): per class, the μ-lasso  min ||L_c - X w||²  s.t.  w >= 0, ||w||₁ <= μ.

The problem depends on the data only through G = XᵀX, b = XᵀL and the class counts, so the
store-level pass accumulates those (float64) and the solver never sees a row. Each class is
solved with ``sklearn.linear_model.lars_path_gram`` (lasso, positive) and the path is linearly
interpolated where ||w||₁ = μ: the L1 norm is monotone along the positive lasso path, and every
point of the path solves the constrained problem for its own L1 norm (reference §1.4, route 2).

μ sets how many units are kept. Instead of μ, ``units_per_class=K`` calibrates it from the same
paths: the smallest μ at which at least half of the classes (those with samples) keep K or more
units. The paper's protocol fixes μ for R and R', so the store-level driver calibrates once on the
full data and gives that μ to every coreset (whose unit counts may then differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from ..errors import InterpretError, ParameterError
from ..params import Integral, Interval, Real, validate
from .inputs import checked_array, class_labels

__all__ = ["VEBI", "InterpretError", "DEFAULT_MU", "solve_mu_lasso", "calibrate_mu", "gram_stats", "LassoSolution",
           "accumulate_gram"]

DEFAULT_MU = 1e-3
"""The seed author's PyTorch VEBI (the closest code to the paper) uses μ = 0.001 with exactly the
energy-share unit features the store holds (reference §1.2). With those features it keeps about
one unit per class (``benchmarks/bench_interpret.py``: 1.0 on average over 1000 classes), so R and
R' often hold the same single unit; ``units_per_class`` calibrates μ to a meaningful set instead.
The ICIP'23 code's μ = 10 belongs to raw L2-norm features, not to these."""

CALIBRATION_MARGIN = 1e-3  # μ sits this fraction into the path segment where the median class's K-th unit enters


@dataclass(frozen=True)
class LassoSolution:
    """One class's solution: ``w``, the LARS steps taken, and whether the path reached μ or its own end."""

    w: np.ndarray
    n_iter: int
    converged: bool


def _path(G: np.ndarray, b: np.ndarray, n_samples: int, positive: bool, steps: int) -> tuple[np.ndarray, bool]:
    """(coefs (P x knots), complete): the lasso path's first ``steps`` steps; complete when it ended before."""
    from sklearn.linear_model import lars_path_gram

    _, _, coefs = lars_path_gram(Xy=b, Gram=G, n_samples=max(int(n_samples), 1), method="lasso",
                                 positive=positive, max_iter=steps, return_path=True)
    return coefs, coefs.shape[1] < steps + 1


def _path_at_mu(G: np.ndarray, b: np.ndarray, n_samples: int, mu: float, positive: bool) -> LassoSolution:
    P = G.shape[0]
    steps = 8
    while True:
        coefs, complete = _path(G, b, n_samples, positive, steps)
        l1 = np.abs(coefs).sum(axis=0)
        if l1[-1] >= mu or complete or steps >= 4 * P:
            break  # reached μ, or the path ended before max_iter: it is complete
        steps *= 4
    n_iter = coefs.shape[1] - 1
    if l1[-1] <= mu:
        return LassoSolution(coefs[:, -1].copy(), n_iter, bool(l1[-1] >= mu or complete))
    t = int(np.searchsorted(l1, mu, side="right")) - 1  # l1[t] <= μ < l1[t + 1]
    frac = (mu - l1[t]) / (l1[t + 1] - l1[t])
    return LassoSolution(coefs[:, t] + frac * (coefs[:, t + 1] - coefs[:, t]), t + 1, True)


def _screen(G: np.ndarray, b: np.ndarray, positive: bool, screen: int) -> np.ndarray | None:
    """The units a screened solve starts from (the most correlated), or None to solve unscreened."""
    if not positive or G.shape[0] <= 2 * screen:
        return None
    return np.sort(np.argsort(-b, kind="stable")[:screen])


def _kkt_violators(G: np.ndarray, b: np.ndarray, w: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Units outside ``chosen`` that correlate more with the residual than the active ones."""
    support = np.flatnonzero(w > 0)
    corr = b - G[:, support] @ w[support]
    level = float(corr[support].max()) if support.size else 0.0  # the multiplier λ of ||w||₁
    outside = np.setdiff1d(np.arange(G.shape[0]), chosen, assume_unique=True)
    tol = 1e-10 * max(1.0, float(np.abs(b).max()))
    violators = outside[corr[outside] > level + tol]
    return violators[np.argsort(-corr[violators], kind="stable")]


def solve_lasso(G: np.ndarray, b: np.ndarray, n_samples: int, mu: float, positive: bool = True,
                screen: int = 256) -> LassoSolution:
    """w on the lasso path of (G, b) where ||w||₁ = μ (the path's end when it never reaches μ).

    With P > 2·``screen`` units the path is first solved on the ``screen`` units most correlated
    with the class, then the KKT conditions are checked on all P (no unit outside may correlate
    more than the active ones); violators join and it is solved again. The answer is the exact
    full-problem solution, without copying the P x P Gram matrix for every class.
    """
    P = G.shape[0]
    if not np.any(b):
        return LassoSolution(np.zeros(P), 0, True)
    chosen = _screen(G, b, positive, screen)
    if chosen is None:
        return _path_at_mu(G, b, n_samples, mu, positive)
    while True:
        sub = _path_at_mu(np.ascontiguousarray(G[np.ix_(chosen, chosen)]), b[chosen], n_samples, mu, positive)
        if np.abs(sub.w).sum() < mu * (1 - 1e-9):
            # the path ended before ||w||₁ = μ (the constraint is inactive): its end point is only
            # as exact as LARS's stopping rule, so take the full problem's own path end
            return _path_at_mu(G, b, n_samples, mu, positive)
        w = np.zeros(P)
        w[chosen] = sub.w
        violators = _kkt_violators(G, b, w, chosen)
        if violators.size == 0:
            return LassoSolution(w, sub.n_iter, sub.converged)
        chosen = np.sort(np.concatenate([chosen, violators[:max(screen, violators.size)]]))


def solve_mu_lasso(G: np.ndarray, b: np.ndarray, n_samples: int, mu: float, positive: bool = True,
                   screen: int = 256) -> np.ndarray:
    """The weights of :func:`solve_lasso`."""
    return solve_lasso(G, b, n_samples, mu, positive, screen).w


def _first_reach(G: np.ndarray, b: np.ndarray, n_samples: int, units: int, positive: bool, screen: int) -> float:
    """A μ (L1 norm) just inside the first segment of class ``b``'s path that holds ``units`` units:
    ``CALIBRATION_MARGIN`` of the way from its start (inf if the path never holds that many). Read off
    the screened path (the few first units of a class are among its most correlated);
    :func:`calibrate_mu` checks the final counts with exact solves."""
    chosen = _screen(G, b, positive, max(screen, 4 * units))
    if chosen is not None:
        G, b = np.ascontiguousarray(G[np.ix_(chosen, chosen)]), b[chosen]
    steps = 2 * units + 8
    while True:
        coefs, complete = _path(G, b, n_samples, positive, steps)
        active = coefs > 0
        counts = (active[:, :-1] | active[:, 1:]).sum(axis=0)  # units on each open segment of the path
        reached = np.flatnonzero(counts >= units)
        if reached.size:
            start, end = np.abs(coefs[:, reached[0]:reached[0] + 2]).sum(axis=0)
            return float(start + CALIBRATION_MARGIN * (end - start))
        if complete or steps >= 4 * G.shape[0]:
            return float("inf")
        steps *= 4


def calibrate_mu(G: np.ndarray, b: np.ndarray, n_samples: int, units_per_class: int, positive: bool = True,
                 screen: int = 256) -> float:
    """The smallest μ at which at least half of the classes with samples keep ``units_per_class`` units.

    Each class's path gives the L1 norm just after its K-th unit enters; μ is the median class's. Lasso
    paths can drop a unit later, so the counts are checked with exact solves and μ moves to the next
    class's entry point if needed."""
    P = G.shape[0]
    if not 1 <= units_per_class <= P:
        raise ParameterError(f"units_per_class must be in 1..{P} (the number of units), got {units_per_class}")
    classes = [c for c in range(b.shape[1]) if np.any(b[:, c])]
    if not classes:
        raise InterpretError("no class has samples: cannot calibrate mu")
    reach = np.sort([_first_reach(G, b[:, c], n_samples, units_per_class, positive, screen) for c in classes])
    need = -(-len(classes) // 2)
    for candidate in reach[need - 1:]:
        if not np.isfinite(candidate):
            break
        mu = float(candidate)
        kept = [int((solve_mu_lasso(G, b[:, c], n_samples, mu, positive, screen) > 0).sum()) for c in classes]
        if sum(k >= units_per_class for k in kept) >= need:
            return mu
    raise InterpretError(f"no mu gives half of the classes {units_per_class} units (the lasso paths end with fewer); "
                         "ask for fewer units_per_class")


def gram_stats(X: np.ndarray, y: np.ndarray, n_classes: int, sample_weight: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(G = Xᵀ W X, b = Xᵀ W L, weighted class counts) in float64, L the one-hot of ``y``."""
    X = np.asarray(X, np.float64)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    Xw = X * w[:, None]
    L = np.zeros((len(y), n_classes))
    L[np.arange(len(y)), y] = 1.0
    return Xw.T @ X, Xw.T @ L, np.bincount(y, weights=w, minlength=n_classes)


def accumulate_gram(G: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray) -> None:
    """G += XᵀX and b[:, c] += Σ_{i: y_i = c} x_i, in place, in float64 (X: rows x P unit features).

    G (P x P, C or Fortran order, symmetric) gets a symmetric rank-k update (BLAS ``dsyrk``: half
    a GEMM's work, no P x P temporary, the GIL released so the read-ahead runs beside it) on one
    triangle, mirrored to the other afterwards; b (P x K) gets each class's row sums (one pass over
    X, in the classes' order of appearance)."""
    from .._blas import syrk_upper
    from ._gram_kernels import class_sums, mirror_lower

    X = np.asarray(X)
    if X.shape[0] == 0:
        return
    X64 = np.ascontiguousarray(X, dtype=np.float64)
    if G.flags.c_contiguous:  # Gᵀ is the Fortran matrix BLAS updates in place: its upper triangle is G's lower
        syrk_upper(G.T, X64)
        mirror_lower(G)
    elif G.flags.f_contiguous:
        syrk_upper(G, X64)  # G's upper triangle: Gᵀ's lower
        mirror_lower(G.T)
    else:
        G += X64.T @ X64
    classes, inv = np.unique(np.asarray(y), return_inverse=True)
    b[:, classes] += class_sums(X64, inv.astype(np.int64), len(classes)).T


class VEBI(BaseEstimator):
    """Relevant units per class by the μ-lasso over unit features (reference §1). Deterministic.

    ``fit(X, y)`` with X (n x P) unit features and integer labels y (the model's predicted class
    by default at store level), or ``fit_gram(G, b, n)``. Give ``mu`` or ``units_per_class``
    (default: μ = :data:`DEFAULT_MU`). Fitted: ``coef_`` (classes x units, w >= 0), ``mu_`` (the μ
    used), ``relevant_units_[c]`` (indices with w > 0), ``n_iter_`` and ``converged_`` per class (the
    path reached μ, or ended before it: then the constraint is inactive and the path's end is exact),
    ``unit_table_`` (layer, channel) when given, ``n_features_in_``.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "mu": [Interval(Real, 0, None, closed="neither"), None],
        "units_per_class": [Interval(Integral, 1, None, closed="left"), None],
        "positive": ["boolean"],
    }

    def __init__(self, mu: float | None = None, units_per_class: int | None = None, positive: bool = True) -> None:
        self.mu = mu
        self.units_per_class = units_per_class
        self.positive = positive

    def _check(self) -> None:
        validate(self._parameter_constraints, self.get_params(deep=False), "VEBI")
        if self.mu is not None and not np.isfinite(self.mu):
            raise ParameterError(f"mu must be > 0 and finite, got {self.mu}")
        if self.mu is not None and self.units_per_class is not None:
            raise ParameterError("give mu or units_per_class, not both (units_per_class calibrates mu)")
        if self.units_per_class is not None and not self.positive:
            raise ParameterError("units_per_class needs positive=True (VEBI's non-negative weights)")

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
            n_classes: int | None = None, unit_table: list[tuple[str, int]] | None = None) -> VEBI:
        self._check()
        X = checked_array(X, "VEBI (unit features (n, P))")
        y = class_labels(y, len(X), "VEBI")
        if sample_weight is not None and not np.asarray(sample_weight, np.float64).sum() > 0:
            raise InterpretError("VEBI: sample weights must not all be zero")
        k = int(n_classes or (y.max() + 1 if len(y) else 0))
        G, b, counts = gram_stats(X, y, k, sample_weight)
        return self.fit_gram(G, b, len(X), unit_table=unit_table, class_counts=counts)

    def fit_gram(self, G: np.ndarray, b: np.ndarray, n: int, unit_table: list[tuple[str, int]] | None = None,
                 class_counts: np.ndarray | None = None) -> VEBI:
        """Solve every class from the sufficient statistics G (P x P) and b (P x K)."""
        self._check()
        G, b = np.asarray(G, np.float64), np.asarray(b, np.float64)
        if G.ndim != 2 or G.shape[0] != G.shape[1] or b.ndim != 2 or b.shape[0] != G.shape[0]:
            raise InterpretError(f"need G (P, P) and b (P, K); got {G.shape} and {b.shape}")
        if self.units_per_class is not None:
            self.mu_ = calibrate_mu(G, b, n, int(self.units_per_class), self.positive)
        else:
            self.mu_ = float(self.mu if self.mu is not None else DEFAULT_MU)
        solutions = [solve_lasso(G, b[:, c], n, self.mu_, self.positive) for c in range(b.shape[1])]
        self.coef_ = np.stack([s.w for s in solutions]) if solutions else np.zeros((0, G.shape[0]))
        self.n_iter_ = np.array([s.n_iter for s in solutions], np.int64)
        self.converged_ = np.array([s.converged for s in solutions], bool)
        self.relevant_units_ = [np.flatnonzero(w > 0) for w in self.coef_]
        self.n_samples_ = int(n)
        self.n_features_in_ = int(G.shape[0])
        self.class_counts_ = None if class_counts is None else np.asarray(class_counts)
        self.unit_table_ = unit_table
        self.dead_units_ = np.flatnonzero(np.diag(G) == 0)  # all-zero units: never selectable
        return self

    def units(self, c: int) -> list[tuple[str, int]] | np.ndarray:
        """Class ``c``'s relevant units, as (layer, channel) when the unit table is known."""
        idx = self.relevant_units_[c]
        return [self.unit_table_[i] for i in idx] if self.unit_table_ is not None else idx
