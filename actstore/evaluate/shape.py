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

from collections.abc import Iterable

import numpy as np

from ..errors import EvaluationError

__all__ = ["ShapeStats", "angular_distance", "EvaluationError", "EIGVAL_FLOOR"]

EIGVAL_FLOOR = 1e-7
SLAB_BYTES = 8 * 2**20  # centred float64 rows of X and Y together, per BLAS update


def _rows(A: np.ndarray, name: str) -> np.ndarray:
    """A as rows (n, d), float32 or float64 as given (products promote to float64)."""
    A = np.asarray(A)
    if A.ndim < 2:
        raise EvaluationError(f"{name} must have rows and features (n, d) or maps (n, ..., d); got {A.shape}")
    A = A.reshape(-1, A.shape[-1])
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float64)
    return A


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise EvaluationError(f"alpha must be in [0, 1], got {alpha}")
    return alpha


def _upper_to_full(U: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle U holds (U's lower triangle is not maintained)."""
    return np.triu(U) + np.triu(U, 1).T


class ShapeStats:
    """Sufficient statistics of two representations of the same rows, for Φ at any α.

    ``update(X_block, Y_block)`` adds rows (maps are flattened to (rows·H·W, D)); ``merge(other)``
    combines partial statistics; ``distance(alpha)`` gives θ in radians, in [0, π/2].

    C_xx, C_yy and C_xy are the blocks of one joint Gram J = Σ [x; y][x; y]ᵀ (centred), of which
    the upper triangle is kept. Per block: the block's column means (one pass each), then slabs of
    rows centred side by side, [X_c | Y_c], each added with one symmetric rank-k update
    (``dsyrk``: the same flops as two rank-k updates and a GEMM, at the rate of one larger call,
    called without the GIL so :meth:`update_all`'s read-ahead runs beside it), and Chan's rank-1
    correction of J (``dsyr``). No d x d temporaries; C_xx and C_yy are symmetrised when read.
    NaN/Inf are detected from the column sums (any non-finite entry makes its column's sum non-finite).
    """

    def __init__(self) -> None:
        self.n = 0
        self.mx: np.ndarray | None = None
        self.my: np.ndarray | None = None
        self._j: np.ndarray | None = None  # J's upper triangle, Fortran order (BLAS updates it in place)
        self._eig: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(C_xx's upper triangle, C_yy's upper triangle, C_xy): views of J."""
        assert self._j is not None and self.mx is not None
        d = self.mx.size
        return self._j[:d, :d], self._j[d:, d:], self._j[:d, d:]

    @property
    def cxx(self) -> np.ndarray | None:
        """Σ (x - m_x)(x - m_x)ᵀ, the un-normalised centred Gram of X (d_x x d_x)."""
        return None if self._j is None else _upper_to_full(self._blocks()[0])

    @property
    def cyy(self) -> np.ndarray | None:
        """Σ (y - m_y)(y - m_y)ᵀ (d_y x d_y)."""
        return None if self._j is None else _upper_to_full(self._blocks()[1])

    @property
    def cxy(self) -> np.ndarray | None:
        """Σ (x - m_x)(y - m_y)ᵀ (d_x x d_y)."""
        return None if self._j is None else self._blocks()[2]

    def update(self, X: np.ndarray, Y: np.ndarray) -> ShapeStats:
        from .._blas import syrk_upper

        X, Y = _rows(X, "X"), _rows(Y, "Y")
        if X.shape[0] != Y.shape[0]:
            raise EvaluationError(f"X and Y need the same rows: {X.shape[0]} != {Y.shape[0]}")
        n = X.shape[0]
        if n == 0:
            return self
        sx, sy = X.sum(axis=0, dtype=np.float64), Y.sum(axis=0, dtype=np.float64)
        for name, total in (("X", sx), ("Y", sy)):
            if not np.isfinite(total).all():
                raise EvaluationError(f"{name} holds NaN or Inf")
        mx, my = sx / n, sy / n
        if self.n and (self.mx.shape != mx.shape or self.my.shape != my.shape):  # type: ignore[union-attr]
            raise EvaluationError(f"cannot merge statistics of widths {self.mx.shape[0]}/"  # type: ignore[union-attr]
                                  f"{self.my.shape[0]} and {mx.shape[0]}/{my.shape[0]}")  # type: ignore[union-attr]
        dx, d = mx.size, mx.size + my.size
        if self.n == 0:
            self.mx, self.my = mx, my
            self._j = np.zeros((d, d), order="F")
        assert self._j is not None
        step = min(n, max(256, SLAB_BYTES // (8 * d)))
        slab = np.empty((step, d))  # float64, C order: its rows' transpose is the Fortran matrix BLAS wants
        for a in range(0, n, step):  # slabs that stay in cache for the BLAS that reads them
            rows = slab[:min(step, n - a)]
            np.subtract(X[a:a + step], mx, out=rows[:, :dx])
            np.subtract(Y[a:a + step], my, out=rows[:, dx:])
            syrk_upper(self._j, rows)  # J += [Xc | Yc]ᵀ [Xc | Yc], upper triangle
        if self.n:
            self._chan(n, mx, my)
        else:
            self.n = n
        self._eig.clear()
        return self

    def update_all(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]], read_ahead: bool = True) -> ShapeStats:
        """:meth:`update` for every (X_block, Y_block) of ``pairs`` (e.g. slices read lazily from two
        stores). With ``read_ahead`` the next pair is produced on a background thread while this one
        is accumulated (:func:`actstore.scheduler.ahead`, one pair ahead), so reading and decompressing
        a store overlap the BLAS work (the statistics, and so Φ, are the same either way)."""
        from ..scheduler import ahead

        arrays = ((np.asarray(X), np.asarray(Y)) for X, Y in pairs)  # read on the thread when it reads ahead
        for X, Y in ahead(arrays) if read_ahead else arrays:
            self.update(X, Y)
        return self

    def _chan(self, n_b: int, mx_b: np.ndarray, my_b: np.ndarray) -> None:
        """Chan/Golub/LeVeque: J = J_a + J_b + (n_a n_b / n) δ δᵀ, after J_b was added; moves the means."""
        from scipy.linalg.blas import dsyr

        assert self.mx is not None and self.my is not None
        n = self.n + n_b
        f = self.n * n_b / n
        dx, dy = mx_b - self.mx, my_b - self.my
        self._j = dsyr(f, np.concatenate([dx, dy]), lower=0, a=self._j, overwrite_a=1)  # in place (Fortran J)
        self.mx = self.mx + dx * (n_b / n)
        self.my = self.my + dy * (n_b / n)
        self.n = n

    def merge(self, other: ShapeStats) -> ShapeStats:
        """Chan/Golub/LeVeque: C = C_a + C_b + (n_a n_b / n) δ δᵀ (stable even far from zero mean)."""
        if other.n == 0:
            return self
        assert other.mx is not None and other.my is not None and other._j is not None
        if self.n == 0:
            self.n, self.mx, self.my = other.n, other.mx.copy(), other.my.copy()
            self._j = other._j.copy(order="F")
            self._eig.clear()
            return self
        assert self.mx is not None and self.my is not None and self._j is not None
        if self.mx.shape != other.mx.shape or self.my.shape != other.my.shape:
            raise EvaluationError(f"cannot merge statistics of widths {self.mx.shape[0]}/{self.my.shape[0]} "
                                  f"and {other.mx.shape[0]}/{other.my.shape[0]}")
        self._j += other._j
        self._chan(other.n, other.mx, other.my)
        self._eig.clear()
        return self

    @staticmethod
    def _whitening(c: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(V, weights): Z = V diag(w) Vᵀ, netrep's Z up to its variance-preserving constant (which
        cancels in θ). Directions without variance (λ <= rtol·λmax) get weight 0: the data are zero
        there, so netrep's product adds nothing, while a Gram's round-off would be amplified."""
        lam, V = np.linalg.eigh(c)
        return V, ShapeStats._weights(lam, alpha)

    @staticmethod
    def _weights(lam: np.ndarray, alpha: float) -> np.ndarray:
        w = alpha + (1.0 - alpha) / np.sqrt(np.maximum(lam, EIGVAL_FLOOR))
        rtol = 10 * lam.shape[0] * np.finfo(np.float64).eps
        w[lam <= rtol * max(float(lam.max()), 0.0)] = 0.0
        return w

    def _spectrum(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(λ, V, diag(Vᵀ C V)) of C_xx or C_yy: one eigendecomposition serves every α."""
        if which not in self._eig:
            c = self.cxx if which == "x" else self.cyy
            assert c is not None
            lam, V = np.linalg.eigh(c)
            self._eig[which] = (lam, V, np.einsum("ij,ij->j", V, c @ V))  # Vᵀ C V's diagonal: C's eigenvalues
        return self._eig[which]

    def distance(self, alpha: float = 1.0) -> float:
        """θ_α in radians. Raises when an input has no variance (the angle is undefined)."""
        alpha = _check_alpha(alpha)
        if self.n == 0:
            raise EvaluationError("no rows: update the statistics before asking for a distance")
        cxx_u, cyy_u, cxy = self._blocks()
        if alpha > 1 - EIGVAL_FLOOR:  # netrep's early exit: Z = I
            vx, vy = float(np.trace(cxx_u)), float(np.trace(cyy_u))
            m = cxy
        else:
            lamx, Vx, lx = self._spectrum("x")
            lamy, Vy, ly = self._spectrum("y")
            wx, wy = self._weights(lamx, alpha), self._weights(lamy, alpha)
            vx, vy = float((wx**2 * lx).sum()), float((wy**2 * ly).sum())
            m = (Vx * wx).T @ cxy @ (Vy * wy)
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
