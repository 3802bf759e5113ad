"""VEBI's Φ per class against a plain restatement: per layer, the highest-weight units of each R,
depth-equalised, compared with netrep's algorithm; averaged over the layers where both found units."""

from __future__ import annotations

import numpy as np
import pytest

from actstore import open_store
from actstore.evaluate.protocol import class_phi
from actstore.interpret.features import Features
from actstore.testing import netrep_restated



def _vebi(store, coef):
    layers = ["layer2"] * 32 + ["layer3"] * 64
    channels = list(range(32)) + list(range(64))
    return Features("vebi", {"mu": 1.0, "labels": "predicted"},
                    {"coef": coef, "unit_layer": np.array(layers), "unit_channel": np.array(channels, np.int32)},
                    store.key, str(store.path), store.fingerprint, None)


def test_vebi_phi_is_the_depth_equalised_layer_mean(small_store):
    store = open_store(small_store)
    c = 1
    full, sub = np.zeros((4, 96)), np.zeros((4, 96))
    full[c, [3, 9, 20]] = [0.5, 0.9, 0.1]          # layer2: 9, 3, 20 by weight
    full[c, 32 + np.array([5, 6, 60])] = [0.2, 0.7, 0.4]  # layer3: 6, 60, 5
    sub[c, [9, 31]] = [0.3, 0.8]                      # layer2: 31, 9
    sub[c, 32 + np.array([6, 1, 2, 3])] = [0.1, 0.2, 0.3, 0.9]  # layer3: 3, 2, 1, 6
    got = class_phi(_vebi(store, full), _vebi(store, sub), store, c, [1.0, 0.5])

    def layer(name, a, b):
        A = np.asarray(store.maps_array(name)[store.class_rows(c)], np.float64)
        X, Y = A[..., a].reshape(-1, len(a)), A[..., b].reshape(-1, len(b))
        return {alpha: netrep_restated(X, Y, alpha) for alpha in (1.0, 0.5)}

    want = [layer("layer2", [9, 3], [31, 9]), layer("layer3", [6, 60, 5], [3, 2, 1])]
    assert got["layers"] == 2
    for alpha in (1.0, 0.5):
        assert got["phi"][alpha] == pytest.approx(np.mean([w[alpha] for w in want]), abs=1e-9)


def test_no_shared_layer_gives_nan_not_zero(small_store):
    store = open_store(small_store)
    full, sub = np.zeros((4, 96)), np.zeros((4, 96))
    full[0, 3] = 1.0        # layer2 only
    sub[0, 32 + 4] = 1.0    # layer3 only
    got = class_phi(_vebi(store, full), _vebi(store, sub), store, 0, [1.0])
    assert got["layers"] == 0 and np.isnan(got["phi"][1.0])
