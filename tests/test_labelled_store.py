"""Issue 13, item 3: labelled, standard access to the store (schema 2).

Every array reads the same with zarr, dask, xarray and tensorstore; plain xarray labels every group
(dimension names, sample ids, labels, the units' layer and channel) without a warning; actstore's xarray
entry points add the class and layer names and refuse a store of an older schema naming its version;
actstore's own reader still reads a schema 1 store; verify checks the coordinates and the consolidated
metadata."""

from __future__ import annotations

import json
import shutil
import tarfile
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr

import actstore
from actstore import open_store, verify_store, write_synthetic_store
from actstore.errors import StoreError, StoreSchemaError

xr = pytest.importorskip("xarray")
DATA = Path(__file__).parent / "data"
V1_UNITS = [("synthetic.relu_0", 0), ("synthetic.relu_0", 1), ("synthetic.relu_0", 2), ("synthetic.relu_1", 0),
            ("synthetic.relu_1", 1)]


def _arrays(path: Path) -> dict[str, zarr.Array]:
    group = zarr.open_group(str(path), mode="r", use_consolidated=False)
    return {name: node for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array)}


def _tensorstore(path: Path, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    ts = pytest.importorskip("tensorstore")
    arr = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / name)}}, read=True).result()
    return np.asarray(arr.read().result()), tuple(arr.domain.labels)


