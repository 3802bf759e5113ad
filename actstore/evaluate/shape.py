"""The partial-whitening shape metric Φ (netrep's ``LinearMetric``, angular score) from streamed statistics.

θ_α(X, Y) = arccos( ||Z_x C_xy Z_y||_* / sqrt(tr(Z_x C_xx Z_x) · tr(Z_y C_yy Z_y)) ),
Z_α(C) = α I + (1 − α) C^{-1/2} (eigenvalues floored at 1e-7),

with C the *un-normalised* centred Grams (reference shape-metric.md §2-3). Everything depends only
on (n, means, C_xx, C_yy, C_xy), so :class:`ShapeStats` accumulates those over row blocks (Chan's
pairwise update, float64) in O(d²) memory, merges across workers, and gives every α from one pass.
Different widths need no padding: the rectangular formula equals netrep's zero-padded one.

**Scale and n.** Because C is not divided by n, Z weights direction i by α + (1−α)/(√n·s_i)
(s_i the standard deviation along it): for 0 < α < 1 the amount of whitening depends on the data's
scale and on n (at n = 2·10⁵, α = 0.5 is practically Procrustes; rescaling the data by 1e-3 moves
it toward CCA). Only α = 1 (Procrustes) and α = 0 (CCA) are scale-invariant. Always report α with
the scale of Z and the number of rows n·H·W behind Φ.
"""

from __future__ import annotations

import numpy as np

from ..errors import EvaluationError

__all__ = ["ShapeStats", "angular_distance", "EvaluationError", "EIGVAL_FLOOR"]

EIGVAL_FLOOR = 1e-7


def _rows(A: np.ndarray, name: str) -> np.ndarray:
    A = np.asarray(A)
    if A.ndim < 2:
        raise EvaluationError(f"{name} must have rows and features (n, d) or maps (n, ..., d); got {A.shape}")
    A = A.reshape(-1, A.shape[-1]).astype(np.float64, copy=False)
    if not np.isfinite(A).all():
        raise EvaluationError(f"{name} holds NaN or Inf")
    return A


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise EvaluationError(f"alpha must be in [0, 1], got {alpha}")
    return alpha


class ShapeStats:
    """Sufficient statistics of two representations of the same rows, for Φ at any α.

    ``update(X_block, Y_block)`` adds rows (maps are flattened to (rows·H·W, D)); ``merge(other)``
    combines partial statistics; ``distance(alpha)`` gives θ in radians, in [0, π/2].
    """

    def __init__(self) -> None:
        self.n = 0
        self.mx: np.ndarray | None = None
        self.my: np.ndarray | None = None
        self.cxx: np.ndarray | None = None
        self.cyy: np.ndarray | None = None
        self.cxy: np.ndarray | None = None

    def update(self, X: np.ndarray, Y: np.ndarray) -> ShapeStats:
        X, Y = _rows(X, "X"), _rows(Y, "Y")
        if X.shape[0] != Y.shape[0]:
            raise EvaluationError(f"X and Y need the same rows: {X.shape[0]} != {Y.shape[0]}")
        if X.shape[0] == 0:
            return self
        block = ShapeStats()
        block.n = X.shape[0]
        block.mx, block.my = X.mean(axis=0), Y.mean(axis=0)
        Xc, Yc = X - block.mx, Y - block.my
        block.cxx, block.cyy, block.cxy = Xc.T @ Xc, Yc.T @ Yc, Xc.T @ Yc
        return self.merge(block)

    def merge(self, other: ShapeStats) -> ShapeStats:
        """Chan/Golub/LeVeque: C = C_a + C_b + (n_a n_b / n) δ δᵀ (stable even far from zero mean)."""
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mx, self.my = other.n, other.mx.copy(), other.my.copy()
            self.cxx, self.cyy, self.cxy = other.cxx.copy(), other.cyy.copy(), other.cxy.copy()
            return self
        assert self.mx is not None and self.my is not None and other.mx is not None and other.my is not None
        if self.mx.shape != other.mx.shape or self.my.shape != other.my.shape:
            raise EvaluationError(f"cannot merge statistics of widths {self.mx.shape[0]}/{self.my.shape[0]} "
                                  f"and {other.mx.shape[0]}/{other.my.shape[0]}")
        n = self.n + other.n
        f = self.n * other.n / n
        dx, dy = other.mx - self.mx, other.my - self.my
        self.cxx += other.cxx + f * np.outer(dx, dx)
        self.cyy += other.cyy + f * np.outer(dy, dy)
        self.cxy += other.cxy + f * np.outer(dx, dy)
        self.mx += dx * (other.n / n)
        self.my += dy * (other.n / n)
        self.n = n
        return self

    @staticmethod
    def _whitening(c: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(V, weights): Z = V diag(w) Vᵀ, netrep's Z up to its variance-preserving constant (which
        cancels in θ). Directions without variance (λ <= rtol·λmax) get weight 0: the data are zero
        there, so netrep's product adds nothing, while a Gram's round-off would be amplified."""
        lam, V = np.linalg.eigh(c)
        w = alpha + (1.0 - alpha) / np.sqrt(np.maximum(lam, EIGVAL_FLOOR))
        rtol = 10 * c.shape[0] * np.finfo(np.float64).eps
        w[lam <= rtol * max(float(lam.max()), 0.0)] = 0.0
        return V, w

    def distance(self, alpha: float = 1.0) -> float:
        """θ_α in radians. Raises when an input has no variance (the angle is undefined)."""
        alpha = _check_alpha(alpha)
        if self.n == 0:
            raise EvaluationError("no rows: update the statistics before asking for a distance")
        assert self.cxx is not None and self.cyy is not None and self.cxy is not None
        if alpha > 1 - EIGVAL_FLOOR:  # netrep's early exit: Z = I
            vx, vy = float(np.trace(self.cxx)), float(np.trace(self.cyy))
            m = self.cxy
        else:
            Vx, wx = self._whitening(self.cxx, alpha)
            Vy, wy = self._whitening(self.cyy, alpha)
            lx = np.einsum("ij,ij->j", Vx, self.cxx @ Vx)  # Vᵀ C V's diagonal: C's eigenvalues
            ly = np.einsum("ij,ij->j", Vy, self.cyy @ Vy)
            vx, vy = float((wx**2 * lx).sum()), float((wy**2 * ly).sum())
            m = (Vx * wx).T @ self.cxy @ (Vy * wy)
        if vx <= 0 or vy <= 0:
            which = "X" if vx <= 0 else "Y"
            raise EvaluationError(f"the angle is undefined: {which} has no variance (constant or all-zero maps)")
        nuclear = float(np.linalg.svd(m, compute_uv=False).sum())
        return float(np.arccos(np.clip(nuclear / np.sqrt(vx * vy), -1.0, 1.0)))

    def distances(self, alphas: list[float]) -> dict[float, float]:
        """θ for several α from the same statistics."""
        return {float(a): self.distance(a) for a in alphas}


def angular_distance(X: np.ndarray, Y: np.ndarray, alpha: float = 1.0) -> float:
    """netrep ``LinearMetric(alpha, center_columns=True, zero_pad=True, score_method="angular")``
    fit-and-score on (X, Y), computed in float64 from sufficient statistics."""
    return ShapeStats().update(X, Y).distance(alpha)
