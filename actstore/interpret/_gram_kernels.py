"""Numba helpers for VEBI's Gram pass (:func:`actstore.interpret.vebi.accumulate_gram`).

Kept apart from ``vebi.py`` so that importing the estimator does not import numba."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["mirror_lower", "class_sums"]

_TILE = 64


@njit(cache=True, nogil=True)
def mirror_lower(G):  # pragma: no cover - compiled
    """G[j, i] = G[i, j] for i > j, in place (C order; tile by tile, so both sides stay in cache)."""
    p = G.shape[0]
    for i0 in range(0, p, _TILE):
        i1 = min(p, i0 + _TILE)
        for j0 in range(0, i1, _TILE):
            j1 = min(p, j0 + _TILE)
            for j in range(j0, j1):
                for i in range(max(i0, j + 1), i1):
                    G[j, i] = G[i, j]


@njit(cache=True, nogil=True)
def class_sums(X, inv, n_groups):  # pragma: no cover - compiled
    """S[g] = Σ_{i: inv[i] = g} X[i] (float64), for rows X (n x P)."""
    S = np.zeros((n_groups, X.shape[1]))
    for i in range(X.shape[0]):
        row = S[inv[i]]
        x = X[i]
        for p in range(X.shape[1]):
            row[p] += x[p]
    return S
