"""The coreset selectors of reference/selectors.md, per class, on numpy arrays.

Each public function takes the rows' features and labels and returns the sorted row indices it
keeps, with per-class budget B_c = floor(ρ·n_c + 1/2) clipped to [1, n_c]. Greedy selectors
(random, dgpruning, d2pruning, kcenter) pick in an order that does not depend on the budget, so
one pass serves every rate: the coreset at a smaller rate is a prefix of the one at a larger.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SelectionError
from ..params import Integral, Interval, Real, StrOptions
from .base import register, run_per_class
from .kernels import (column_median, d2_forward, d2_greedy, distances_to, kcenter_greedy, knn_from_gram,
                      live_columns_f64)

__all__ = ["class_rng", "random_subset", "random", "moderate", "dgpruning", "d2pruning", "kcenter", "knn_graph", "d2_order"]

EPS = 1e-7
KNN_BLOCK_BYTES = 64 * 2**20  # one (block x n) float64 Gram block at a time


def class_rng(seed: int, label: int) -> np.random.Generator:
    """A class's own generator: its draw does not depend on the other classes (or their order)."""
    return np.random.default_rng([int(seed), int(label) & 0xFFFFFFFF])


def _prefixes(order: np.ndarray, budgets: list[int]) -> list[np.ndarray]:
    return [np.sort(order[:b]) for b in budgets]


# -- random -----------------------------------------------------------------------------------------
@register("random", needs_features=False, description="per class, a seeded draw without replacement")
def _random_class(X: np.ndarray, budgets: list[int], *, rates: list[float], seed: int, label: int
                  ) -> list[np.ndarray]:
    return _prefixes(class_rng(seed, label).permutation(X.shape[0]), budgets)


def random_subset(X: np.ndarray | None, labels: np.ndarray, rate: float, *, seed: int = 0) -> np.ndarray:
    """Per class, B_c rows drawn without replacement (a seeded permutation's prefix: nested across rates).
    ``X`` is not used (pass None): the signature is every selector's."""
    return run_per_class("random", None, labels, rate, seed)


random = random_subset  # the registry's name; ``random_subset`` does not shadow the standard library


# -- moderate ---------------------------------------------------------------------------------------
def _centre_distances(X: np.ndarray, center: str) -> np.ndarray:
    """||x_i - centre|| in float64; the centre is the per-dimension median or the mean."""
    X = np.ascontiguousarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if center == "median":
        c = column_median(X)
    elif center == "mean":
        c = X.mean(axis=0, dtype=np.float64)
    else:
        raise SelectionError(f"center must be 'median' or 'mean', not '{center}'")
    return distances_to(X, c)


def _window(d: np.ndarray, budget: int, rate: float, window: str, order: np.ndarray | None = None) -> np.ndarray:
    """The kept rows of a moderate window over distances ``d`` (``order``: their stable argsort)."""
    n = d.shape[0]
    if window == "abs_median":
        return np.sort(np.argsort(np.abs(d - np.median(d)), kind="stable")[:budget])
    order = np.argsort(d, kind="stable") if order is None else order
    if window == "exact":
        start = (n - budget) // 2
        return np.sort(order[start:start + budget])
    if window == "reference":  # the official code's rounding (Python round: half to even)
        low, high = round(n * (0.5 - rate / 2)), round(n * (0.5 + rate / 2))
        return np.sort(order[low:high])
    raise SelectionError(f"window must be 'exact', 'reference' or 'abs_median', not '{window}'")


@register("moderate", defaults={"center": "median", "window": "exact"},
          constraints={"center": [StrOptions({"median", "mean"})],
                       "window": [StrOptions({"exact", "reference", "abs_median"})]},
          description="distance to the class centre; keep a window around the median distance")
def _moderate_class(X: np.ndarray, budgets: list[int], *, rates: list[float], seed: int, label: int, center: str,
                    window: str) -> list[np.ndarray]:
    d = _centre_distances(X, center)
    order = np.argsort(d, kind="stable")
    return [_window(d, b, r, window, order) for b, r in zip(budgets, rates, strict=True)]


def moderate(X: np.ndarray, labels: np.ndarray, rate: float, *, center: str = "median", window: str = "exact",
             per_class: bool = True) -> np.ndarray:
    """Moderate coreset (Xia et al. 2023): rows whose distance to their class centre is moderate.

    ``center``: "median" (per-dimension median, the official code) or "mean" (the paper).
    ``window``: "exact" (exactly B_c rows from (n_c - B_c)//2 in the stable ascending order of
    distances), "reference" (the official rounding, ±1 row), "abs_median" (the B_c smallest
    |d - median(d)|). ``per_class=False`` pools all classes' distances into one window, as the
    official code does (classes then do not keep ρ of their rows each).
    """
    if per_class:
        return run_per_class("moderate", X, labels, rate, 0, center=center, window=window)
    from .base import check_features, check_rate, class_budget, class_groups

    X, rate = check_features(X), check_rate(rate)
    d = np.empty(X.shape[0])
    for rows in class_groups(labels).values():
        d[rows] = _centre_distances(X[rows], center)
    return _window(d, class_budget(X.shape[0], rate), rate, window)


