"""Numba kernels for ICE's HALS iterations (the coordinate descent of sklearn's ``NMF(solver="cd")``).

One W-step pass walks the data in row tiles small enough to stay in L2 and, per tile, does all the
work that needs the data: the products C = X_tile·Hᵀ (float32, as sklearn's float32 GEMM), the
exact coordinate updates of the tile's rows of W (float64, sklearn's order: component by
component; a row's update depends only on that row, so rows can go first), and the products the
H-step needs, WᵀX (float32 per tile, added into float64) and WᵀW (float64). The data are read
once per iteration and never converted. The float32 products are register-tiled (4 rows x 5
components on rows of at least ``WIDE_ROWS`` features where AVX-512 has the registers, else 4 x 2:
20 accumulators need long rows to repay their final horizontal sums) and vectorised by LLVM, with
no packing copies of the data (at k ~ 10 BLAS's GEMM runs at a quarter of its peak on these shapes).

The violation returned is sklearn's: the summed |projected gradient| of every coordinate visited,
so ``violation / violation_of_the_first_iteration <= tol`` stops where sklearn stops.

Kept in one module with no imports from the package (numba's cache does not see edits elsewhere).
Serial and ``nogil``: the caller splits rows over threads.
"""

from __future__ import annotations

import numpy as np
from llvmlite.binding import get_host_cpu_features
from numba import njit

__all__ = ["w_pass", "cd_sweep", "gram_apply", "right_apply", "left_apply", "check_rows", "tile_rows"]

L2_TILE_BYTES = 512 * 2**10


def _wide_rows() -> int:
    """From this many features on, products go 4 rows x 5 components at a time: 20 accumulators, which fit
    AVX-512's 32 vector registers (with AVX2's 16 they spill, 1.2x slower, so there the 4 x 2 tile stays).
    Read from the target numba compiles for (``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` when set, else the
    host). Frozen into numba's cache with the code, whose key holds the same CPU name and features."""
    from numba.core import config

    if not config.ENABLE_AVX:
        return 2**62
    if config.CPU_NAME is not None:
        avx512 = "+avx512f" in (config.CPU_FEATURES or "").split(",")
    else:
        avx512 = bool(get_host_cpu_features().get("avx512f", False))
    return 1024 if avx512 else 2**62


WIDE_ROWS = _wide_rows()


