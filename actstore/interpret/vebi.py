"""VEBI (Oramas et al.): per class, the μ-lasso  min ||L_c - X w||²  s.t.  w >= 0, ||w||₁ <= μ.

The problem depends on the data only through G = XᵀX, b = XᵀL and the class counts, so the
store-level pass accumulates those (float64) and the solver never sees a row. Each class is
solved with ``sklearn.linear_model.lars_path_gram`` (lasso, positive) and the path is linearly
interpolated where ||w||₁ = μ: the L1 norm is monotone along the positive lasso path, and every
point of the path solves the constrained problem for its own L1 norm (reference §1.4, route 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ActstoreError

__all__ = ["VEBI", "InterpretError", "DEFAULT_MU", "solve_mu_lasso", "gram_stats", "accumulate_gram"]

DEFAULT_MU = 1e-3
"""The seed author's PyTorch VEBI (the closest code to the paper) uses μ = 0.001 with exactly the
energy-share unit features the store holds (reference §1.2); with those features it keeps a handful
of units per class. The ICIP'23 code's μ = 10 belongs to raw L2-norm features, not to these."""


class InterpretError(ActstoreError, ValueError):
    """Bad input to an interpreter (parameters, data, labels)."""


def _path_at_mu(G: np.ndarray, b: np.ndarray, n_samples: int, mu: float, positive: bool) -> np.ndarray:
    from sklearn.linear_model import lars_path_gram

    P = G.shape[0]
    steps = 8
    while True:
        _, _, coefs = lars_path_gram(Xy=b, Gram=G, n_samples=max(int(n_samples), 1), method="lasso",
                                     positive=positive, max_iter=steps, return_path=True)
        l1 = np.abs(coefs).sum(axis=0)
        if l1[-1] >= mu or coefs.shape[1] < steps + 1 or steps >= 4 * P:
            break  # reached μ, or the path ended before max_iter: it is complete
        steps *= 4
    if l1[-1] <= mu:
        return coefs[:, -1].copy()
    t = int(np.searchsorted(l1, mu, side="right")) - 1  # l1[t] <= μ < l1[t + 1]
    frac = (mu - l1[t]) / (l1[t + 1] - l1[t])
    return coefs[:, t] + frac * (coefs[:, t + 1] - coefs[:, t])


def solve_mu_lasso(G: np.ndarray, b: np.ndarray, n_samples: int, mu: float, positive: bool = True,
                   screen: int = 256) -> np.ndarray:
    """w on the lasso path of (G, b) where ||w||₁ = μ (the path's end when it never reaches μ).

    With P > 2·``screen`` units the path is first solved on the ``screen`` units most correlated
    with the class, then the KKT conditions are checked on all P (no unit outside may correlate
    more than the active ones); violators join and it is solved again. The answer is the exact
    full-problem solution, without copying the P x P Gram matrix for every class.
    """
    P = G.shape[0]
    if not np.any(b):
        return np.zeros(P)
    if not positive or P <= 2 * screen:
        return _path_at_mu(G, b, n_samples, mu, positive)
    chosen = np.argsort(-b, kind="stable")[:screen]
    while True:
        chosen = np.sort(chosen)
        w_sub = _path_at_mu(np.ascontiguousarray(G[np.ix_(chosen, chosen)]), b[chosen], n_samples, mu, positive)
        if np.abs(w_sub).sum() < mu * (1 - 1e-9):
            # the path ended before ||w||₁ = μ (the constraint is inactive): its end point is only
            # as exact as LARS's stopping rule, so take the full problem's own path end
            return _path_at_mu(G, b, n_samples, mu, positive)
        w = np.zeros(P)
        w[chosen] = w_sub
        support = np.flatnonzero(w > 0)
        corr = b - G[:, support] @ w[support]
        level = float(corr[support].max()) if support.size else 0.0  # the multiplier λ of ||w||₁
        outside = np.setdiff1d(np.arange(P), chosen, assume_unique=True)
        tol = 1e-10 * max(1.0, float(np.abs(b).max()))
        violators = outside[corr[outside] > level + tol]
        if violators.size == 0:
            return w
        extra = violators[np.argsort(-corr[violators], kind="stable")[:max(screen, violators.size)]]
        chosen = np.concatenate([chosen, extra])


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
    a GEMM's work, no P x P temporary) on one triangle, mirrored to the other afterwards; b (P x K)
    gets each class's row sums (one pass over X, in the classes' order of appearance)."""
    from scipy.linalg.blas import dsyrk

    from ._gram_kernels import class_sums, mirror_lower

    X = np.asarray(X)
    if X.shape[0] == 0:
        return
    X64 = np.ascontiguousarray(X, dtype=np.float64)
    if G.flags.c_contiguous:  # Gᵀ is the Fortran matrix BLAS updates in place: its upper triangle is G's lower
        dsyrk(1.0, X64.T, beta=1.0, c=G.T, trans=0, lower=0, overwrite_c=1)
        mirror_lower(G)
    elif G.flags.f_contiguous:
        dsyrk(1.0, X64.T, beta=1.0, c=G, trans=0, lower=0, overwrite_c=1)  # G's upper triangle: Gᵀ's lower
        mirror_lower(G.T)
    else:
        G += X64.T @ X64
    classes, inv = np.unique(np.asarray(y), return_inverse=True)
    b[:, classes] += class_sums(X64, inv.astype(np.int64), len(classes)).T


class VEBI:
    """Relevant units per class by the μ-lasso over unit features (reference §1).

    ``fit(X, y)`` with X (n x P) unit features and integer labels y (the model's predicted class
    by default at store level), or ``fit_gram(G, b, n)``. Fitted: ``coef_`` (classes x units, w >= 0),
    ``relevant_units_[c]`` (indices with w > 0), ``unit_table_`` (layer, channel) when given.
    """

    def __init__(self, mu: float = DEFAULT_MU, positive: bool = True) -> None:
        self.mu = mu
        self.positive = positive

    def _check(self) -> None:
        if not np.isfinite(self.mu) or self.mu <= 0:
            raise InterpretError(f"mu must be > 0, got {self.mu}")

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
            n_classes: int | None = None, unit_table: list[tuple[str, int]] | None = None) -> VEBI:
        self._check()
        X = np.asarray(X)
        y = np.asarray(y, dtype=np.int64)
        if X.ndim != 2 or len(X) != len(y):
            raise InterpretError(f"X must be (n, P) with one label per row; got X {X.shape}, y {y.shape}")
        if not np.isfinite(X).all():
            raise InterpretError("unit features hold NaN or Inf")
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
        self.coef_ = np.stack([solve_mu_lasso(G, b[:, c], n, self.mu, self.positive) for c in range(b.shape[1])])
        self.relevant_units_ = [np.flatnonzero(w > 0) for w in self.coef_]
        self.n_samples_ = int(n)
        self.class_counts_ = None if class_counts is None else np.asarray(class_counts)
        self.unit_table_ = unit_table
        self.dead_units_ = np.flatnonzero(np.diag(G) == 0)  # all-zero units: never selectable
        return self

    def units(self, c: int) -> list[tuple[str, int]] | np.ndarray:
        """Class ``c``'s relevant units, as (layer, channel) when the unit table is known."""
        idx = self.relevant_units_[c]
        return [self.unit_table_[i] for i in idx] if self.unit_table_ is not None else idx

    def get_params(self) -> dict[str, Any]:
        return {"mu": self.mu, "positive": self.positive}
