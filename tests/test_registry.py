"""A fourth interpreter is one module and its registration: the README's example, run through interpret(), the
registry, the evaluation and a saved Features artifact, with no other change to actstore."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from actstore import interpret, open_store
from actstore.evaluate.protocol import class_phi
from actstore.interpret import Interpreter, get_interpreter, list_interpreters, register
from actstore.interpret.base import make_features, rows_of, spatial_maps


@register
class PCADictionary(Interpreter):  # the README's example: per class, a PCA dictionary of the maps
    name, label, estimator = "pca-dict", "PCA dictionary", PCA

    def fit(self, store, targets, *, layer, scheduler, params, progress=lambda **_: None):
        layer, arr = spatial_maps(store, layer, "pca-dict")
        out = []
        for t in targets:
            maps = [np.asarray(arr.oindex[rows_of(store, t, c)], np.float32) for c in range(len(store.classes))]
            comps = [PCA(params["n_components"]).fit(A.reshape(-1, A.shape[-1])).components_ for A in maps]
            out.append(make_features(store, self, params, t, layer, {"components": np.stack(comps)}, {}))
        return out

    def interpretation(self, features, data):
        return {features.layer: data.A @ features.arrays["components"][data.c].T}

    def head_input(self, features, data, z, ctx):
        return z[features.layer] @ features.arrays["components"][data.c]

    def units(self, features, c):
        return features.arrays["components"].shape[1]

    def fit_record(self, features, c):
        return 0, True


def test_a_new_interpreter_plugs_in_through_the_registry(small_store):
    assert "pca-dict" in list_interpreters() and get_interpreter("pca-dict").defaults()["n_components"] is None
    store = open_store(small_store)
    full, = interpret(store, "pca-dict", n_components=3)
    assert full.arrays["components"].shape == (4, 3, store.maps_array().shape[-1])
    assert full.key == interpret(store, "pca-dict", n_components=3)[0].key
    same = class_phi(full, full, store, 1, [1.0])
    assert same["layers"] == 1 and abs(same["phi"][1.0]) < 1e-6  # Z against itself
