"""VEBI against in-memory lars_path, the constraint, and the KKT conditions of the μ-lasso."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import lars_path

from actstore.interpret import VEBI, InterpretError, calibrate_mu, gram_stats, solve_mu_lasso


def features(seed: int, n: int = 300, p: int = 40, k: int = 4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.gamma(1.0, 1.0, (n, p))
    X[np.arange(n), y * 3] += 2.0  # a few units carry the class
    X /= X.sum(axis=1, keepdims=True)  # energy shares: rows sum to 1
    return X, y


def path_at(X: np.ndarray, target: np.ndarray, mu: float) -> np.ndarray:
    """Independent: in-memory lars_path on the data, interpolated at ||w||₁ = μ."""
    _, _, coefs = lars_path(X, target, method="lasso", positive=True, max_iter=10_000)
    l1 = coefs.sum(axis=0)
    if l1[-1] <= mu:
        return coefs[:, -1]
    t = np.searchsorted(l1, mu, side="right") - 1
    return coefs[:, t] + (mu - l1[t]) / (l1[t + 1] - l1[t]) * (coefs[:, t + 1] - coefs[:, t])


@pytest.mark.parametrize("mu", [1e-3, 0.05, 0.5, 5.0, 1e4])
def test_equals_in_memory_lars_path(mu):
    X, y = features(0)
    model = VEBI(mu=mu).fit(X, y)
    for c in range(4):
        ref = path_at(X, (y == c).astype(float), mu)
        np.testing.assert_allclose(model.coef_[c], ref, atol=1e-6, rtol=0)
        assert set(model.relevant_units_[c]) == set(np.flatnonzero(ref > 0))


@pytest.mark.parametrize("mu", [1e-3, 0.2, 3.0])
def test_constraint_and_kkt(mu):
    X, y = features(1, p=25)
    model = VEBI(mu=mu).fit(X, y)
    for c in range(4):
        w = model.coef_[c]
        assert (w >= 0).all() and w.sum() <= mu + 1e-9
        grad = -2 * X.T @ ((y == c) - X @ w)  # of ||L - Xw||²
        if w.sum() < mu - 1e-9:  # L1 constraint inactive: plain non-negative least squares
            lam = 0.0
        else:
            lam = -grad[w > 0].mean()
        active = w > 1e-12
        np.testing.assert_allclose(grad[active] + lam, 0, atol=1e-6)
        assert (grad[~active] + lam >= -1e-6).all()
        assert lam >= -1e-9


def test_sample_weights_and_gram_route():
    X, y = features(2)
    wts = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    a = VEBI(mu=0.3).fit(X, y, sample_weight=wts)
    reps = np.repeat(np.arange(len(y)), 2)
    b = VEBI(mu=0.3).fit(X[reps], y[reps], sample_weight=np.repeat(wts, 2) / 2)
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-8)


def test_unit_table_and_bad_input():
    X, y = features(4, p=6, k=2)
    table = [("relu", i) for i in range(6)]
    model = VEBI(mu=1.0).fit(X, y, unit_table=table)
    assert all(u in table for u in model.units(0))
    X0 = X.copy()
    X0[:, 5] = 0.0  # an all-zero unit is never relevant
    assert 5 not in VEBI(mu=10.0).fit(X0, y).relevant_units_[1]
    with pytest.raises(InterpretError, match="'mu' parameter of VEBI must be a float in the range"):
        VEBI(mu=0).fit(X, y)
    with pytest.raises(InterpretError, match="Input contains NaN"):
        X0[0, 0] = np.nan
        VEBI().fit(X0, y)


@pytest.mark.parametrize("mu", [1e-3, 0.1, 2.0, 1e3])
def test_screened_solve_equals_the_full_path(mu):
    """With more units than the screen, the KKT-checked screened solve equals the unscreened path."""
    X, y = features(5, n=400, p=120)
    G, b, _ = gram_stats(X, y, 4)
    for c in range(4):
        np.testing.assert_allclose(solve_mu_lasso(G, b[:, c], 400, mu, screen=10),
                                   solve_mu_lasso(G, b[:, c], 400, mu, screen=1000), atol=1e-9)


def several(seed: int, n: int = 500, p: int = 60, k: int = 6):
    """Energy shares where each class raises 8 of its own units by different amounts (paths of several units)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.gamma(1.0, 1.0, (n, p))
    for c in range(k):
        units = rng.choice(p, 8, replace=False)
        X[np.ix_(y == c, units)] += rng.gamma(2.0, 0.5, ((y == c).sum(), 8))
    X /= X.sum(axis=1, keepdims=True)
    return X, y


