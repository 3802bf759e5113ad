"""ICE (Zhang et al., AAAI 2021): per class, NMF of the last-layer maps as (n·H·W) x D rows.

The solver is HALS (the coordinate-descent NMF that sklearn's ``solver="cd"`` also runs): W then
H, one component at a time, each step the exact non-negative minimiser, stopping by sklearn's rule
(the summed |projected gradient| of an iteration at most ``tol`` times the first's). Its W-step is
row-separable, so the same iterations run in memory or over row blocks streamed from a store (one
pass per iteration, W kept as k x n·H·W, a k/D fraction of the data): both give the same result.
The iterations run in fused Numba kernels (:mod:`.hals`): one read of the data per iteration,
float32 products, float64 coordinates and accumulations.

Initialisation is nndsvda, as sklearn: from the exact top-k SVD (eigenvectors of AᵀA) when
D <= 1024 or out of core, else from a randomized SVD with sklearn's parameters and random start
for that ``random_state`` (its power iterations fused: XᵀX Q in one pass per iteration).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np

from sklearn.base import BaseEstimator, TransformerMixin

from ..errors import InterpretError, NotFittedError
from ..params import Integral, Interval, Real, StrOptions, validate
from .inputs import checked_array

__all__ = ["ICE", "nndsvda"]

EXACT_SVD_MAX_D = 1024
GRAM_BLOCK_BYTES = 16 * 2**20
Blocks = Callable[[], Iterator[np.ndarray]]  # a fresh pass over (rows, D) float32 blocks, same order

PARALLEL_MIN_ELEMENTS = 2**20  # blocks smaller than this run on one thread


def _blas_threads() -> int:
    """The number of threads BLAS may use here (``threadpoolctl``'s view): the W-step uses as many."""
    from threadpoolctl import threadpool_info

    counts = [int(i.get("num_threads", 1)) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(1, min(counts)) if counts else 1


def _flat(A: np.ndarray) -> np.ndarray:
    """Maps (n, H, W, D) or rows (m, D) as rows (n·H·W, D), checked."""
    A = checked_array(A, "ICE (maps (n, H, W, D) or rows (m, D))", allow_nd=True, dtype=(np.float32,))
    return A.reshape(-1, A.shape[-1])


def nndsvda(U: np.ndarray, S: np.ndarray, V: np.ndarray, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVD (Boutsidis & Gallopoulos) from a rank-k SVD, zeros filled with ``fill`` (the data mean).

    U (m, k), S (k,), V (k, D) -> W (m, k), H (k, D); sign choice as sklearn's ``_initialize_nmf``.
    """
    k = len(S)
    W, H = np.zeros((U.shape[0], k), U.dtype), np.zeros((k, V.shape[1]), V.dtype)
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    H[0] = np.sqrt(S[0]) * np.abs(V[0])
    for j in range(1, k):
        x, y = U[:, j], V[j]
        xp, yp = np.maximum(x, 0), np.maximum(y, 0)
        xn, yn = np.abs(np.minimum(x, 0)), np.abs(np.minimum(y, 0))
        xpn, ypn, xnn, ynn = (np.sqrt(np.dot(v, v)) for v in (xp, yp, xn, yn))
        mp, mn = xpn * ypn, xnn * ynn
        if mp > mn:  # a zero norm (all-zero maps) gives zeros, as in _nndsvda_blocks
            u, v, sigma = xp / max(xpn, 1e-300), yp / max(ypn, 1e-300), mp
        else:
            u, v, sigma = xn / max(xnn, 1e-300), yn / max(ynn, 1e-300), mn
        lbd = np.sqrt(S[j] * sigma)
        W[:, j], H[j] = lbd * u, lbd * v
    W[W < 1e-6] = fill
    H[H < 1e-6] = fill
    return W, H


def _top_eigh(G: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenpairs of a symmetric G (LAPACK's bisection driver: only those k are formed;
    the MRRR driver can take minutes on a Gram's cluster of small eigenvalues)."""
    from scipy.linalg import eigh

    d = G.shape[0]
    return eigh(G, subset_by_index=[max(0, d - k), d - 1], driver="evx", check_finite=False)


def _top_svd(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact rank-k SVD from the top eigenvectors of XᵀX, signs as sklearn's ``svd_flip``.

    XᵀX is summed over row blocks (float32 products of a block, added in float64), U = X V / S."""
    X = np.asarray(X)
    m, d = X.shape
    step = max(1, GRAM_BLOCK_BYTES // (4 * d))
    G = np.zeros((d, d))
    for i in range(0, m, step):
        b = np.asarray(X[i:i + step], np.float32)
        G += b.T @ b  # numpy runs Xᵀ·X as a symmetric rank-k update
    evals, evecs = _top_eigh(G, k)
    order = np.argsort(evals)[::-1][:k]
    S = np.sqrt(np.maximum(evals[order], 0.0))
    V = np.ascontiguousarray(evecs[:, order].T)
    U = (X @ V.T.astype(np.float32)).astype(np.float64) / np.where(S > 0, S, 1.0)
    flip = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(len(S))])
    flip[flip == 0] = 1.0
    return U * flip, S, V * flip[:, None]


def _randomized_svd(X: np.ndarray, k: int, random_state: int | None, n_oversamples: int = 10
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's ``randomized_svd(X, k, random_state=...)`` (same random start, oversampling, power
    iterations and sign rule) with each power iteration's two products fused into one pass
    (Y = Qᵀ XᵀX, then the LU normaliser): the same subspace iteration, half the reads of X."""
    from scipy import linalg
    from sklearn.utils import check_random_state
    from sklearn.utils.extmath import randomized_svd, svd_flip

    from .hals import gram_apply, left_apply, right_apply, tile_rows

    m, d = X.shape
    if m < d:  # sklearn would transpose; rare for per-pixel rows
        return randomized_svd(X, k, random_state=random_state)
    size = k + n_oversamples
    n_iter = 7 if k < 0.1 * min(m, d) else 4
    tile = tile_rows(d)
    parts = _row_parts(m, tile, _blas_threads() if X.size >= PARALLEL_MIN_ELEMENTS else 1)
    Q = check_random_state(random_state).normal(size=(d, size)).astype(np.float32)
    with _pool(len(parts)) as run:
        for _ in range(n_iter):
            QT = np.ascontiguousarray(Q.T)
            Ys = [np.zeros((size, d)) for _ in parts]
            run([(gram_apply, X[a:b], QT, Y, tile) for (a, b), Y in zip(parts, Ys, strict=True)])
            Q = linalg.lu(sum(Ys[1:], Ys[0]).T, permute_l=True, check_finite=False)[0].astype(np.float32)
        PT = np.empty((size, m), np.float32)
        QT = np.ascontiguousarray(Q.T)
        run([(right_apply, X[a:b], QT, PT[:, a:b], tile) for a, b in parts])
        Qm, _ = linalg.qr(PT.T, mode="economic", check_finite=False)
        QmT = np.ascontiguousarray(Qm.T, dtype=np.float32)
        Bs = [np.zeros((size, d)) for _ in parts]
        run([(left_apply, X[a:b], QmT[:, a:b], B, tile) for (a, b), B in zip(parts, Bs, strict=True)])
    Uhat, S, Vt = linalg.svd(sum(Bs[1:], Bs[0]), full_matrices=False, check_finite=False)
    U, Vt = svd_flip(np.asarray(Qm, np.float64) @ Uhat, Vt)
    return U[:, :k], S[:k], Vt[:k]


def _row_parts(m: int, tile: int, threads: int) -> list[tuple[int, int]]:
    """``threads`` contiguous row ranges of whole tiles (one range when threads == 1)."""
    per = max(tile, -(-m // max(1, threads) // tile) * tile)
    return [(a, min(m, a + per)) for a in range(0, m, per)]


class _pool:
    """``with _pool(n) as run: run([(fn, *args), ...])`` runs the calls on n threads (the kernels
    release the GIL), or inline for one call; results in call order."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.executor: Any = None

    def __enter__(self) -> Callable[[list[tuple[Any, ...]]], list[Any]]:
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.executor = ThreadPoolExecutor(self.threads, thread_name_prefix="actstore-ice")
        return self.run

    def run(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        if self.executor is None or len(calls) == 1:
            return [fn(*args) for fn, *args in calls]
        futures = [self.executor.submit(fn, *args) for fn, *args in calls]
        return [f.result() for f in futures]

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown()


def _checked_norm2(X: np.ndarray) -> tuple[float, float]:
    """(Σ x², mean x) of non-negative finite float32 rows, one pass; raises on NaN/Inf or negatives."""
    from .hals import check_rows

    total, total2, finite, nonneg = check_rows(X)
    if not finite:
        raise InterpretError("activations hold NaN or Inf")
    if not nonneg:
        raise InterpretError("Negative values in data passed to ICE: NMF needs non-negative activations "
                             "(pick a layer after a ReLU)")
    return float(total2), float(total / max(1, X.size))


class ICE(TransformerMixin, BaseEstimator):
    """Per-class NMF concepts (reference §2): ``fit(A)`` sets ``components_`` (k x D); ``transform`` gives
    the codes (NNLS with the components fixed), ``inverse_transform`` and ``reconstruct`` give Z (A's shape).

    Deterministic for D <= ``EXACT_SVD_MAX_D`` (1024; nndsvda from an exact SVD); above, the randomised SVD of the
    initialisation draws from ``random_state``. Fitted: ``components_``, ``reconstruction_err_``,
    ``n_iter_``, ``converged_`` (the tolerance was reached before ``max_iter``), ``n_features_in_``.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"nndsvda"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_components: int = 10, init: str = "nndsvda", max_iter: int = 200, tol: float = 1e-4,
                 random_state: int | None = 0) -> None:
        self.n_components = n_components
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.requires_fit = True
        return tags

    def _check_params(self, rows: int, features: int) -> None:
        validate(self._parameter_constraints, self.get_params(deep=False), "ICE")
        if rows < self.n_components:
            raise InterpretError(f"ICE needs at least n_components={self.n_components} rows (n·H·W), got {rows}")
        self.n_features_in_ = int(features)

    @staticmethod
    def _check_block(block: np.ndarray) -> np.ndarray:
        return ICE._nonnegative(checked_array(block, "ICE", allow_nd=True, dtype=(np.float32,)))

    @staticmethod
    def _nonnegative(block: np.ndarray) -> np.ndarray:
        if (block < 0).any():
            raise InterpretError("Negative values in data passed to ICE: NMF needs non-negative activations "
                                 "(pick a layer after a ReLU)")
        return block

    # -- in memory ---------------------------------------------------------------------------------
    def fit(self, A: np.ndarray, y: Any = None) -> ICE:
        """Fit on one class's maps (n, H, W, D) or rows (m, D), in memory.

        Every iteration is one pass of the fused W-step kernel over the rows, in tiles that stay in
        cache while both of their products are formed: A is read once per iteration.
        """
        X = np.ascontiguousarray(_flat(A), dtype=np.float32)
        self._check_params(X.shape[0], X.shape[1])
        norm2, mean = _checked_norm2(X)
        if X.shape[1] <= EXACT_SVD_MAX_D:  # a D x D eigenproblem is cheaper than randomised passes
            U, S, V = _top_svd(X, self.n_components)
        else:
            U, S, V = _randomized_svd(X, self.n_components, self.random_state)
        W, H = nndsvda(U, S, V, mean)
        self._iterate(_InMemory(X), W, H, norm2)
        return self

    def _iterate(self, blocks: Blocks, W: np.ndarray, H: np.ndarray, norm2: float) -> None:
        """HALS iterations, one pass over the blocks each: the W-step per block, then the H-step.

        sklearn's coordinate descent (``_fit_coordinate_descent``, no shuffle): W then H, component
        by component, the same update, stopping when the summed |projected gradient| of an iteration
        is at most ``tol`` times the first iteration's (``converged_``; else ``max_iter`` was hit).
        The data stay float32 (their products run in float32, as sklearn's float32 GEMMs); W and H,
        every coordinate update and every accumulation are float64 (sklearn keeps float32 data's
        W and H in float32). The W-step is one fused kernel per block (:mod:`.hals`).
        """
        from .hals import cd_sweep, tile_rows

        k, d = H.shape
        # W (rows x k) is worked on transposed, WT (k x rows, float64): each component's codes are
        # contiguous for the kernels. A W that is already WT's transpose (the scratch file) is used in place.
        WT = W.T
        if not (WT.dtype == np.float64 and WT.flags.c_contiguous):
            WT = np.ascontiguousarray(WT, dtype=np.float64)
        WTv = np.asarray(WT)  # a plain ndarray view (of the scratch file too): numba takes no subclasses
        H = np.array(H, np.float64, order="C")
        tile = tile_rows(d)
        violation_init = 0.0
        self.converged_ = False
        if isinstance(blocks, _InMemory) and (blocks.X.size < PARALLEL_MIN_ELEMENTS or _blas_threads() == 1):
            from .hals import fit_loop  # one block, one thread: every iteration in one compiled call

            it, converged, WtA, WtW = fit_loop(blocks.X, WTv, H, int(self.max_iter), float(self.tol), tile)
            self.n_iter_, self.converged_ = int(it), bool(converged)
        else:
            with _WStep(tile) as step:
                for it in range(1, self.max_iter + 1):
                    H32 = H.astype(np.float32)
                    HHt = H @ H.T
                    WtA = np.zeros((k, d))
                    WtW = np.zeros((k, k))
                    violation, start = 0.0, 0
                    for block in blocks():
                        block = np.ascontiguousarray(block, dtype=np.float32)
                        violation += step(block, WTv[:, start:start + len(block)], H32, HHt, WtA, WtW)
                        start += len(block)
                    violation += cd_sweep(H, WtA, WtW)  # the H-step: H (k x D) is Hᵀ's rows transposed
                    self.n_iter_ = it
                    if it == 1:
                        violation_init = violation
                    if violation_init == 0 or violation / violation_init <= self.tol:
                        self.converged_ = True
                        break
        err2 = norm2 - 2.0 * float((H * WtA).sum()) + float((WtW * (H @ H.T)).sum())
        self.reconstruction_err_ = float(np.sqrt(max(err2, 0.0)))
        self.components_ = H.astype(np.float32)

    # -- out of core -------------------------------------------------------------------------------
    def fit_blocks(self, blocks: Blocks, n_rows: int, n_features: int) -> ICE:
        """Fit from row blocks streamed in a fixed order (one pass per iteration, two for the init).

        ``blocks()`` starts a new pass yielding (rows, D) arrays; ``n_rows`` is their total.
        """
        self._check_params(n_rows, n_features)
        k = self.n_components
        gram = np.zeros((n_features, n_features))
        total, norm2 = np.zeros(n_features), 0.0
        for block in blocks():
            b = self._check_block(block).astype(np.float64)
            gram += b.T @ b
            total += b.sum(axis=0)
            norm2 += float(np.square(b).sum())
        evals, evecs = _top_eigh(gram, k)
        order = np.argsort(evals)[::-1][:k]
        S = np.sqrt(np.maximum(evals[order], 0.0))
        V = evecs[:, order].T
        for j in range(k):  # sklearn's svd_flip: the largest |V| entry of each component positive
            if V[j, np.argmax(np.abs(V[j]))] < 0:
                V[j] = -V[j]
        safe = np.where(S > 0, S, 1.0)
        pos, neg = np.zeros(k), np.zeros(k)
        for block in blocks():
            U = (np.asarray(block, np.float64) @ V.T) / safe
            pos += np.square(np.maximum(U, 0)).sum(axis=0)
            neg += np.square(np.minimum(U, 0)).sum(axis=0)
        fill = float(total.sum() / (n_rows * n_features))
        W = _scratch((k, n_rows)).T  # rows x k, a view of the transposed storage the iterations use
        H = None
        start = 0
        for block in blocks():  # W's init, block by block, with the global norms fixed above
            U = (np.asarray(block, np.float64) @ V.T) / safe
            Wb, Hb = _nndsvda_blocks(U, S, V, pos, neg, fill)
            W[start:start + len(block)] = Wb
            H = Hb if H is None else H
            start += len(block)
        assert H is not None
        self._iterate(lambda: (np.asarray(b, np.float32) for b in blocks()), W, H, norm2)
        return self

    # -- using the fit -----------------------------------------------------------------------------
    def _fitted(self, X: np.ndarray | None = None) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise NotFittedError("ICE is not fitted yet: call fit first")
        d = self.components_.shape[1]
        if X is not None and X.shape[-1] != d:
            raise InterpretError(f"X has {X.shape[-1]} features, but ICE is expecting {d} features as input")
        return self.components_

    def transform(self, A: np.ndarray) -> np.ndarray:
        """Codes S >= 0 with the components fixed (an NNLS, as sklearn's ``NMF.transform``): (..., k),
        computed and returned in A's float dtype (float32 maps stay float32, as in sklearn; float64 rows
        get float64 products, as sklearn's). sklearn's coordinate descent from W = 0 with its stopping
        rule (summed over the rows, as sklearn's); the sweeps run in :mod:`.hals`."""
        from .hals import cd_sweep

        A = checked_array(A, "ICE (maps (n, H, W, D) or rows (m, D))", allow_nd=True)
        X = self._nonnegative(A.reshape(-1, A.shape[-1]))
        H = self._fitted(X)
        H64 = H.astype(np.float64)
        HHt = H64 @ H64.T
        WT = np.zeros((H.shape[0], X.shape[0]))  # the codes, transposed
        cross = np.ascontiguousarray(H.astype(X.dtype) @ X.T)
        first = None
        for _ in range(self.max_iter):
            violation = cd_sweep(WT, cross, HHt)
            first = violation if first is None else first
            if first == 0 or violation / first <= self.tol:
                break
        return WT.T.astype(A.dtype).reshape(*A.shape[:-1], H.shape[0])

    def inverse_transform(self, S: np.ndarray) -> np.ndarray:
        """Z = S · components_, with the spatial shape of S."""
        H = self._fitted()
        S = np.asarray(S, np.float32)
        return (S.reshape(-1, H.shape[0]) @ H).reshape(*S.shape[:-1], H.shape[1])

    def reconstruct(self, A: np.ndarray) -> np.ndarray:
        """Z = inverse_transform(transform(A)): A projected on the concepts, A's shape."""
        return self.inverse_transform(self.transform(A))


IN_MEMORY_W_BYTES = 256 * 2**20


class _InMemory:
    """The blocks of an in-memory fit: one, the whole matrix (so :meth:`ICE._iterate` may run every
    iteration in one compiled call)."""

    def __init__(self, X: np.ndarray) -> None:
        self.X = X

    def __call__(self) -> Iterator[np.ndarray]:
        return iter((self.X,))


class _WStep:
    """Runs :func:`.hals.w_pass` on a block, its rows split over as many threads as BLAS may use
    (each with its own WᵀA, WᵀW, added in a fixed order: the result does not depend on timing)."""

    def __init__(self, tile: int) -> None:
        self.tile = tile
        self.threads: int | None = None
        self.pool: _pool | None = None

    def __enter__(self) -> _WStep:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.__exit__()

    def __call__(self, X: np.ndarray, WT: np.ndarray, H32: np.ndarray, HHt: np.ndarray, WtA: np.ndarray,
                 WtW: np.ndarray) -> float:
        from .hals import w_pass

        if X.size < PARALLEL_MIN_ELEMENTS or len(X) < 4 * self.tile:
            return float(w_pass(X, WT, H32, HHt, WtA, WtW, self.tile))
        if self.threads is None:
            self.threads = _blas_threads()
            if self.threads > 1:
                self.pool = _pool(self.threads)
                self.pool.__enter__()
        if self.pool is None:
            return float(w_pass(X, WT, H32, HHt, WtA, WtW, self.tile))
        parts = _row_parts(len(X), self.tile, self.threads)
        sums = [(np.zeros_like(WtA), np.zeros_like(WtW)) for _ in parts[1:]]
        outs = [(WtA, WtW), *sums]
        violations = self.pool.run([(w_pass, X[a:b], WT[:, a:b], H32, HHt, A_, B_, self.tile)
                                    for (a, b), (A_, B_) in zip(parts, outs, strict=True)])
        for A_, B_ in sums:
            WtA += A_
            WtW += B_
        return float(sum(violations))


def _scratch(shape: tuple[int, int]) -> np.ndarray:
    """W for the out-of-core fit: in memory when small, else a file-backed scratch array that the
    kernel can page out, so peak memory does not grow with the class size."""
    if shape[0] * shape[1] * 8 <= IN_MEMORY_W_BYTES:
        return np.empty(shape)
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="actstore-ice-W-", suffix=".f64") as fh:
        return np.memmap(fh.name, dtype=np.float64, mode="w+", shape=shape)  # unlinked on close


def _nndsvda_blocks(U: np.ndarray, S: np.ndarray, V: np.ndarray, pos: np.ndarray, neg: np.ndarray, fill: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """nndsvda on one block of U, with the whole-column norms of U's positive/negative parts given."""
    k = len(S)
    W, H = np.zeros((U.shape[0], k)), np.zeros((k, V.shape[1]))
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    H[0] = np.sqrt(S[0]) * np.abs(V[0])
    for j in range(1, k):
        x, y = U[:, j], V[j]
        yp, yn = np.maximum(y, 0), np.abs(np.minimum(y, 0))
        xpn, xnn = np.sqrt(pos[j]), np.sqrt(neg[j])
        ypn, ynn = np.linalg.norm(yp), np.linalg.norm(yn)
        mp, mn = xpn * ypn, xnn * ynn
        if mp > mn:
            u, v, sigma = np.maximum(x, 0) / max(xpn, 1e-300), yp / max(ypn, 1e-300), mp
        else:
            u, v, sigma = np.abs(np.minimum(x, 0)) / max(xnn, 1e-300), yn / max(ynn, 1e-300), mn
        lbd = np.sqrt(S[j] * sigma)
        W[:, j], H[j] = lbd * u, lbd * v
    W[W < 1e-6] = fill
    H[H < 1e-6] = fill
    return W, H
