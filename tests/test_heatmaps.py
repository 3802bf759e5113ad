"""§4.7 heatmaps against a plain restatement: score maps by their sum, keep k, max over them."""

from __future__ import annotations

import numpy as np
import pytest

from actstore.report.heatmaps import heatmap, heatmap_grid, overlay


def test_heatmap_is_the_max_over_the_k_highest_scoring_maps():
    rng = np.random.default_rng(0)
    Z = rng.random((5, 6, 8))
    Z[..., 2] += 3  # the best-scoring map
    Z[..., 6] += 2
    Z[..., 0] += 1
    want = np.stack([Z[..., 2], Z[..., 6], Z[..., 0]], -1).max(-1)
    np.testing.assert_array_equal(heatmap(Z, 3), want)
    np.testing.assert_array_equal(heatmap(Z, 1), Z[..., 2])
    np.testing.assert_array_equal(heatmap(Z, 100), Z.max(-1))


def test_overlay_resizes_to_the_image_and_stays_in_range():
    img = np.random.default_rng(1).normal(size=(3, 32, 32))
    H = np.zeros((4, 4))
    H[0, 0] = 1.0
    out = overlay(img, H)
    assert out.shape == (32, 32, 3) and 0 <= out.min() and out.max() <= 1
    assert out[0, 0, 0] > out[-1, -1, 0]  # jet: the hot corner is red, the cold one blue
    flat = overlay(img, np.ones((4, 4)))  # no contrast: nothing highlighted, no NaN
    assert np.isfinite(flat).all()


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(h, w, d\)"):
        heatmap(np.zeros((4, 4)))


def test_grid_is_a_png():
    img = np.zeros((3, 16, 16))
    png = heatmap_grid([img, img], {"a": [np.ones((4, 4, 2))] * 2, "full": [np.ones((4, 4, 2))] * 2}, 1, "t",
                       ["x", "y"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