def entry_segment(X, target, units):
    """Independent: (start, end) L1 norms of the first lars_path segment with ``units`` units."""
    _, _, coefs = lars_path(X, target, method="lasso", positive=True, max_iter=10_000)
    l1, active = coefs.sum(axis=0), coefs > 0
    reached = np.flatnonzero((active[:, :-1] | active[:, 1:]).sum(axis=0) >= units)
    if not reached.size:
        return np.inf, np.inf
    return l1[reached[0]], l1[reached[0] + 1]


def test_one_unit_per_class_is_a_positive_budget():
    """Before: K = 1 gave μ = 0 (the first unit enters at an L1 norm of 0), so every class kept none."""
    X, y = several(6)
    model = VEBI(units_per_class=1).fit(X, y)
    assert model.mu_ > 0 and (counts_at(X, y, model.mu_, range(6)) >= 1).sum() >= 3


def counts_at(X, y, mu, classes):
    """Independent: the units each class keeps at μ, from in-memory lars_path."""
    return np.array([(path_at(X, (y == c).astype(float), mu) > 0).sum() for c in classes])


@pytest.mark.parametrize("units", [2, 4, 7])
def test_units_per_class_calibrates_the_smallest_mu_where_half_the_classes_keep_k(units):
    X, y = several(6)
    model = VEBI(units_per_class=units).fit(X, y)
    mu = model.mu_
    assert (counts_at(X, y, mu, range(6)) >= units).sum() >= 3  # half of the 6 classes keep K or more
    start, end = sorted(entry_segment(X, (y == c).astype(float), units) for c in range(6))[2]
    assert start < mu < start + 0.01 * (end - start)  # just inside the segment where the third class first holds K...
    assert (counts_at(X, y, start * (1 - 1e-9), range(6)) >= units).sum() < 3  # ...and before it, under half do
    np.testing.assert_allclose(model.coef_, VEBI(mu=mu).fit(X, y).coef_, atol=1e-12)  # then it is plain VEBI
    assert model.converged_.all() and (model.n_iter_ > 0).all()
    assert [len(r) for r in model.relevant_units_] == counts_at(X, y, mu, range(6)).tolist()


def test_calibration_through_the_gram_route_and_screen():
    X, y = several(7, n=600, p=700, k=4)
    G, b, _ = gram_stats(X, y, 4)
    mu = calibrate_mu(G, b, 600, 5, screen=16)
    assert mu == pytest.approx(calibrate_mu(G, b, 600, 5, screen=1000), rel=1e-9)
    assert (counts_at(X, y, mu, range(4)) >= 5).sum() >= 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"units_per_class": 0}, "'units_per_class' parameter of VEBI must be an int in the range"),
    ({"units_per_class": 41}, "units_per_class must be in 1..40"),
    ({"units_per_class": 30}, "no mu gives half of the classes 30 units"),
    ({"units_per_class": 3, "mu": 0.1}, "give mu or units_per_class, not both"),
    ({"units_per_class": 2.5}, "'units_per_class' parameter of VEBI must be an int"),
])
def test_bad_unit_budgets(kwargs, message):
    X, y = features(0)
    with pytest.raises(InterpretError, match=message):
        VEBI(**kwargs).fit(X, y)



@pytest.mark.parametrize("order", ["C", "F"])
def test_accumulate_gram_equals_plain_products(order):
    """The in-place symmetric rank-k update (and the per-class row sums) equal XᵀX and XᵀL."""
    from actstore.interpret.vebi import accumulate_gram, gram_stats

    X, y = features(6, n=333, p=150, k=5)
    G = np.zeros((150, 150), order=order)
    b = np.zeros((150, 5))
    for lo in range(0, 333, 100):  # uneven blocks, float32 as the store holds them
        accumulate_gram(G, b, X[lo:lo + 100].astype(np.float32), y[lo:lo + 100])
    X32 = X.astype(np.float32).astype(np.float64)
    G_ref, b_ref, _ = gram_stats(X32, y, 5)
    np.testing.assert_allclose(G, G_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(G, G.T)  # exactly symmetric
    np.testing.assert_allclose(b, b_ref, rtol=1e-12, atol=1e-15)