def tile_rows(n_features: int) -> int:
    """Rows per tile: a multiple of 4, about ``L2_TILE_BYTES`` of float32 data."""
    return int(max(4, min(512, L2_TILE_BYTES // (4 * max(1, n_features)) // 4 * 4)))


# -- float32 products (fastmath: reassociation lets LLVM vectorise the reductions) ----------------------------
@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _dot4x2(x0, x1, x2, x3, h0, h1):  # pragma: no cover - compiled
    s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = np.float32(0.0)
    for d in range(x0.shape[0]):
        a = h0[d]
        b = h1[d]
        v0 = x0[d]
        v1 = x1[d]
        v2 = x2[d]
        v3 = x3[d]
        s00 += v0 * a
        s01 += v0 * b
        s10 += v1 * a
        s11 += v1 * b
        s20 += v2 * a
        s21 += v2 * b
        s30 += v3 * a
        s31 += v3 * b
    return s00, s01, s10, s11, s20, s21, s30, s31


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _dot4x5(x0, x1, x2, x3, h0, h1, h2, h3, h4):  # pragma: no cover - compiled
    z = np.float32(0.0)
    s00 = s01 = s02 = s03 = s04 = s10 = s11 = s12 = s13 = s14 = z
    s20 = s21 = s22 = s23 = s24 = s30 = s31 = s32 = s33 = s34 = z
    for d in range(x0.shape[0]):
        a, b, c, e, f = h0[d], h1[d], h2[d], h3[d], h4[d]
        v0, v1, v2, v3 = x0[d], x1[d], x2[d], x3[d]
        s00 += v0 * a
        s01 += v0 * b
        s02 += v0 * c
        s03 += v0 * e
        s04 += v0 * f
        s10 += v1 * a
        s11 += v1 * b
        s12 += v1 * c
        s13 += v1 * e
        s14 += v1 * f
        s20 += v2 * a
        s21 += v2 * b
        s22 += v2 * c
        s23 += v2 * e
        s24 += v2 * f
        s30 += v3 * a
        s31 += v3 * b
        s32 += v3 * c
        s33 += v3 * e
        s34 += v3 * f
    return ((s00, s01, s02, s03, s04), (s10, s11, s12, s13, s14), (s20, s21, s22, s23, s24),
            (s30, s31, s32, s33, s34))


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _dot4x1(x0, x1, x2, x3, h0):  # pragma: no cover - compiled
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for d in range(x0.shape[0]):
        a = h0[d]
        s0 += x0[d] * a
        s1 += x1[d] * a
        s2 += x2[d] * a
        s3 += x3[d] * a
    return s0, s1, s2, s3


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _dot1(x0, h0):  # pragma: no cover - compiled
    s = np.float32(0.0)
    for d in range(x0.shape[0]):
        s += x0[d] * h0[d]
    return s


@njit(cache=True, nogil=True, fastmath=True)
def _products(X, r0, r1, H, CT):  # pragma: no cover - compiled
    """CT[t, i - r0] = X[i]·H[t] in float32, for r0 <= i < r1."""
    k = H.shape[0]
    wide = X.shape[1] >= WIDE_ROWS
    i = r0
    while i + 4 <= r1:
        x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
        c = i - r0
        t = 0
        while wide and t + 5 <= k:
            rows = _dot4x5(x0, x1, x2, x3, H[t], H[t + 1], H[t + 2], H[t + 3], H[t + 4])
            for r in range(4):
                for q in range(5):
                    CT[t + q, c + r] = rows[r][q]
            t += 5
        while t + 2 <= k:
            s00, s01, s10, s11, s20, s21, s30, s31 = _dot4x2(x0, x1, x2, x3, H[t], H[t + 1])
            CT[t, c] = s00
            CT[t + 1, c] = s01
            CT[t, c + 1] = s10
            CT[t + 1, c + 1] = s11
            CT[t, c + 2] = s20
            CT[t + 1, c + 2] = s21
            CT[t, c + 3] = s30
            CT[t + 1, c + 3] = s31
            t += 2
        if t < k:
            s0, s1, s2, s3 = _dot4x1(x0, x1, x2, x3, H[t])
            CT[t, c] = s0
            CT[t, c + 1] = s1
            CT[t, c + 2] = s2
            CT[t, c + 3] = s3
        i += 4
    while i < r1:
        for t in range(k):
            CT[t, i - r0] = _dot1(X[i], H[t])
        i += 1


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _axpy4x2(a, b, x0, x1, x2, x3, a0, a1, a2, a3, b0, b1, b2, b3):  # pragma: no cover - compiled
    for d in range(a.shape[0]):
        v0 = x0[d]
        v1 = x1[d]
        v2 = x2[d]
        v3 = x3[d]
        a[d] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
        b[d] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _axpy4x1(a, x0, x1, x2, x3, a0, a1, a2, a3):  # pragma: no cover - compiled
    for d in range(a.shape[0]):
        a[d] += a0 * x0[d] + a1 * x1[d] + a2 * x2[d] + a3 * x3[d]


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _axpy1(a, x0, a0):  # pragma: no cover - compiled
    for d in range(a.shape[0]):
        a[d] += a0 * x0[d]


@njit(cache=True, nogil=True, fastmath=True)
def _accumulate(X, r0, r1, WT, o, acc):  # pragma: no cover - compiled
    """acc[t] += Σ_i WT[t, i - o] X[i] in float32 (WT's entries rounded to float32), for r0 <= i < r1."""
    k = acc.shape[0]
    i = r0
    while i + 4 <= r1:
        x0, x1, x2, x3 = X[i], X[i + 1], X[i + 2], X[i + 3]
        c = i - o
        t = 0
        while t + 2 <= k:
            _axpy4x2(acc[t], acc[t + 1], x0, x1, x2, x3, np.float32(WT[t, c]), np.float32(WT[t, c + 1]),
                     np.float32(WT[t, c + 2]), np.float32(WT[t, c + 3]), np.float32(WT[t + 1, c]),
                     np.float32(WT[t + 1, c + 1]), np.float32(WT[t + 1, c + 2]), np.float32(WT[t + 1, c + 3]))
            t += 2
        if t < k:
            _axpy4x1(acc[t], x0, x1, x2, x3, np.float32(WT[t, c]), np.float32(WT[t, c + 1]),
                     np.float32(WT[t, c + 2]), np.float32(WT[t, c + 3]))
        i += 4
    while i < r1:
        for t in range(k):
            _axpy1(acc[t], X[i], np.float32(WT[t, i - o]))
        i += 1


@njit(cache=True, nogil=True, fastmath=True)
def _gram_add(MT, c0, c1, G):  # pragma: no cover - compiled
    """G += MT[:, c0:c1] MT[:, c0:c1]ᵀ (float64)."""
    k = MT.shape[0]
    for t in range(k):
        a = MT[t, c0:c1]
        for s in range(t + 1):
            b = MT[s, c0:c1]
            acc = 0.0
            for i in range(c1 - c0):
                acc += a[i] * b[i]
            G[t, s] += acc
            if s != t:
                G[s, t] += acc


# -- float64 coordinate descent (sklearn's order; only multiply-adds may be fused) ------------------------------
@njit(cache=True, nogil=True, fastmath={"contract"})
def _cd_cols(MT, c0, c1, CT, o, gram, g, viol):  # pragma: no cover - compiled
    """One coordinate-descent sweep over columns c0 <= i < c1 of MT (k x rows: the rows of M,
    transposed), in place: component t of every row, then t + 1 (sklearn's order; a row's updates
    depend only on that row). ``CT[t, o + i - c0]`` = (A Fᵀ)[i, t]; adds each row's |projected gradient|
    into ``viol[i - c0]``. Vectorised over rows; each gradient is summed in sklearn's order,
    -C[i, t] + Σ_r gram[t, r] M[i, r]; the step multiplies by 1 / gram[t, t] (sklearn divides)."""
    k = MT.shape[0]
    n = c1 - c0
    gg = g[:n]
    vv = viol[:n]
    for t in range(k):
        ct = CT[t, o:o + n]
        for i in range(n):
            gg[i] = -np.float64(ct[i])
        for r in range(k):
            a = gram[t, r]
            mr = MT[r, c0:c1]
            for i in range(n):
                gg[i] += a * mr[i]
        mt = MT[t, c0:c1]
        hess = gram[t, t]
        for i in range(n):
            x = gg[i]
            pg = min(0.0, x) if mt[i] == 0 else x
            vv[i] += abs(pg)
        if hess != 0:
            inv = 1.0 / hess  # a multiply per row instead of a divide (within an ulp of sklearn's g / hess)
            for i in range(n):
                mt[i] = max(mt[i] - gg[i] * inv, 0.0)


CD_TILE = 512


@njit(cache=True, nogil=True)
def cd_sweep(MT, CT, gram):  # pragma: no cover - compiled
    """One coordinate-descent sweep over all rows of M, stored transposed as MT (k x rows), in place,
    given CT = F Aᵀ (k x rows; A Fᵀ transposed) and gram = F Fᵀ: it minimises ||A - M F||² one
    component after the other, M[i, t] <- max(M[i, t] - g / gram[t, t], 0) with g the gradient
    (sklearn's ``_update_cdnmf_fast``). Returns the summed |projected gradient| (sklearn's violation)."""
    m = MT.shape[1]
    g = np.empty(CD_TILE)
    viol = np.zeros(CD_TILE)
    for c0 in range(0, m, CD_TILE):
        _cd_cols(MT, c0, min(m, c0 + CD_TILE), CT, c0, gram, g, viol)
    return viol.sum()


@njit(cache=True, nogil=True)
def w_pass(X, WT, H32, HHt, WtA, WtW, tile):  # pragma: no cover - compiled
    """The W-step over the rows of X (rows x D, float32, C order) and of W, stored transposed as
    WT (k x rows, float64), in place, with H32 = H as float32 and HHt = H Hᵀ (float64). Adds the
    updated W's WᵀX into WtA (k x D) and WᵀW into WtW (k x k), both float64. Returns the W-step's
    violation."""
    m = X.shape[0]
    k = H32.shape[0]
    D = X.shape[1]
    CT = np.empty((k, tile), np.float32)
    g = np.empty(tile)
    viol = np.zeros(tile)
    acc = np.empty((k, D), np.float32)
    for r0 in range(0, m, tile):
        r1 = min(m, r0 + tile)
        _products(X, r0, r1, H32, CT)
        _cd_cols(WT, r0, r1, CT, 0, HHt, g, viol)
        _gram_add(WT, r0, r1, WtW)
        acc[:] = 0.0
        _accumulate(X, r0, r1, WT, 0, acc)
        for t in range(k):
            for d in range(D):
                WtA[t, d] += acc[t, d]
    return viol.sum()


@njit(cache=True, nogil=True)
def gram_apply(X, QT, Y, tile):  # pragma: no cover - compiled
    """Y += QT Xᵀ X over the rows of X (rows x D, float32), QT (s x D, float32), Y (s x D, float64):
    per tile, P = X_tile QTᵀ (float32) then Y += Pᵀ X_tile, so X is read once. One step of a
    subspace iteration on XᵀX (the randomized SVD's power iteration, its two products fused)."""
    m, D = X.shape
    s = QT.shape[0]
    PT = np.empty((s, tile), np.float32)
    acc = np.empty((s, D), np.float32)
    for r0 in range(0, m, tile):
        r1 = min(m, r0 + tile)
        _products(X, r0, r1, QT, PT)
        acc[:] = 0.0
        _accumulate(X, r0, r1, PT, r0, acc)
        for t in range(s):
            for d in range(D):
                Y[t, d] += acc[t, d]


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})  # NaN/Inf semantics kept
def check_rows(X):  # pragma: no cover - compiled
    """(Σ x, Σ x², all finite, all >= 0) of a float32 matrix in one pass, the sums in float64."""
    m, D = X.shape
    total = 0.0
    total2 = 0.0
    finite = True
    nonneg = True
    for i in range(m):
        row = X[i]
        acc = 0.0
        acc2 = 0.0
        low = 0.0
        for d in range(D):
            v = np.float64(row[d])
            acc += v
            acc2 += v * v
            low = min(low, v)
        if not np.isfinite(acc2):
            finite = False
        if low < 0:
            nonneg = False
        total += acc
        total2 += acc2
    return total, total2, finite, nonneg


@njit(cache=True, nogil=True)
def right_apply(X, QT, PT, tile):  # pragma: no cover - compiled
    """PT = QT Xᵀ (s x rows, float32) for X (rows x D, float32) and QT (s x D, float32)."""
    m = X.shape[0]
    for r0 in range(0, m, tile):
        r1 = min(m, r0 + tile)
        _products(X, r0, r1, QT, PT[:, r0:r1])


@njit(cache=True, nogil=True)
def left_apply(X, PT, B, tile):  # pragma: no cover - compiled
    """B += PT X (s x D, float64; float32 products per tile) for PT (s x rows) and X (rows x D, float32)."""
    m, D = X.shape
    s = PT.shape[0]
    acc = np.empty((s, D), np.float32)
    for r0 in range(0, m, tile):
        r1 = min(m, r0 + tile)
        acc[:] = 0.0
        _accumulate(X, r0, r1, PT, 0, acc)
        for t in range(s):
            for d in range(D):
                B[t, d] += acc[t, d]


@njit(cache=True, nogil=True)
def fit_loop(X, WT, H, max_iter, tol, tile):  # pragma: no cover - compiled
    """Every HALS iteration of an in-memory, one-thread fit in one call (no Python between the steps):
    the W-step (:func:`w_pass`), then the H-step (:func:`cd_sweep` on H, k x D, in place), until
    sklearn's stopping rule or ``max_iter``. Returns (iterations, converged, WᵀA, WᵀW) of the last
    W-step, for the reconstruction error."""
    k, d = H.shape
    WtA = np.zeros((k, d))
    WtW = np.zeros((k, k))
    HHt = np.empty((k, k))
    H32 = np.empty((k, d), np.float32)
    violation_init = 0.0
    it = 0
    while it < max_iter:
        it += 1
        for a in range(k):
            for j in range(d):
                H32[a, j] = np.float32(H[a, j])
            for b in range(a + 1):
                s = 0.0
                for j in range(d):
                    s += H[a, j] * H[b, j]
                HHt[a, b] = s
                HHt[b, a] = s
        WtA[:] = 0.0
        WtW[:] = 0.0
        violation = w_pass(X, WT, H32, HHt, WtA, WtW, tile)
        violation += cd_sweep(H, WtA, WtW)
        if it == 1:
            violation_init = violation
        if violation_init == 0 or violation / violation_init <= tol:
            return it, True, WtA, WtW
    return it, False, WtA, WtW
