"""Φ against netrep's test vectors and a plain restatement of netrep's algorithm; streaming; bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actstore.evaluate import EvaluationError, ShapeStats, angular_distance
from actstore.testing import netrep_restated

CASES = Path(__file__).resolve().parent / "data" / "shape_metric_cases.npz"  # copied from shared/testdata


@pytest.fixture(scope="module")
def cases():
    return np.load(CASES)  # computed with netrep (reference shape-metric.md)


@pytest.mark.parametrize("chunk", [None, 1, 7, 64])
def test_matches_netrep_test_vectors(cases, chunk):
    for case, alpha, theta in cases["cases"]:
        X, Y = cases[f"X{int(case)}"], cases[f"Y{int(case)}"]
        if chunk is None:
            got = angular_distance(X, Y, alpha)
        else:
            stats = ShapeStats()
            for i in range(0, len(X), chunk):
                stats.update(X[i:i + chunk], Y[i:i + chunk])
            got = stats.distance(alpha)
        assert abs(got - theta) < 1e-9, (case, alpha, got, theta)


@pytest.mark.parametrize(("n", "dx", "dy"), [(400, 12, 12), (300, 20, 9), (60, 30, 30), (35, 8, 40)])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_matches_a_plain_restatement(n, dx, dy, alpha):
    rng = np.random.default_rng(n + dx)
    X = rng.standard_normal((n, dx)) @ rng.standard_normal((dx, dx)) + 3.0
    Y = np.abs(X[:, :min(dx, dy)] @ rng.standard_normal((min(dx, dy), dy))) + rng.standard_normal((n, dy))
    if alpha == 0.0 and n - 1 <= max(dx, dy):
        pytest.skip("degenerate CCA (n-1 <= d): θ = 0 for any data, only round-off differs")
    assert abs(angular_distance(X, Y, alpha) - netrep_restated(X, Y, alpha)) < 1e-8


def test_merge_many_alphas_and_invariances():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((500, 10)), rng.standard_normal((500, 6))
    Y[:, :3] += X[:, :3]
    a, b = ShapeStats().update(X[:200], Y[:200]), ShapeStats().update(X[200:], Y[200:])
    whole = ShapeStats().update(X, Y)
    merged = a.merge(b)
    thetas = whole.distances([0.0, 0.5, 1.0])
    for alpha, theta in thetas.items():
        assert abs(merged.distance(alpha) - theta) < 1e-12
        assert 0 <= theta <= np.pi / 2
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert abs(angular_distance(X, Y @ Q, 1.0) - thetas[1.0]) < 1e-10  # rotation invariant
    perm = rng.permutation(6)
    assert abs(angular_distance(X, Y[:, perm], 0.5) - thetas[0.5]) < 1e-10  # e.g. topic order
    assert abs(angular_distance(Y, X, 0.5) - thetas[0.5]) < 1e-10  # symmetric
    assert abs(angular_distance(X * 7, Y, 1.0) - thetas[1.0]) < 1e-10  # scale-free at α = 1
    maps = rng.standard_normal((20, 4, 4, 5))
    assert abs(angular_distance(maps, maps * 2 + 1) - 0.0) < 1e-6  # maps flatten to (n·H·W, D)


def test_far_from_zero_means_stay_accurate():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 4)) + 1e4
    Y = X @ rng.standard_normal((4, 4)) + 0.5 * rng.standard_normal((3000, 4))
    stats = ShapeStats()
    for i in range(0, 3000, 128):
        stats.update(X[i:i + 128], Y[i:i + 128])
    assert abs(stats.distance(1.0) - netrep_restated(X, Y, 1.0)) < 1e-9


def test_bad_input():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 4))
    with pytest.raises(EvaluationError, match="same rows"):
        angular_distance(X, X[:-1])
    with pytest.raises(EvaluationError, match=r"alpha must be in \[0, 1\]"):
        angular_distance(X, X, alpha=1.5)
    with pytest.raises(EvaluationError, match="undefined: Y has no variance"):
        angular_distance(X, np.zeros((50, 3)))
    with pytest.raises(EvaluationError, match="undefined: X has no variance"):
        angular_distance(np.ones((50, 3)), X, alpha=0.5)
    with pytest.raises(EvaluationError, match="NaN or Inf"):
        angular_distance(np.full((50, 4), np.nan), X)
    with pytest.raises(EvaluationError, match="no rows"):
        ShapeStats().distance()


def test_in_place_blas_accumulation_equals_plain_centred_grams():
    """The streamed statistics (dsyrk on each centred block, Chan's rank-1 correction in place)
    equal the centred Grams of all rows, float32 blocks included, and merging is order-free."""
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((700, 9)) * [1, 2, 3, 4, 5, 6, 7, 8, 9] + 50).astype(np.float32)
    Y = rng.standard_normal((700, 5)) - 20
    stats = ShapeStats()
    for i in range(0, 700, 128):
        stats.update(X[i:i + 128], Y[i:i + 128])
    X64 = X.astype(np.float64)
    Xc, Yc = X64 - X64.mean(0), Y - Y.mean(0)
    np.testing.assert_allclose(stats.cxx, Xc.T @ Xc, rtol=1e-11)
    np.testing.assert_array_equal(stats.cxx, stats.cxx.T)
    np.testing.assert_allclose(stats.cyy, Yc.T @ Yc, rtol=1e-11)
    np.testing.assert_allclose(stats.cxy, Xc.T @ Yc, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(stats.mx, X64.mean(0), rtol=1e-13)
    parts = [ShapeStats().update(X[i:i + 300], Y[i:i + 300]) for i in range(0, 700, 300)]
    merged = ShapeStats().merge(parts[2]).merge(parts[0]).merge(parts[1])
    for a in (0.0, 0.5, 1.0):
        assert abs(merged.distance(a) - stats.distance(a)) < 1e-12


def test_a_block_larger_than_a_slab_is_added_slab_by_slab(monkeypatch):
    """One update over several slabs of centred rows (the last one ragged) equals the plain centred Grams."""
    import actstore.evaluate.shape as shape

    monkeypatch.setattr(shape, "SLAB_BYTES", 1)  # the minimum slab: 256 rows
    rng = np.random.default_rng(4)
    X = (rng.standard_normal((700, 6)) + 30).astype(np.float32)
    Y = rng.standard_normal((700, 4)) * 5
    stats = ShapeStats().update(X, Y)
    X64 = X.astype(np.float64)
    Xc, Yc = X64 - X64.mean(0), Y - Y.mean(0)
    np.testing.assert_allclose(stats.cxx, Xc.T @ Xc, rtol=1e-11)
    np.testing.assert_allclose(stats.cyy, Yc.T @ Yc, rtol=1e-11)
    np.testing.assert_allclose(stats.cxy, Xc.T @ Yc, rtol=1e-10, atol=1e-9)


def test_matches_real_netrep_when_installed():
    netrep = pytest.importorskip("netrep.metrics")
    rng = np.random.default_rng(4)
    X = rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12)) + 2.0
    Y = np.maximum(X[:, :8] @ rng.standard_normal((8, 10)), 0) + 0.3 * rng.standard_normal((400, 10))
    stats = ShapeStats()
    for i in range(0, 400, 64):
        stats.update(X[i:i + 64], Y[i:i + 64])
    for alpha in (0.0, 0.3, 0.5, 1.0):
        ref = netrep.LinearMetric(alpha=alpha).fit_score(X, Y)
        assert abs(stats.distance(alpha) - ref) < 1e-9, alpha


@pytest.mark.parametrize("read_ahead", [True, False])
def test_update_all_streams_pairs_and_reports_errors(read_ahead):
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((1000, 7)), rng.standard_normal((1000, 4))
    Y[:, :2] += X[:, :2]
    blocks = ((X[i:i + 90], Y[i:i + 90]) for i in range(0, 1000, 90))
    streamed = ShapeStats().update_all(blocks, read_ahead=read_ahead)
    whole = ShapeStats().update(X, Y)
    for a in (0.0, 0.5, 1.0):
        assert abs(streamed.distance(a) - whole.distance(a)) < 1e-12

    def failing():
        yield X[:10], Y[:10]
        raise OSError("store chunk unreadable")

    with pytest.raises(OSError, match="unreadable"):
        ShapeStats().update_all(failing(), read_ahead=read_ahead)
    bad = ((X[i:i + 100], np.full((100, 4), np.nan)) for i in range(0, 1000, 100))
    with pytest.raises(EvaluationError, match="NaN or Inf"):
        ShapeStats().update_all(bad, read_ahead=read_ahead)
