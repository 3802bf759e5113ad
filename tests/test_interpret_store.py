"""Interpreters on stores: out-of-core and coreset paths equal in-memory computations; heads; CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import rerecord_digest

from actstore import Features, errors, extract, interpret, load_model, model_head, open_store, save_features, select
from actstore.interpret import ICE, VEBI, InterpretError

DATA = "synthetic:n=48,classes=3,size=32,seed=7"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("interp")
    return extract("demo-resnet", DATA, d / "s.zarr", weights="random", units=True, block_rows=8,
                   catalog=d / "c.yaml", progress=False).path


def test_vebi_store_pass_equals_in_memory(store_path):
    store = open_store(store_path)
    X = np.asarray(store.unit_energy())
    y = np.asarray(store.logits()).argmax(1)
    cs = select(store, "random", 0.5, seed=1)
    full, sub = interpret(store, "vebi", coresets=[cs], full=True, mu=0.05, block_rows=3)[::-1]
    ref = VEBI(mu=0.05).fit(X, y, n_classes=10)
    np.testing.assert_allclose(full.arrays["coef"], ref.coef_, atol=1e-6)
    rows = cs.rows(store)
    ref_sub = VEBI(mu=0.05).fit(X[rows], y[rows], n_classes=10)
    np.testing.assert_allclose(sub.arrays["coef"], ref_sub.coef_, atol=1e-6)
    assert sub.coreset == cs.key and full.coreset is None
    assert full.arrays["unit_layer"][0] == "relu" and len(full.arrays["unit_channel"]) == X.shape[1]
    true = interpret(store, "vebi", mu=0.05, labels="true")[0]
    np.testing.assert_allclose(true.arrays["coef"][:3], VEBI(mu=0.05).fit(X, store.labels, n_classes=3).coef_,
                               atol=1e-6)


def test_vebi_unit_budget_is_calibrated_on_the_full_data_and_kept_for_every_coreset(store_path):
    store = open_store(store_path)
    X = np.asarray(store.unit_energy())
    y = np.asarray(store.logits()).argmax(1)
    cs = select(store, "random", 0.5, seed=1)
    (sub,) = interpret(store, "vebi", coresets=[cs], units_per_class=3)  # the full data is not a target
    want = VEBI(units_per_class=3).fit(X, y, n_classes=10).mu_
    assert sub.meta["mu"] == pytest.approx(want, rel=1e-12) and sub.meta["mu_calibrated"]
    rows = cs.rows(store)
    np.testing.assert_allclose(sub.arrays["coef"], VEBI(mu=want).fit(X[rows], y[rows], n_classes=10).coef_,
                               atol=1e-9)
    assert sub.params["units_per_class"] == 3 and sub.params["mu"] is None
    assert len(sub.meta["converged"]) == 10 and all(sub.meta["converged"])


def test_ice_store_equals_in_memory_and_out_of_core(store_path):
    store = open_store(store_path)
    mem = interpret(store, "ice", n_components=4)[0]
    ooc = interpret(store, "ice", n_components=4, memory_limit=20_000)[0]  # forces the streamed path
    for c in range(3):
        A = np.asarray(store.maps(rows=store.class_rows(c)), np.float32)
        ref = ICE(4).fit(A)
        np.testing.assert_allclose(mem.arrays["components"][c], ref.components_, rtol=1e-4, atol=1e-5)
        assert abs(ooc.arrays["reconstruction_err"][c] - ref.reconstruction_err_) <= 0.01 * ref.reconstruction_err_
    assert mem.layer == "layer3" and mem.params["n_components"] == 4


def test_features_saved_atomically_and_registered(store_path, tmp_path):
    f = interpret(store_path, "vebi", mu=0.01)[0]
    name, path = save_features(f, tmp_path / "cat.yaml", tmp_path / "feat")
    back = Features.load(path)
    np.testing.assert_array_equal(back.arrays["coef"], f.arrays["coef"])
    assert back.key == f.key and back.params == {"mu": 0.01, "units_per_class": None, "positive": True,
                                                 "labels": "predicted"}
    assert not [p for p in (tmp_path / "feat").iterdir() if p.name.startswith(".")]
    from actstore import Catalog

    assert Catalog.load(tmp_path / "cat.yaml").get("features", name)["key"] == f.key


def test_head_gives_the_stored_logits(tmp_path, with_trained):
    for model, layer in (("demo-resnet", "layer3"), ("demo-vgg", "features.13"), ("demo-vgg", "features.10")):
        res = extract(model, "digits:val", tmp_path / f"{model}-{layer}.zarr", layers=[layer], dtype="float32",
                      catalog=tmp_path / "c.yaml", progress=False)
        store = res.store
        head = model_head(load_model(model), layer)
        logits = head.logits(np.asarray(store.maps(layer, slice(0, 50))))
        np.testing.assert_allclose(logits, np.asarray(store.logits(slice(0, 50))), rtol=1e-4, atol=1e-4)
    with pytest.raises(errors.LayerError, match="ResNet head exists after its last block"):
        model_head(load_model("demo-resnet", "random"), "layer2")


def test_bad_interpret_requests(store_path, tmp_path):
    with pytest.raises(InterpretError, match="unknown interpretation method 'tcav'"):
        interpret(store_path, "tcav")
    with pytest.raises(InterpretError, match=r"unknown parameter\(s\) \['k'\] for 'ice'"):
        interpret(store_path, "ice", k=3)
    with pytest.raises(InterpretError, match="'mu' parameter of 'vebi' must be a float in the range"):
        interpret(store_path, "vebi", mu=-1.0)
    with pytest.raises(InterpretError, match="give mu or units_per_class, not both"):
        interpret(store_path, "vebi", mu=0.1, units_per_class=3)
    with pytest.raises(InterpretError, match="'k' parameter of 'dgpruning'|'max_iter' parameter of 'ice' must be an int"):
        interpret(store_path, "ice", max_iter="abc")
    tiny = select(store_path, "random", 0.05)  # one row per class: 64 positions
    with pytest.raises(InterpretError, match="fewer than n_components=100"):
        interpret(store_path, "ice", coresets=[tiny], n_components=100)
    with pytest.raises(InterpretError, match="no layer 'layer9'"):
        interpret(store_path, "ice", layer="layer9")
    broken = tmp_path / "nan.zarr"
    shutil.copytree(store_path, broken)
    zarr.open_array(str(broken / "units/energy"), mode="r+")[5, 2] = np.nan
    rerecord_digest(broken, "units/energy", 5)  # as if extracted with the NaN
    with pytest.raises(InterpretError, match="NaN or Inf"):
        interpret(broken, "vebi")
    other = extract("demo-vgg", "synthetic:n=12,classes=3", tmp_path / "o.zarr", weights="random",
                    catalog=tmp_path / "c.yaml", progress=False)
    with pytest.raises(errors.StoreError, match="same dataset"):
        interpret(other.path, "vebi", coresets=[tiny])


@pytest.mark.slow
def test_cli_interpret(store_path, home):
    env = {**os.environ, "ACTSTORE_HOME": str(home), "ACTSTORE_PROGRESS_INTERVAL": "0"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "actstore.cli", *a], capture_output=True,  # noqa: E731
                                    text=True, env=env, timeout=300)
    made = json.loads(run("select", str(store_path), "--method", "kcenter", "--rate", "0.5", "--json").stdout)
    proc = run("interpret", str(store_path), "--method", "vebi", "--coreset", made[0]["name"], "--full",
               "--param", "mu=0.02", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out) == 2 and out[0]["coreset"] == made[0]["key"] and out[1]["coreset"] is None
    logged = run("interpret", str(store_path), "--method", "ice", "--param", "n_components=3")  # stderr is a pipe
    assert logged.returncode == 0, logged.stderr
    assert "ice: 3 class fits to do" in logged.stderr and "ice: 3/3 class fits (100%)" in logged.stderr
    assert Features.load(out[0]["path"]).params["mu"] == 0.02
    bad = run("interpret", str(store_path), "--method", "ice", "--param", "n_components=0")
    assert bad.returncode == 2 and "'n_components' parameter of 'ice' must be an int" in bad.stderr
    for wrong in ("mu=abc", "max_iter=abc", "mu=[1, 2"):
        method = "ice" if "iter" in wrong else "vebi"
        proc = run("interpret", str(store_path), "--method", method, "--param", wrong)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "error:" in proc.stderr, proc.stderr


def test_shuffle_buffer_visits_each_selected_row_once_per_epoch(store_path):
    from actstore.interpret.topic_store import shuffled_batches

    store = open_store(store_path)
    arr = store.maps_array("layer3")
    rows = np.sort(np.random.default_rng(0).choice(store.n_rows, 30, replace=False))
    labels = np.arange(store.n_rows)  # label = row, to identify what came back
    stats: dict = {}
    batches = shuffled_batches(arr, rows, labels, batch_size=7, buffer_rows=10, seed=3, stats=stats)
    for epoch in range(2):
        seen = np.concatenate([y for _, y in batches(epoch)])
        assert sorted(seen.tolist()) == rows.tolist()
    first = np.concatenate([y for _, y in batches(0)])
    assert not np.array_equal(first, np.sort(first))  # shuffled
    x, y = next(iter(batches(0)))
    np.testing.assert_array_equal(x, np.asarray(arr.oindex[y], np.float32))
    assert stats["bytes_read"] > 0


@pytest.mark.parametrize("layout, buffer_rows, store_passes", [
    ("dense", 10, 3),  # streamed through a refilled buffer: every epoch reads the store
    ("sparse", 10, 1),  # its chunks hold > 2x its rows: copied once to a temporary file, reread from there
    ("sparse", 64, 1),  # fits the buffer: read once and kept
])
def test_shuffle_buffer_batches_hold_the_stored_rows(store_path, layout, buffer_rows, store_passes):
    from actstore.interpret.topic_store import shuffled_batches

    store = open_store(store_path)
    arr = store.maps_array("layer3")
    rows = np.arange(30) if layout == "dense" else np.arange(0, 48, 3)
    labels = np.arange(store.n_rows)
    stats: dict = {}
    batches = shuffled_batches(arr, rows, labels, batch_size=4, buffer_rows=buffer_rows, seed=0, stats=stats)
    for epoch in range(3):
        seen = []
        for x, y in batches(epoch):
            assert x.dtype == np.float32 and len(x) == len(y) <= 4
            np.testing.assert_array_equal(x, np.asarray(arr.oindex[y]).astype(np.float32))
            seen += y.tolist()
        assert sorted(seen) == rows.tolist()
    per_epoch = len(rows) * int(np.prod(arr.shape[1:])) * arr.dtype.itemsize
    assert stats["bytes_read"] == per_epoch * store_passes
    assert stats.get("compacted_bytes", 0) == (per_epoch if layout == "sparse" and buffer_rows < 16 else 0)


def test_an_epoch_left_early_leaves_a_partial_copy_that_later_epochs_complete(store_path):
    """The topic model stops reading when its step budget is spent: the chunks copied so far are reread, the
    rest read from the store once and appended; every row is still the stored one."""
    from actstore.interpret.topic_store import shuffled_batches

    store = open_store(store_path)
    arr = store.maps_array("layer3")
    rows, stats = np.arange(0, 48, 3), {}
    batches = shuffled_batches(arr, rows, np.arange(store.n_rows), 4, 10, 0, stats)
    next(iter(batches(0)))  # abandoned after one batch
    for epoch in (1, 2):
        seen = []
        for x, y in batches(epoch):
            np.testing.assert_array_equal(x, np.asarray(arr.oindex[y]).astype(np.float32))
            seen += y.tolist()
        assert sorted(seen) == rows.tolist()
    per_epoch = len(rows) * int(np.prod(arr.shape[1:])) * arr.dtype.itemsize
    assert stats["bytes_read"] == stats["compacted_bytes"] == per_epoch


def test_a_full_disk_while_copying_a_selection_is_one_clear_error(store_path, monkeypatch):
    import errno

    from actstore.interpret import topic_store

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(topic_store.os, "pwrite", full)
    store = open_store(store_path)
    batches = topic_store.shuffled_batches(store.maps_array("layer3"), np.arange(0, 48, 3), store.labels, 4, 10, 0)
    with pytest.raises(InterpretError, match="cannot copy the selection's rows to a temporary file in .* "
                                             r"\(No space left on device\): free space there or set ACTSTORE_HOME"):
        list(batches(0))


def test_topic_on_a_store_through_the_models_head(tmp_path, with_trained):
    res = extract("demo-vgg", "digits:train", tmp_path / "t.zarr", catalog=tmp_path / "c.yaml", progress=False)
    cs = select(res.path, "random", 0.5)
    feats = interpret(res.path, "topic", coresets=[cs], full=False, n_topics=8, epochs=5, lr=1e-2, batch_size=64,
                      hidden=32, lambda1=1.0, lambda2=1.0)
    f = feats[0]
    assert f.arrays["topics"].shape[0] == 64 and f.arrays["w2"].shape == (32, 64)
    assert f.meta["history"][-1]["completeness"] > 0.9 and f.coreset == cs.key
    with pytest.raises(InterpretError, match="'n_topics' parameter of 'topic' must be an int"):
        interpret(res.path, "topic", n_topics=0)
