"""Selection on stores: one pass for many rates, the Coreset artifact, transfer across models, the CLI."""

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

from actstore import Catalog, Coreset, errors, extract, open_store, save_coreset, select, select_many
from actstore.coresets import SelectionError, dgpruning, kcenter, moderate, random_subset

DATA = "synthetic:n=60,classes=3,size=32,seed=4"


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same dataset through two models: coresets transfer between them by sample id."""
    d = tmp_path_factory.mktemp("two")
    a = extract("demo-resnet", DATA, d / "a.zarr", weights="random", block_rows=8, catalog=d / "c.yaml",
                progress=False, layers=["layer2", "layer3"])
    b = extract("demo-vgg", DATA, d / "b.zarr", weights="random", block_rows=8, catalog=d / "c.yaml", progress=False)
    return a.path, b.path


@pytest.mark.parametrize(("method", "fn"), [
    ("random", lambda X, y, r: random_subset(X, y, r, seed=2)),
    ("moderate", lambda X, y, r: moderate(X, y, r)),
    ("dgpruning", lambda X, y, r: dgpruning(X, y, r, seed=2)),
    ("kcenter", lambda X, y, r: kcenter(X, y, r, seed=2)),
])
def test_store_selection_equals_array_selection(two_stores, method, fn):
    store = open_store(two_stores[0])
    X = np.asarray(store.pooled("layer3"))
    rates = [0.1, 0.5, 0.95]
    coresets = select_many(store, method, rates, seed=2)
    for cs, rate in zip(coresets, rates, strict=True):
        rows = fn(X, store.labels, rate)
        assert np.array_equal(cs.rows(store), rows), (method, rate)
        assert np.array_equal(cs.ids, np.sort(store.sample_ids[rows]))
        assert cs.layer == (None if method == "random" else "layer3") and cs.rate == rate


def test_layer_choice_and_saved_artifact(two_stores, tmp_path):
    store = open_store(two_stores[0])
    cs = select(store, "dgpruning", 0.3, layer="layer2", k=3)
    X2 = np.asarray(store.pooled("layer2"))
    assert np.array_equal(cs.rows(store), dgpruning(X2, store.labels, 0.3, k=3))
    name, path = save_coreset(cs, tmp_path / "cat.yaml", tmp_path / "cs")
    again = Coreset.load(path)
    assert again.key == cs.key and np.array_equal(again.ids, cs.ids) and again.params["k"] == 3
    entry = Catalog.load(tmp_path / "cat.yaml").get("coresets", name)
    assert entry["fingerprint"] == store.fingerprint and entry["provenance"]["method"] == "dgpruning"
    assert not list((tmp_path / "cs").glob(".*tmp"))


def test_coreset_transfers_to_another_model_of_the_same_dataset(two_stores):
    a, b = open_store(two_stores[0]), open_store(two_stores[1])
    cs = select(a, "moderate", 0.4)
    rows_b = cs.rows(b)
    assert np.array_equal(np.sort(b.sample_ids[rows_b]), cs.ids)
    for c in range(3):
        assert set(b.labels[cs.class_rows(b, c)].tolist()) == {c}


def test_coreset_on_another_dataset_is_refused(two_stores, tmp_path):
    other = extract("demo-vgg", "synthetic:n=60,classes=3,size=32,seed=5", tmp_path / "o.zarr", weights="random",
                    catalog=tmp_path / "c.yaml", progress=False)
    cs = select(two_stores[0], "random", 0.2)
    with pytest.raises(errors.StoreError, match="transfers only between stores of the same dataset"):
        cs.rows(other.store)


def test_d2pruning_with_scores_from_files(two_stores, tmp_path):
    store = open_store(two_stores[0])
    scores = np.random.default_rng(0).uniform(size=store.n_rows)
    np.save(tmp_path / "s.npy", scores)
    with open(tmp_path / "s.csv", "w") as fh:
        fh.write("# id,score\n")
        for i, s in zip(store.sample_ids, scores, strict=True):
            fh.write(f"{i},{float(s)!r}\n")
    X = np.asarray(store.pooled())
    from actstore.coresets import d2pruning

    expected = d2pruning(X, store.labels, 0.3, scores=scores)
    for src in (tmp_path / "s.npy", tmp_path / "s.csv", scores):
        assert np.array_equal(select(store, "d2pruning", 0.3, scores=src).rows(store), expected)
    with pytest.raises(SelectionError, match="needs per-sample scores"):
        select(store, "d2pruning", 0.3)
    with pytest.raises(SelectionError, match="one value per row"):
        select(store, "d2pruning", 0.3, scores=scores[:5])


def test_bad_selection_requests(two_stores, tmp_path):
    store = open_store(two_stores[0])
    with pytest.raises(SelectionError, match="unknown selection method 'herding'"):
        select(store, "herding", 0.1)
    with pytest.raises(SelectionError, match=r"unknown parameter\(s\) \['gamma'\] for 'dgpruning'"):
        select(store, "dgpruning", 0.1, gamma=1.0)
    with pytest.raises(SelectionError, match="rate must be in"):
        select(store, "random", 1.2)
    with pytest.raises(errors.StoreError, match="no layer 'fc'"):
        select(store, "moderate", 0.1, layer="fc")
    broken = tmp_path / "nan.zarr"
    shutil.copytree(two_stores[0], broken)
    zarr.open_array(str(broken / "layers/layer3/pooled"), mode="r+")[25, 3] = np.nan
    rerecord_digest(broken, "layers/layer3/pooled", 25)  # as if extracted with the NaN
    with pytest.raises(SelectionError, match=r"NaN or Inf \(class 'class1', row 25\)"):
        select(broken, "dgpruning", 0.1)


def test_one_row_class_keeps_its_row(tmp_path):
    res = extract("demo-vgg", "synthetic:n=7,classes=3", tmp_path / "t.zarr", weights="random",
                  catalog=tmp_path / "c.yaml", progress=False)
    store = res.store
    counts = np.diff(store.class_offsets)
    for method in ("random", "moderate", "dgpruning", "kcenter"):
        cs = select(store, method, 0.05)
        assert [len(cs.ids_by_class[c]) for c in range(3)] == [1 if n else 0 for n in counts]


def cli(*args, home):
    env = {**os.environ, "ACTSTORE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "actstore.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.slow
def test_cli_select_ls_show_export(two_stores, home, tmp_path):
    proc = cli("select", str(two_stores[0]), "--method", "dgpruning", "--rate", "0.2", "--rate", "0.5",
               "--param", "k=4", "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout)
    assert [m["rate"] for m in made] == [0.2, 0.5]
    listed = json.loads(cli("coreset", "ls", "--json", home=home).stdout)
    assert {m["name"] for m in made} == {r["name"] for r in listed}
    shown = json.loads(cli("coreset", "show", made[0]["name"], "--json", home=home).stdout)
    assert shown["params"]["k"] == 4 and shown["method"] == "dgpruning"
    csv = cli("coreset", "export", made[0]["name"], home=home).stdout.splitlines()
    assert csv[0] == "id,class" and len(csv) == 1 + made[0]["n"]
    cs = Coreset.load(made[0]["path"])
    assert sorted(int(line.split(",")[0]) for line in csv[1:]) == cs.ids.tolist()
    bad = cli("select", str(two_stores[0]), "--method", "dgpruning", "--rate", "0.2", "--param", "k=0", home=home)
    assert bad.returncode == 2 and "'k' parameter of 'dgpruning' must be an int in the range [1, inf)" in \
        bad.stderr and "Traceback" not in bad.stderr
    for wrong in ("k=abc", "k=[1, 2", "gamma_r=x"):
        bad = cli("select", str(two_stores[0]), "--method", "dgpruning", "--rate", "0.2", "--param", wrong, home=home)
        assert bad.returncode == 2 and bad.stderr.startswith("error:") and bad.stderr.count("\n") == 1, bad.stderr
    bad = cli("select", "no-such-store", "--method", "random", "--rate", "0.2", home=home)
    assert bad.returncode == 2 and "no store at 'no-such-store'" in bad.stderr


@pytest.mark.parametrize("min_bytes", [1, 40, 10_000])
def test_iter_classes_reads_once_in_order(tmp_path, min_bytes):
    from actstore.coresets.select import iter_classes

    data = np.arange(23 * 2, dtype=np.float32).reshape(23, 2)
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(3, 2), dtype="float32")
    arr[:] = data
    offsets = np.array([0, 0, 5, 5, 6, 17, 23, 23])  # empty classes first, in the middle and last
    got = list(iter_classes(arr, offsets, min_bytes=min_bytes))
    assert [c for c, _ in got] == list(range(7))
    for c, X in got:
        np.testing.assert_array_equal(X, data[offsets[c]:offsets[c + 1]])


def test_coreset_ids_missing_from_a_store_are_an_error(two_stores):
    store = open_store(two_stores[1])
    cs = select(two_stores[0], "random", 0.5)
    cs.ids_by_class[0] = np.append(cs.ids_by_class[0], 10_000)
    with pytest.raises(errors.StoreError, match=r"1 sample id\(s\) not in this store, e.g. \[10000\]"):
        cs.rows(store)
