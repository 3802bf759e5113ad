"""Independent restatements of the reference methods, in plain numpy: what the tests and the benchmarks
compare actstore's streamed, optimised computations against. Not used by the product."""

from __future__ import annotations

import numpy as np

__all__ = ["netrep_restated"]


def netrep_restated(X, Y, alpha):
    """netrep LinearMetric fit+score, angular: centre, whiten (ZCA, floored eigenvalues, variance
    preserved), two-sided Procrustes by SVD, arccos of the normalised inner product."""
    d = max(X.shape[1], Y.shape[1])
    X = np.pad(X, ((0, 0), (0, d - X.shape[1])))
    Y = np.pad(Y, ((0, 0), (0, d - Y.shape[1])))

    def whiten(A):
        if alpha > 1 - 1e-7:
            return A, np.eye(d)
        lam, V = np.linalg.eigh(A.T @ A)
        lam = np.maximum(lam, 1e-7)
        w = alpha + (1 - alpha) * lam ** -0.5
        w *= np.sqrt(lam.sum() / ((alpha * np.sqrt(lam) + (1 - alpha)) ** 2).sum())
        Z = V @ np.diag(w) @ V.T
        return A @ Z, Z

    Xw, Zx = whiten(X - X.mean(0))
    Yw, Zy = whiten(Y - Y.mean(0))
    U, _, Vt = np.linalg.svd(Xw.T @ Yw)
    tX, tY = (X - X.mean(0)) @ Zx @ U, (Y - Y.mean(0)) @ Zy @ Vt.T
    corr = tX.ravel() @ tY.ravel() / (np.linalg.norm(tX) * np.linalg.norm(tY))
    return float(np.arccos(np.clip(corr, -1, 1)))