@pytest.fixture
def v1_store(tmp_path: Path) -> Path:
    """A store written by actstore before schema 2 (string unit table, no coordinates, not consolidated)."""
    with tarfile.open(DATA / "store_v1.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "v1.zarr"


def test_every_array_reads_the_same_with_zarr_dask_xarray_and_tensorstore(small_store: Path) -> None:
    arrays = _arrays(small_store)
    assert {"units/table/layer", "layers/layer3/maps", "samples/ids", "progress/digests"} <= arrays.keys()
    tree = xr.open_datatree(str(small_store), engine="zarr")
    for name, arr in arrays.items():
        assert np.dtype(arr.dtype).kind in "biuf", f"{name}: {arr.dtype} is not a type every zarr v3 reader has"
        ref = np.asarray(arr[:])
        group, leaf = name.rsplit("/", 1)
        var = tree[group].to_dataset(inherit=False)[leaf]
        by_ts, ts_dims = _tensorstore(small_store, name)
        by_dask = da.from_zarr(str(small_store), component=name).compute()
        for reader, got in (("dask", by_dask), ("xarray", var.values), ("tensorstore", by_ts)):
            assert got.dtype == ref.dtype and got.shape == ref.shape, (name, reader)
            np.testing.assert_array_equal(got, ref, err_msg=f"{name} read by {reader}")
        assert var.dims == ts_dims == tuple(arr.metadata.dimension_names), name


def test_plain_xarray_labels_every_group_without_a_warning(small_store: Path) -> None:
    store = open_store(small_store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # before: "Failed to open Zarr store with consolidated metadata" each time
        tree = xr.open_datatree(str(small_store), engine="zarr")
        layer = xr.open_zarr(str(small_store), group="layers/layer3")
        units = xr.open_zarr(str(small_store), group="units")
    assert layer["maps"].dims == ("sample", "y", "x", "channel") and layer["pooled"].dims == ("sample", "channel")
    np.testing.assert_array_equal(layer["sample"].values, store.sample_ids)  # the index: .sel(sample=id)
    np.testing.assert_array_equal(layer["label"].values, store.labels)
    names = layer["label"].attrs["names"]
    assert names == store.classes
    cat = layer.isel(sample=(layer["label"] == names.index(store.classes[2])).values)  # a class, by its name
    np.testing.assert_array_equal(cat["pooled"].values, np.asarray(store.pooled("layer3", store.class_rows(2))))
    assert units["energy"].dims == ("sample", "unit")
    table = [(units["layer"].attrs["names"][k], c) for k, c in zip(units["layer"].values, units["channel"].values)]
    assert table == store.unit_table
    samples = tree["samples"].to_dataset()
    assert samples["logits"].dims == ("sample", "logit") and set(samples.coords) == {"sample", "label"}
    assert tree["layers/layer2"]["maps"].shape == (40, 16, 16, 32)
    sel = tree["layers/layer2"].to_dataset().sel(sample=store.sample_ids[[5, 1]])
    np.testing.assert_array_equal(sel["pooled"].values, np.asarray(store.pooled("layer2", [5, 1])))


def test_actstore_entry_points_add_the_names(small_store: Path) -> None:
    store = open_store(small_store)
    ds = actstore.open_dataset(small_store)  # the last layer
    assert set(ds.data_vars) == {"maps", "pooled"} and ds["maps"].shape == (40, 8, 8, 64)
    third = ds.sel(class_name=store.classes[2])
    np.testing.assert_array_equal(third["maps"].values, np.asarray(store.maps("layer3", store.class_rows(2))))
    units = actstore.open_dataset(small_store, group="units")
    relu = units.sel(layer_name="relu")
    columns = [i for i, (name, _) in enumerate(store.unit_table) if name == "relu"]
    np.testing.assert_array_equal(relu["energy"].values, np.asarray(store.unit_energy())[:, columns])
    np.testing.assert_array_equal(relu["channel"].values, np.arange(len(columns)))
    tree = actstore.open_datatree(small_store)
    assert list(tree["layers/layer2"]["class_name"].values) == [store.classes[k] for k in store.labels]
    assert tree["samples"]["logits"].dims == ("sample", "logit")
    with pytest.raises(StoreError, match=r"no group 'layers/layer9'.*samples, layers/layer2, layers/layer3, units"):
        actstore.open_dataset(small_store, group="layers/layer9")


def test_mean_of_float16_maps_needs_a_float32_accumulator(tmp_path: Path) -> None:
    """The README's pitfall: dask and xarray sum float16 in float16, which overflows past 65504."""
    path = write_synthetic_store(tmp_path / "f16.zarr", classes=2, rows_per_class=32, channels=256, height=4,
                                 width=4, block_rows=64)
    maps = np.asarray(zarr.open_array(str(path / "layers/synthetic/maps"), mode="r")[:], dtype=np.float64)
    assert maps.sum() > 65504 and maps.max() < 1000
    lazy = da.from_zarr(str(path), component="layers/synthetic/maps")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy says "overflow encountered": the pitfall itself
        assert not np.isclose(float(lazy.mean().compute()), maps.mean(), rtol=1e-2)
    assert np.isclose(float(lazy.mean(dtype="float32").compute()), maps.mean(), rtol=1e-3)
    ds = actstore.open_dataset(path)
    assert np.isclose(float(ds["maps"].mean(dtype="float32")), maps.mean(), rtol=1e-3)


def test_a_store_of_an_older_schema_is_refused_by_the_xarray_entry_points(v1_store: Path) -> None:
    for open_ in (actstore.open_dataset, actstore.open_datatree):
        with pytest.raises(StoreSchemaError, match=r"store schema version 1 is older than version 2 .*labelled xarray "
                                                   r"access.*re-extract it with this actstore"):
            open_(v1_store)


def test_actstore_still_reads_and_verifies_a_schema_1_store(v1_store: Path) -> None:
    store = open_store(v1_store)
    assert store.schema_version == 1 and store.unit_table == V1_UNITS
    assert np.asarray(store.maps(rows=store.class_rows(1))).shape == (4, 2, 2, 4)
    report = verify_store(v1_store)
    assert report.ok, report.problems
    assert any("schema version 1: actstore reads it" in note for note in report.notes)
    v2 = open_store(write_synthetic_store(v1_store.parent / "v2.zarr", classes=3, rows_per_class=4, channels=4,
                                          height=2, width=2, unit_layers=[3, 2], block_rows=4))
    assert v2.schema_version == 2 and v2.unit_table == V1_UNITS  # the same table from either layout
    np.testing.assert_array_equal(np.asarray(v2.maps()), np.asarray(store.maps()))


def test_a_store_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = write_synthetic_store(tmp_path / "s.zarr", classes=2, rows_per_class=3, channels=4)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["actstore"]["schema_version"] = 3
    (path / "zarr.json").write_text(json.dumps(meta))
    for open_ in (open_store, actstore.open_dataset):
        with pytest.raises(StoreSchemaError, match="schema version 3 was written by a newer actstore.*upgrade"):
            open_(path)
    assert "upgrade actstore" in verify_store(path).problems[0]


def test_verify_checks_the_coordinates_and_the_consolidated_metadata(tmp_path: Path) -> None:
    path = write_synthetic_store(tmp_path / "s.zarr", classes=3, rows_per_class=4, channels=4, unit_layers=[2])
    assert json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    assert verify_store(path).ok
    copy = tmp_path / "coords.zarr"
    shutil.copytree(path, copy)
    zarr.open_array(str(copy / "layers/synthetic/sample"), mode="r+")[3] = 99
    zarr.open_array(str(copy / "units/layer"), mode="r+")[1] = 7
    assert verify_store(copy).problems == [
        "layers/synthetic/sample: differs from samples/ids, which it copies for xarray",
        "units/layer: differs from units/table/layer, which it copies for xarray"]
    zarr.open_array(str(path / "layers/synthetic/pooled"), mode="r+").attrs["changed"] = True
    assert verify_store(path).problems == ["layers/synthetic/pooled: its consolidated metadata differs from its "
                                           "zarr.json (the store changed after it was finished)"]
    meta = json.loads((path / "zarr.json").read_text())
    del meta["consolidated_metadata"]
    (path / "zarr.json").write_text(json.dumps(meta))
    assert [p.split(":")[0] for p in verify_store(path).problems] == ["zarr.json"]
    assert open_store(path).n_rows == 12  # actstore reads each node's own metadata: no copy needed


def test_extracting_over_a_schema_1_store_says_so_and_overwrite_replaces_it(v1_store: Path, tmp_path: Path) -> None:
    from actstore import extract
    from actstore.errors import StoreExistsError

    args = dict(weights="random", progress=False, catalog=tmp_path / "c.yaml")
    with pytest.raises(StoreExistsError, match="holds a store of schema version 1, older than this actstore's 2 "
                                               r"\(key \w+\); pass --overwrite"):
        extract("demo-vgg", "synthetic:n=6,classes=2", v1_store, **args)
    extract("demo-vgg", "synthetic:n=6,classes=2", v1_store, overwrite=True, **args)
    assert actstore.open_dataset(v1_store)["class_name"].values.tolist() == ["class0"] * 3 + ["class1"] * 3


def test_a_relaid_out_store_is_a_fresh_one_coordinates_included(tmp_path: Path) -> None:
    """The dataset changed under an interrupted extraction (an image removed): the kept blocks' store is
    relaid out, and its coordinates, like every array, equal a fresh extraction's, metadata included."""
    from test_no_stale import _extract_folder, image_folder

    from actstore.errors import DatasetError

    root = image_folder(tmp_path / "imgs")
    bad = root / "dog" / "2.bmp"
    bad.write_bytes(bad.read_bytes()[:40])
    out = tmp_path / "s.zarr"
    with pytest.raises(DatasetError):
        _extract_folder(root, tmp_path, out=out)
    bad.unlink()
    resumed = _extract_folder(root, tmp_path, out=out)
    assert resumed.resumed_blocks == 3 and open_store(out).n_rows == 7
    clean = _extract_folder(root, tmp_path, out=tmp_path / "clean.zarr", overwrite=True).path
    assert verify_store(out).ok, verify_store(out).problems
    a, b = _arrays(out), _arrays(clean)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].metadata.to_dict() == b[name].metadata.to_dict(), name
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
    np.testing.assert_array_equal(actstore.open_dataset(out)["sample"].values, open_store(out).sample_ids)


def test_the_entry_points_open_a_store_at_a_url(tmp_path: Path) -> None:
    import uuid

    import fsspec

    from actstore.location import upload

    path = write_synthetic_store(tmp_path / "s.zarr", classes=2, rows_per_class=3, channels=4, unit_layers=[2])
    url = f"memory://labelled-{uuid.uuid4().hex[:8]}/s.zarr"
    upload(path, url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            units = actstore.open_dataset(url, group="units")
            tree = actstore.open_datatree(url)
        assert units["layer_name"].values.tolist() == ["synthetic.relu_0"] * 2
        assert tree["samples"]["class_name"].values.tolist() == ["c0"] * 3 + ["c1"] * 3
    finally:
        fsspec.filesystem("memory").rm(url[len("memory://"):].split("/")[0], recursive=True)


def test_without_xarray_the_entry_points_say_how_to_install_it(small_store: Path, monkeypatch) -> None:
    import builtins

    import actstore
    from actstore.errors import StoreError

    real = builtins.__import__

    def no_xarray(name, *args, **kwargs):
        if name == "xarray" or name.startswith("xarray."):
            raise ImportError("No module named 'xarray'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xarray)
    for opener in (actstore.open_dataset, actstore.open_datatree):
        with pytest.raises(StoreError, match=r"needs xarray: python -m pip install 'actstore\[xarray\]'"):
            opener(small_store)
