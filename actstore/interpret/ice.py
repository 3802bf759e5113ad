"""ICE (Zhang et al., AAAI 2021): per class, NMF of the last-layer maps as (n·H·W) x D rows.

The solver is HALS (the coordinate-descent NMF that sklearn's ``solver="cd"`` also runs): W then
H, one component at a time, each step the exact non-negative minimiser. Its W-step is row-
separable, so the same iterations run in memory or over row blocks streamed from a store (one
pass per iteration, W kept as n·H·W x k, a k/D fraction of the data): both give the same result.
Initialisation is nndsvda, as sklearn: from the exact top-k SVD (eigenvectors of AᵀA) when
D <= 512 or out of core, else from ``randomized_svd`` (sklearn's own init for that ``random_state``).
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

CACHE_BLOCK_BYTES = 4 * 2**20
EXACT_SVD_MAX_D = 512
Blocks = Callable[[], Iterator[np.ndarray]]  # a fresh pass over (rows, D) float32 blocks, same order


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
        if mp > mn:
            u, v, sigma = xp / xpn, yp / ypn, mp
        else:
            u, v, sigma = xn / xnn, yn / ynn, mn
        lbd = np.sqrt(S[j] * sigma)
        W[:, j], H[j] = lbd * u, lbd * v
    W[W < 1e-6] = fill
    H[H < 1e-6] = fill
    return W, H


def _top_svd(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact rank-k SVD from the eigenvectors of XᵀX (float64), signs as sklearn's ``svd_flip``."""
    X64 = np.asarray(X, np.float64)
    evals, evecs = np.linalg.eigh(X64.T @ X64)
    order = np.argsort(evals)[::-1][:k]
    S = np.sqrt(np.maximum(evals[order], 0.0))
    V = evecs[:, order].T
    U = (X64 @ V.T) / np.where(S > 0, S, 1.0)
    flip = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(k)])
    flip[flip == 0] = 1.0
    return U * flip, S, V * flip[:, None]


def _hals(M: np.ndarray, cross: np.ndarray, gram: np.ndarray) -> float:
    """One HALS sweep over the columns of M (rows x k), in place; returns the summed |update|.

    Minimises ||A - M F||² column by column given cross = A Fᵀ (rows x k) and gram = F Fᵀ (k x k).
    """
    change = 0.0
    for t in range(M.shape[1]):
        hess = gram[t, t]
        if hess <= 0:
            continue
        new = np.maximum(M[:, t] - (M @ gram[:, t] - cross[:, t]) / hess, 0.0)
        change += float(np.abs(new - M[:, t]).sum())
        M[:, t] = new
    return change


