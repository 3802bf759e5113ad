"""Each selector against a plain restatement of reference/selectors.md (dense distances, Python loops)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actstore.coresets import (SelectionError, class_budget, d2pruning, dgpruning, kcenter, knn_graph, moderate,
                               random_subset, list_selectors)

# -- plain restatements, line by line from the spec -------------------------------------------------------


def budget(n: int, rate: float) -> int:
    return min(n, max(1, int(np.floor(rate * n + 0.5))))


def dense(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float64)
    return np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))


def ref_d2(X, s, B, k=5, gamma_f=1.0, gamma_r=0.1, graph_mode="sum", sampling="weighted"):
    n = len(X)
    D = dense(X)
    nbr = [set() for _ in range(n)]
    for i in range(n):
        nearest = sorted((D[i, j], j) for j in range(n) if j != i)[:k]  # ties: lower index first
        for _, j in nearest:
            nbr[i].add(j)
            nbr[j].add(i)  # union symmetrisation
    S = np.empty(n)
    for i in range(n):
        msg = sum(np.exp(-gamma_f * D[i, j]) * max(s[j], 1e-7) for j in nbr[i])
        S[i] = s[i] + msg if graph_mode == "sum" else s[i] * msg
    chosen: list[int] = []
    for _ in range(B):
        u = max((i for i in range(n) if i not in chosen), key=lambda i: (S[i], -i))
        su = S[u]
        for v in nbr[u]:
            S[v] -= np.exp(-gamma_r * D[u, v]) * su if sampling == "weighted" else su
        chosen.append(u)
    return sorted(chosen)


def ref_dgpruning(X, y, rate, direction="far", **kw):
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        Xc = X[rows].astype(np.float64)
        d = np.linalg.norm(Xc - Xc.mean(axis=0), axis=1)
        s = d if direction == "far" else d.max() - d
        keep += [rows[i] for i in ref_d2(Xc, s, budget(len(rows), rate), **kw)]
    return sorted(keep)


def ref_moderate(X, y, rate, center="median", window="exact"):
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        Xc = X[rows].astype(np.float64)
        centre = np.median(Xc, axis=0) if center == "median" else Xc.mean(axis=0)
        d = np.array([np.sqrt(((x - centre) ** 2).sum()) for x in Xc])
        n, B = len(rows), budget(len(rows), rate)
        ranked = sorted(range(n), key=lambda i: (d[i], i))
        if window == "exact":
            start = (n - B) // 2
            picked = ranked[start:start + B]
        elif window == "reference":
            picked = ranked[round(n * (0.5 - rate / 2)):round(n * (0.5 + rate / 2))]
        else:
            med = np.median(d)
            picked = sorted(range(n), key=lambda i: (abs(d[i] - med), i))[:B]
        keep += [rows[i] for i in picked]
    return sorted(keep)


def ref_kcenter(X, y, rate, first_of):
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        D = dense(X[rows])
        chosen = [first_of(int(c), len(rows))]
        while len(chosen) < budget(len(rows), rate):
            mind = [min(D[i, j] for j in chosen) if i not in chosen else -1 for i in range(len(rows))]
            chosen.append(int(np.argmax(mind)))
        keep += [rows[i] for i in chosen]
    return sorted(keep)


def problem(seed: int, n: int = 90, d: int = 6, classes: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    X = rng.standard_normal((n, d)) * rng.uniform(0.2, 2.0, d) + y[:, None]
    return X.astype(np.float32), y


# -- equality with the restatements -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("graph_mode", "sampling", "direction"),
                         list(itertools.product(["sum", "product"], ["weighted", "absolute"], ["far", "near"])))
def test_dgpruning_equals_restatement(seed, graph_mode, sampling, direction):
    X, y = problem(seed)
    rate = [0.1, 0.3, 0.6][seed]
    ours = dgpruning(X, y, rate, graph_mode=graph_mode, sampling=sampling, direction=direction)
    ref = ref_dgpruning(X, y, rate, direction=direction, graph_mode=graph_mode, sampling=sampling)
    assert ours.tolist() == ref


@pytest.mark.parametrize(("k", "gamma_f", "gamma_r"), [(1, 1.0, 0.1), (3, 0.5, 1.0), (8, 2.0, 0.01)])
def test_dgpruning_parameters_equal_restatement(k, gamma_f, gamma_r):
    X, y = problem(5, n=70, d=4)
    X = X / 3  # short distances: the messages matter
    ours = dgpruning(X, y, 0.4, k=k, gamma_f=gamma_f, gamma_r=gamma_r)
    assert ours.tolist() == ref_dgpruning(X, y, 0.4, k=k, gamma_f=gamma_f, gamma_r=gamma_r)


def test_d2pruning_uses_the_given_scores():
    X, y = problem(3)
    scores = np.random.default_rng(9).uniform(-1, 3, len(y))
    ours = d2pruning(X, y, 0.3, scores=scores)
    ref = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        ref += [rows[i] for i in ref_d2(X[rows], scores[rows], budget(len(rows), 0.3))]
    assert ours.tolist() == sorted(ref)


def test_knn_ties_go_to_the_lower_index():
    X = np.array([[0.0], [1.0], [-1.0], [2.0], [-2.0]])  # from 0: 1 and 2 tie, 3 and 4 tie
    indptr, indices, dist = knn_graph(X, 1)
    nbrs = {i: set(indices[indptr[i]:indptr[i + 1]].tolist()) for i in range(5)}
    assert nbrs[0] == {1, 2}  # 0 -> 1 (tie with 2, lower wins); 2 -> 0; union gives both
    assert 2 not in nbrs[1] and np.allclose(dist[indptr[0]:indptr[1]], [1.0, 1.0])


@pytest.mark.parametrize("center", ["median", "mean"])
@pytest.mark.parametrize("window", ["exact", "reference", "abs_median"])
@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.95])
def test_moderate_equals_restatement(center, window, rate):
    X, y = problem(int(rate * 100), n=120)
    X[:, 0] = np.exp(X[:, 0])  # skewed distances: the windows differ
    assert moderate(X, y, rate, center=center, window=window).tolist() == ref_moderate(X, y, rate, center, window)


@pytest.mark.parametrize(("n", "rate", "kept"), [(100, 0.05, 4), (1300, 0.05, 64), (10, 0.1, 2)])
def test_moderate_reference_rounding_examples(n, rate, kept):
    X = np.random.default_rng(0).standard_normal((n, 3))
    assert len(moderate(X, np.zeros(n, int), rate, window="reference")) == kept  # reference §2.3.3
    assert len(moderate(X, np.zeros(n, int), rate, window="exact")) == budget(n, rate)


def test_moderate_global_window_is_not_class_balanced():
    X, y = problem(4, n=200)
    X[y == 0] *= 5
    kept = moderate(X, y, 0.2, per_class=False)
    assert len(kept) == budget(200, 0.2)
    counts = np.bincount(y[kept], minlength=3)
    assert counts.tolist() != [budget(int((y == c).sum()), 0.2) for c in range(3)]


@pytest.mark.parametrize("seed", [0, 1])
def test_kcenter_equals_restatement(seed):
    X, y = problem(seed, n=60)
    firsts = {}
    from actstore.coresets.selectors import class_rng

    ours = kcenter(X, y, 0.4, seed=seed)
    ref = ref_kcenter(X, y, 0.4, lambda c, n: firsts.setdefault(c, int(class_rng(seed, c).integers(n))))
    assert ours.tolist() == ref


# -- properties of every selector ----------------------------------------------------------------------------


ALL = {
    "random": lambda X, y, r, s: random_subset(X, y, r, seed=s),
    "moderate": lambda X, y, r, s: moderate(X, y, r),
    "dgpruning": lambda X, y, r, s: dgpruning(X, y, r, seed=s),
    "d2pruning": lambda X, y, r, s: d2pruning(X, y, r, scores=np.linalg.norm(X, axis=1), seed=s),
    "kcenter": lambda X, y, r, s: kcenter(X, y, r, seed=s),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_per_class_counts_and_determinism(name):
    X, y = problem(11, n=150, classes=5)
    y[:3] = 7  # a class of 3 rows (<= k: seeded random draw for the D2 family)
    y[3] = 9  # a class of 1 row
    for rate in (0.05, 0.5, 1.0):
        kept = ALL[name](X, y, rate, 0)
        assert np.array_equal(kept, np.unique(kept))
        for c in np.unique(y):
            assert (y[kept] == c).sum() == budget(int((y == c).sum()), rate), (name, rate, c)
        assert np.array_equal(kept, ALL[name](X, y, rate, 0))


def test_seeds_change_random_draws_and_rates_nest():
    X, y = problem(2, n=200)
    assert not np.array_equal(random_subset(None, y, 0.3, seed=0), random_subset(None, y, 0.3, seed=1))
    for fn in (lambda r: random_subset(None, y, r, seed=3), lambda r: dgpruning(X, y, r), lambda r: kcenter(X, y, r)):
        small, large = set(fn(0.1).tolist()), set(fn(0.4).tolist())
        assert small <= large  # greedy orders do not depend on the budget


@given(n=st.integers(0, 5000), rate=st.floats(1e-4, 1.0), more=st.floats(0, 1))
@settings(max_examples=200, deadline=None)
def test_budget_rounds_to_the_nearest_count_within_one_and_all(n, rate, more):
    b = class_budget(n, rate)
    if n == 0:
        assert b == 0
        return
    assert 1 <= b <= n
    if 1 < rate * n + 0.5 and rate * n < n:  # not clipped: the nearest integer to ρ·n (halves round up)
        assert abs(b - rate * n) <= 0.5 and (b - rate * n != -0.5)
    assert class_budget(n, min(1.0, rate + more)) >= b  # more data never shrinks the budget


def test_budget_examples():
    assert [class_budget(1300, r) for r in (0.05, 0.1, 0.95)] == [65, 130, 1235]
    assert class_budget(10, 0.25) == 3 and class_budget(10, 0.35) == 4  # 2.5 -> 3, 3.5 -> 4: halves round up
    assert class_budget(7, 0.01) == 1 and class_budget(7, 1.0) == 7 and class_budget(1, 0.05) == 1


def test_registry_lists_every_selector():
    assert {"random", "moderate", "dgpruning", "d2pruning", "kcenter"} <= set(list_selectors())


# -- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5, float("nan")])
def test_bad_rate(rate):
    X, y = problem(0)
    with pytest.raises(SelectionError, match="rate must be in"):
        dgpruning(X, y, rate)


def test_bad_inputs():
    X, y = problem(0)
    with pytest.raises(SelectionError, match="'k' parameter of 'dgpruning' must be an int in the range"):
        dgpruning(X, y, 0.2, k=0)
    with pytest.raises(SelectionError, match="'k' parameter of 'dgpruning' must be an int"):
        dgpruning(X, y, 0.2, k="abc")
    np.testing.assert_array_equal(dgpruning(X, y, 0.2, k="3"), dgpruning(X, y, 0.2, k=3))  # text as --param gives it
    bad = X.copy()
    bad[5, 2] = np.nan
    with pytest.raises(SelectionError, match="NaN or Inf .* row 5, column 2"):
        moderate(bad, y, 0.2)
    bad[5, 2] = np.inf
    with pytest.raises(SelectionError, match="NaN or Inf"):
        kcenter(bad, y, 0.2)
    with pytest.raises(SelectionError, match="rows but labels"):
        dgpruning(X, y[:-1], 0.2)
    with pytest.raises(SelectionError, match="must be 2-D"):
        moderate(X[:, 0], y, 0.2)
    with pytest.raises(SelectionError, match="'center' parameter of 'moderate' must be a str among"):
        moderate(X, y, 0.2, center="mode")
    with pytest.raises(SelectionError, match="'graph_mode' parameter of 'dgpruning' must be a str among"):
        dgpruning(X, y, 0.2, graph_mode="max")
    with pytest.raises(SelectionError, match="'direction' parameter of 'dgpruning' must be a str among"):
        dgpruning(X, y, 0.2, direction="up")


def test_dead_columns_change_nothing():
    """dgpruning/d2pruning drop a class's all-zero columns before the Gram: the selection is the one
    of the full width (every distance, mean and score is the same without them)."""
    from actstore.coresets.kernels import live_columns_f64

    rng = np.random.default_rng(11)
    X = np.maximum(rng.standard_normal((300, 40)), 0).astype(np.float32)
    X[:, ::3] = 0.0
    y = rng.integers(0, 3, 300)
    live = live_columns_f64(X)
    assert live.dtype == np.float64 and live.flags.c_contiguous
    np.testing.assert_array_equal(live, X[:, X.any(axis=0)].astype(np.float64))
    assert dgpruning(X, y, 0.2).tolist() == ref_dgpruning(X, y, 0.2)
    assert dgpruning(X, y, 0.2).tolist() == dgpruning(X[:, X.any(axis=0)], y, 0.2).tolist()
    scores = np.linalg.norm(X, axis=1)
    assert d2pruning(X, y, 0.3, scores=scores).tolist() == d2pruning(X[:, X.any(axis=0)], y, 0.3,
                                                                    scores=scores).tolist()
