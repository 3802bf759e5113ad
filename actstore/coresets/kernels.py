"""Numba kernels for what BLAS cannot express: kNN partial selection, D2 message passing, greedy loops.

Kept self-contained in one module (numba's cache does not see edits in other modules), serial
and ``nogil``: classes run on threads (numba's default threading layer cannot take parallel
kernels launched from several threads at once) while BLAS does the distance blocks.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["knn_from_gram", "live_columns_f64", "d2_forward", "d2_greedy", "kcenter_greedy", "column_median", "distances_to"]


@njit(cache=True, nogil=True)
def knn_from_gram(gram: np.ndarray, sq: np.ndarray, row0: int, k: int, idx: np.ndarray, d2: np.ndarray) -> None:
    """k nearest neighbours of rows ``row0 .. row0 + len(gram)``, self excluded, ties to the lower index.

    ``gram`` is the (b, n) block X[row0:row0+b] @ X.T and ``sq`` the squared norms, so the squared
    distance is sq_i + sq_j - 2 g_ij, formed on the fly (no (b, n) temporary).
    Writes ``idx[row0 + r]`` and ``d2[row0 + r]`` (k each, nearest first).
    """
    b, n = gram.shape
    for r in range(b):
        i = row0 + r
        best_d = np.empty(k)
        best_j = np.empty(k, np.int64)
        count = 0
        for j in range(n):
            if j == i:
                continue
            v = sq[i] + sq[j] - 2.0 * gram[r, j]
            if count < k:
                p = count
                count += 1
            elif v < best_d[k - 1]:  # strict: an equal distance keeps the earlier (lower) index
                p = k - 1
            else:
                continue
            while p > 0 and best_d[p - 1] > v:
                best_d[p] = best_d[p - 1]
                best_j[p] = best_j[p - 1]
                p -= 1
            best_d[p] = v
            best_j[p] = j
        for t in range(k):
            idx[i, t] = best_j[t]
            d2[i, t] = best_d[t]


@njit(cache=True, nogil=True)
def live_columns_f64(X: np.ndarray) -> np.ndarray:
    """X's columns that are not all zero, as a C-contiguous float64 copy (one pass to find them, one to
    copy). A column of zeros adds exactly 0 to every dot product, squared norm and mean, so Gram
    distances, class means and scores are the same without it, at a fraction of the GEMM."""
    n, d = X.shape
    nz = np.zeros(d, np.uint8)
    for i in range(n):
        for j in range(d):
            nz[j] |= X[i, j] != 0
    cols = np.flatnonzero(nz)
    out = np.empty((n, cols.size))
    if cols.size == d:
        for i in range(n):
            for j in range(d):
                out[i, j] = X[i, j]
    else:
        for i in range(n):
            for c in range(cols.size):
                out[i, c] = X[i, cols[c]]
    return out


@njit(cache=True, nogil=True)
def d2_forward(s: np.ndarray, indptr: np.ndarray, indices: np.ndarray, dist: np.ndarray, gamma_f: float,
               eps: float, product: bool) -> tuple[np.ndarray, np.ndarray]:
    """One forward round: S_i = s_i + Σ_j exp(-γ_f d_ij) max(s_j, ε) (or s_i times the sum).

    Also returns which edges carry a non-zero message: like the reference (which reads a node's
    neighbours off ``connect > 0``), an edge whose message underflows to 0 is no neighbour in the
    reverse pass.
    """
    n = s.shape[0]
    S = np.empty(n)
    live = np.zeros(indices.shape[0], np.bool_)
    for i in range(n):
        acc = 0.0
        for e in range(indptr[i], indptr[i + 1]):
            w = np.exp(-gamma_f * dist[e]) * max(s[indices[e]], eps)
            if w > 0.0:
                live[e] = True
            acc += w
        S[i] = s[i] * acc if product else s[i] + acc
    return S, live


@njit(cache=True, nogil=True)
def d2_greedy(S: np.ndarray, indptr: np.ndarray, indices: np.ndarray, dist: np.ndarray, live: np.ndarray,
              gamma_r: float, absolute: bool, n_select: int) -> np.ndarray:
    """Reverse message passing: ``n_select`` times take u = argmax S over unselected nodes (lowest
    index on ties), then S_v -= exp(-γ_r d_uv) S_u (or S_u) for each live neighbour v. Returns the
    selection order. O(n_select · n)."""
    S = S.copy()
    n = S.shape[0]
    taken = np.zeros(n, np.bool_)
    order = np.empty(n_select, np.int64)
    for t in range(n_select):
        u = -1
        best = -np.inf
        for i in range(n):
            if not taken[i] and (u < 0 or S[i] > best):
                u = i
                best = S[i]
        su = S[u]
        for e in range(indptr[u], indptr[u + 1]):
            if live[e]:
                v = indices[e]
                S[v] -= su if absolute else np.exp(-gamma_r * dist[e]) * su
        taken[u] = True
        order[t] = u
    return order


@njit(cache=True, nogil=True)
def kcenter_greedy(X: np.ndarray, first: int, n_select: int) -> np.ndarray:
    """k-center greedy with running minimum distances: O(n) memory, O(n_select · n · d) time.

    Each step adds u = argmax_i min_{c chosen} ||x_i - x_c|| (lowest index on ties).
    """
    n, d = X.shape
    mind = np.full(n, np.inf)
    order = np.empty(n_select, np.int64)
    u = first
    for t in range(n_select):
        order[t] = u
        mind[u] = -1.0
        nxt = -1
        best = -np.inf
        for i in range(n):
            if mind[i] < 0.0:
                continue
            acc = 0.0
            for c in range(d):
                diff = X[i, c] - X[u, c]
                acc += diff * diff
            if acc < mind[i]:
                mind[i] = acc
            if mind[i] > best:
                best = mind[i]
                nxt = i
        if nxt < 0:
            break
        u = nxt
    return order


@njit(cache=True, nogil=True)
def _select_kth(a: np.ndarray, k: int) -> float:
    """Quickselect in place with a three-way partition (ReLU columns are full of equal zeros):
    afterwards a[k] is the k-th smallest and everything before it is <= a[k]."""
    lo, hi = 0, a.shape[0] - 1
    while hi > lo:
        mid = (lo + hi) // 2  # median of three as the pivot value
        x, y, z = a[lo], a[mid], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        lt, i, gt = lo, lo, hi  # a[lo:lt] < pivot, a[lt:i] == pivot, a[gt+1:hi+1] > pivot
        while i <= gt:
            v = a[i]
            if v < pivot:
                a[i], a[lt] = a[lt], v
                lt += 1
                i += 1
            elif v > pivot:
                a[i], a[gt] = a[gt], v
                gt -= 1
            else:
                i += 1
        if k < lt:
            hi = lt - 1
        elif k > gt:
            lo = gt + 1
        else:
            return pivot
    return a[k]


@njit(cache=True, nogil=True)
def column_median(X: np.ndarray) -> np.ndarray:
    """Per-column median in float64, equal to ``np.median(X, axis=0)``: a quickselect per column on
    a contiguous copy (numpy's axis-0 median walks strided memory and is several times slower)."""
    n, d = X.shape
    out = np.empty(d)
    buf = np.empty(n)
    half = n // 2
    for c in range(d):
        for i in range(n):
            buf[i] = X[i, c]
        upper = _select_kth(buf, half)
        if n % 2:
            out[c] = upper
        else:
            lower = buf[0]
            for i in range(1, half):
                if buf[i] > lower:
                    lower = buf[i]
            out[c] = (lower + upper) / 2.0
    return out


@njit(cache=True, nogil=True)
def distances_to(X: np.ndarray, c: np.ndarray) -> np.ndarray:
    """||x_i - c|| per row, by direct differences in float64 (no (n, d) temporary)."""
    n, d = X.shape
    out = np.empty(n)
    for i in range(n):
        acc = 0.0
        for j in range(d):
            diff = np.float64(X[i, j]) - c[j]
            acc += diff * diff
        out[i] = np.sqrt(acc)
    return out