class ICE(TransformerMixin, BaseEstimator):
    """Per-class NMF concepts (reference §2): ``fit(A)`` sets ``components_`` (k x D); ``transform`` gives
    the codes (NNLS with the components fixed), ``inverse_transform`` and ``reconstruct`` give Z (A's shape).

    Deterministic for D <= 512 (nndsvda from an exact SVD); above, the randomised SVD of the
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
        block = checked_array(block, "ICE", allow_nd=True, dtype=(np.float32,))
        if (block < 0).any():
            raise InterpretError("Negative values in data passed to ICE: NMF needs non-negative activations "
                                 "(pick a layer after a ReLU)")
        return block

    # -- in memory ---------------------------------------------------------------------------------
    def fit(self, A: np.ndarray, y: Any = None) -> ICE:
        """Fit on one class's maps (n, H, W, D) or rows (m, D), in memory.

        Iterations still walk the rows in cache-sized blocks: A·Hᵀ and WᵀA are memory-bound
        (k is small), and doing both on a block while it is in cache reads A once per iteration.
        """
        from sklearn.utils.extmath import randomized_svd

        X = self._check_block(_flat(A))
        self._check_params(X.shape[0], X.shape[1])
        step = max(1, CACHE_BLOCK_BYTES // (4 * X.shape[1]))
        blocks = lambda: (X[i:i + step] for i in range(0, X.shape[0], step))  # noqa: E731
        norm2 = sum(float(np.square(self._check_block(b), dtype=np.float64).sum()) for b in blocks())
        if X.shape[1] <= EXACT_SVD_MAX_D:  # a D x D eigenproblem is cheaper than randomised passes
            U, S, V = _top_svd(X, self.n_components)
        else:
            U, S, V = randomized_svd(X, self.n_components, random_state=self.random_state)
        W, H = nndsvda(U, S, V, float(X.mean(dtype=np.float64)))
        self._iterate(blocks, W, H, norm2)
        return self

    def _iterate(self, blocks: Blocks, W: np.ndarray, H: np.ndarray, norm2: float) -> None:
        """HALS iterations, one pass over the blocks each: the W-step per block, then the H-step.

        The data stay float32 (their GEMMs run in float32); W and H, every HALS step and every
        accumulation are float64. W is column-major, so each HALS column update is contiguous.
        """
        if not (isinstance(W, np.memmap) or (W.dtype == np.float64 and W.flags.f_contiguous)):
            W = np.asfortranarray(W, dtype=np.float64)
        H = np.asarray(H, np.float64)
        first = None
        for it in range(1, self.max_iter + 1):
            H32 = H.astype(np.float32)
            HHt = H @ H.T
            WtA = np.zeros(H.shape)
            WtW = np.zeros((H.shape[0], H.shape[0]))
            change, start = 0.0, 0
            for block in blocks():
                Wb = W[start:start + len(block)]
                change += _hals(Wb, np.asfortranarray(block @ H32.T, dtype=np.float64), HHt)
                WtA += (Wb.astype(np.float32).T @ block).astype(np.float64)
                WtW += Wb.T @ Wb
                start += len(block)
            Ht = np.asfortranarray(H.T)
            change += _hals(Ht, WtA.T, WtW)
            H = np.ascontiguousarray(Ht.T)
            first = change if first is None else first
            err2 = norm2 - 2.0 * float((H * WtA).sum()) + float((WtW * (H @ H.T)).sum())
            self.reconstruction_err_ = float(np.sqrt(max(err2, 0.0)))
            self.n_iter_ = it
            if first == 0 or change / first <= self.tol:
                break
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
        evals, evecs = np.linalg.eigh(gram)
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
        W = _scratch((n_rows, k))
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
        in A's float dtype."""
        A = checked_array(A, "ICE (maps (n, H, W, D) or rows (m, D))", allow_nd=True)
        X = self._check_block(A.reshape(-1, A.shape[-1]))
        H = self._fitted(X)
        HHt = (H @ H.T).astype(np.float64)
        W = np.zeros((X.shape[0], H.shape[0]))
        cross = (X @ H.T).astype(np.float64)
        first = None
        for _ in range(self.max_iter):
            change = _hals(W, cross, HHt)
            first = change if first is None else first
            if first == 0 or change / first <= self.tol:
                break
        return W.astype(A.dtype).reshape(*A.shape[:-1], H.shape[0])

    def inverse_transform(self, S: np.ndarray) -> np.ndarray:
        """Z = S · components_, with the spatial shape of S."""
        H = self._fitted()
        S = np.asarray(S, np.float32)
        return (S.reshape(-1, H.shape[0]) @ H).reshape(*S.shape[:-1], H.shape[1])

    def reconstruct(self, A: np.ndarray) -> np.ndarray:
        """Z = inverse_transform(transform(A)): A projected on the concepts, A's shape."""
        return self.inverse_transform(self.transform(A))


IN_MEMORY_W_BYTES = 256 * 2**20


def _scratch(shape: tuple[int, int]) -> np.ndarray:
    """W for the out-of-core fit: in memory when small, else a file-backed scratch array that the
    kernel can page out, so peak memory does not grow with the class size."""
    if shape[0] * shape[1] * 8 <= IN_MEMORY_W_BYTES:
        return np.empty(shape, order="F")
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="actstore-ice-W-", suffix=".f64") as fh:
        return np.memmap(fh.name, dtype=np.float64, mode="w+", shape=shape, order="F")  # unlinked on close


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