# -- D2 message passing (dgpruning, d2pruning) ---------------------------------------------------------
def knn_graph(X: np.ndarray, k: int, sq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union-symmetrised kNN graph in CSR form: (indptr, indices, Euclidean distances).

    kNN by blocked BLAS Gram products plus a Numba partial selection (self excluded, ties to the
    lower index): memory O(block·n + n·k), never n x n. Distances come from the same Gram
    products (sq_i + sq_j - 2 x_i·x_j), as sklearn's ``pairwise_distances`` computes them.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = X.shape[0]
    sq = np.einsum("ij,ij->i", X, X) if sq is None else sq
    idx = np.empty((n, k), np.int64)
    d2 = np.empty((n, k))
    block = max(1, min(n, KNN_BLOCK_BYTES // (8 * max(n, 1))))
    for start in range(0, n, block):
        stop = min(n, start + block)
        knn_from_gram(X[start:stop] @ X.T, sq, start, k, idx, d2)
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = idx.ravel()
    dist = np.sqrt(np.maximum(d2.ravel(), 0.0))
    keys = np.concatenate([rows * n + cols, cols * n + rows])  # union: both directions of every kNN edge
    pairs, first = np.unique(keys, return_index=True)  # sorted by (row, col)
    u, v = pairs // n, pairs % n
    indptr = np.concatenate([[0], np.cumsum(np.bincount(u, minlength=n))]).astype(np.int64)
    return indptr, v.astype(np.int64), np.concatenate([dist, dist])[first]


def d2_order(X: np.ndarray, s: np.ndarray, n_select: int, k: int = 5, gamma_f: float = 1.0,
             gamma_r: float = 0.1, graph_mode: str = "sum", sampling: str = "weighted",
             sq: np.ndarray | None = None) -> np.ndarray:
    """D2 Pruning's selection order on one class: kNN graph, one forward round, greedy reverse passes."""
    if graph_mode not in ("sum", "product"):
        raise SelectionError(f"graph_mode must be 'sum' or 'product', not '{graph_mode}'")
    if sampling not in ("weighted", "absolute"):
        raise SelectionError(f"sampling must be 'weighted' or 'absolute', not '{sampling}'")
    indptr, indices, dist = knn_graph(X, k, sq)
    S, live = d2_forward(np.asarray(s, np.float64), indptr, indices, dist, float(gamma_f), EPS,
                         graph_mode == "product")
    return d2_greedy(S, indptr, indices, dist, live, float(gamma_r), sampling == "absolute", int(n_select))


_D2_DEFAULTS: dict[str, Any] = {"k": 5, "gamma_f": 1.0, "gamma_r": 0.1, "graph_mode": "sum",
                                "sampling": "weighted", "small_class": "random", "normalize": False}
_D2_CONSTRAINTS: dict[str, list[Any]] = {
    "k": [Interval(Integral, 1, None, closed="left")], "gamma_f": [Interval(Real, 0, None, closed="left")],
    "gamma_r": [Interval(Real, 0, None, closed="left")], "graph_mode": [StrOptions({"sum", "product"})],
    "sampling": [StrOptions({"weighted", "absolute"})], "small_class": [StrOptions({"random", "shrink_k"})],
    "normalize": ["boolean"]}


def _check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise SelectionError(f"k must be an integer >= 1, got {k}")
    return int(k)


def _d2_class(X: np.ndarray, s: np.ndarray, budgets: list[int], seed: int, label: int, k: int, gamma_f: float,
              gamma_r: float, graph_mode: str, sampling: str, small_class: str, normalize: bool,
              sq: np.ndarray | None = None) -> list[np.ndarray]:
    k = _check_k(k)
    n = X.shape[0]
    if small_class not in ("random", "shrink_k"):
        raise SelectionError(f"small_class must be 'random' or 'shrink_k', not '{small_class}'")
    if n <= k and (small_class == "random" or n == 1):
        return _prefixes(class_rng(seed, label).permutation(n), budgets)  # the reference's behaviour
    if n <= k:
        k = n - 1
    if normalize:
        X = _unit_rows(np.asarray(X, np.float64))
    order = d2_order(X, s, max(budgets), k, gamma_f, gamma_r, graph_mode, sampling, None if normalize else sq)
    return _prefixes(order, budgets)


def _live_f64(X: np.ndarray) -> np.ndarray:
    """X as C-contiguous float64 without its all-zero columns (one Numba pass to find them, one to copy)."""
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype not in (np.float32, np.float64):
        return np.ascontiguousarray(X, dtype=np.float64)
    return live_columns_f64(np.ascontiguousarray(X))


def _unit_rows(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _class_scores(X: np.ndarray, direction: str, sq: np.ndarray) -> np.ndarray:
    """s_i = ||x_i - class mean|| (float64 X, squared row norms ``sq``), or max(s) - s for "near".

    Expanded as sq_i - 2 x_i·μ + μ·μ: one matrix-vector product instead of an (n, d) temporary.
    """
    mu = X.mean(axis=0)
    d = np.sqrt(np.maximum(sq - 2.0 * (X @ mu) + mu @ mu, 0.0))
    if direction == "far":
        return d
    if direction == "near":
        return d.max() - d
    raise SelectionError(f"direction must be 'far' or 'near', not '{direction}'")


@register("dgpruning", defaults={**_D2_DEFAULTS, "direction": "far"},
          constraints={**_D2_CONSTRAINTS, "direction": [StrOptions({"far", "near"})]},
          description="D2 message passing with s = distance to the class mean")
def _dgpruning_class(X: np.ndarray, budgets: list[int], *, rates: list[float], seed: int, label: int,
                     direction: str, normalize: bool, **params: Any) -> list[np.ndarray]:
    X = _live_f64(X)  # all-zero columns (dead channels of the class) change no distance: dropped
    X = _unit_rows(X) if normalize else X
    sq = np.einsum("ij,ij->i", X, X)
    return _d2_class(X, _class_scores(X, direction, sq), budgets, seed, label, normalize=False, sq=sq, **params)


@register("d2pruning", needs_scores=True, defaults=dict(_D2_DEFAULTS), constraints=_D2_CONSTRAINTS,
          description="D2 message passing with given per-sample scores (AUM, forgetting...)")
def _d2pruning_class(X: np.ndarray, budgets: list[int], *, rates: list[float], seed: int, label: int,
                     scores: np.ndarray, **params: Any) -> list[np.ndarray]:
    return _d2_class(_live_f64(X), scores, budgets, seed, label, **params)


def dgpruning(X: np.ndarray, labels: np.ndarray, rate: float, *, k: int = 5, gamma_f: float = 1.0,
              gamma_r: float = 0.1, graph_mode: str = "sum", sampling: str = "weighted", direction: str = "far",
              normalize: bool = False, seed: int = 0, small_class: str = "random") -> np.ndarray:
    """DGPruning (reference §4): D2 Pruning per class with s_i = ||x_i - class mean||.

    kNN graph (Euclidean, self excluded, ties to the lower index), union-symmetrised; one forward
    round S_i = s_i + Σ_j exp(-γ_f d_ij) max(s_j, 1e-7) ("sum"; s_i times the sum for "product");
    then B_c greedy steps u = argmax S (unselected, lowest index on ties), S_v -= exp(-γ_r d_uv) S_u
    ("weighted"; S_u for "absolute"). float64 throughout. ``direction="near"`` uses s = max(d) - d.
    ``normalize`` L2-normalises rows first (the reference does not; see §3.8). Classes with
    n_c <= k get a seeded random draw (``small_class="shrink_k"`` uses k = n_c - 1 instead).
    """
    return run_per_class("dgpruning", X, labels, rate, seed, k=k, gamma_f=gamma_f, gamma_r=gamma_r,
                         graph_mode=graph_mode, sampling=sampling, direction=direction, normalize=normalize,
                         small_class=small_class)


def d2pruning(X: np.ndarray, labels: np.ndarray, rate: float, *, scores: np.ndarray, k: int = 5,
              gamma_f: float = 1.0, gamma_r: float = 0.1, graph_mode: str = "sum", sampling: str = "weighted",
              normalize: bool = False, seed: int = 0, small_class: str = "random") -> np.ndarray:
    """D2 Pruning per class with the given per-row ``scores`` (e.g. AUM, forgetting counts)."""
    return run_per_class("d2pruning", X, labels, rate, seed, scores=scores, k=k, gamma_f=gamma_f,
                         gamma_r=gamma_r, graph_mode=graph_mode, sampling=sampling, normalize=normalize,
                         small_class=small_class)


# -- k-center greedy ---------------------------------------------------------------------------------
@register("kcenter", description="k-center greedy from a seeded random first point")
def _kcenter_class(X: np.ndarray, budgets: list[int], *, rates: list[float], seed: int, label: int
                   ) -> list[np.ndarray]:
    n = X.shape[0]
    first = int(class_rng(seed, label).integers(n))
    order = kcenter_greedy(np.ascontiguousarray(X, np.float64), first, max(budgets))
    return _prefixes(order, budgets)


def kcenter(X: np.ndarray, labels: np.ndarray, rate: float, *, seed: int = 0) -> np.ndarray:
    """k-center greedy per class (Sener & Savarese): a seeded random first row, then repeatedly the
    row farthest from everything chosen. Running minimum distances: O(n) memory, never n x n."""
    return run_per_class("kcenter", X, labels, rate, seed)
