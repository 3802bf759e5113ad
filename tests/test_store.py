"""The store contract of DESIGN.md, checked against independent computations."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from actstore import errors, extract, load_model, open_store, resolve_dataset
from actstore.extract.probe import energy_share
from conftest import SMALL


def test_layout_and_dtypes(small_store: Path) -> None:
    g = zarr.open_group(str(small_store), mode="r")
    n = 40
    assert g["samples/ids"].dtype == np.int64 and g["samples/ids"].shape == (n,)
    assert g["samples/labels"].dtype == np.int32
    assert g["samples/class_offsets"].shape == (5,)
    assert g["samples/logits"].shape == (n, 10) and g["samples/logits"].dtype == np.float32
    assert g["layers/layer3/maps"].shape == (n, 8, 8, 64) and g["layers/layer3/maps"].dtype == np.float16
    assert g["layers/layer2/maps"].shape == (n, 16, 16, 32)
    assert g["layers/layer3/pooled"].shape == (n, 64) and g["layers/layer3/pooled"].dtype == np.float32
    assert g["units/energy"].shape == (n, 464)
    assert g["progress/done"][:].all()
    for name in ("samples/logits", "layers/layer3/maps", "units/energy"):
        assert g[name].chunks[0] == 8 and g[name].chunks[1:] == g[name].shape[1:]  # sample axis only
    attrs = g.attrs["actstore"]
    for key in ("schema_version", "key", "status", "model", "layers", "preprocessing", "dataset", "dtype",
                "versions"):
        assert key in attrs
    assert attrs["status"] == "complete" and attrs["model"]["random_init"] is True


def test_rows_are_class_contiguous_with_stable_ids(small_store: Path) -> None:
    store = open_store(small_store)
    source = resolve_dataset(SMALL)
    assert sorted(store.sample_ids.tolist()) == list(range(40))
    np.testing.assert_array_equal(store.labels, source.labels[store.sample_ids])
    assert np.all(np.diff(store.labels) >= 0)
    for c in range(4):
        rows = store.class_rows(c)
        assert set(store.labels[rows].tolist()) == {c}
        assert np.all(np.diff(store.sample_ids[rows]) > 0)
    assert store.class_offsets[-1] == store.n_rows == 40


def test_pooled_is_the_mean_of_the_maps(small_store: Path) -> None:
    store = open_store(small_store)
    maps = np.asarray(store.maps("layer3", slice(0, 6)), dtype=np.float32)
    pooled = np.asarray(store.pooled("layer3", slice(0, 6)))
    np.testing.assert_allclose(pooled, maps.mean(axis=(1, 2)), rtol=2e-3, atol=2e-3)  # maps are float16


def test_against_independent_torch_forward(tmp_path: Path, with_trained: Path) -> None:
    """Trained weights: stored arrays equal a hand-written forward with module hooks."""
    res = extract("demo-resnet", SMALL, tmp_path / "t.zarr", layers=["layer3"], units=True, dtype="float32",
                  block_rows=16, catalog=tmp_path / "c.yaml", progress=False)
    store = res.store
    model = load_model("demo-resnet").module.eval()
    source = resolve_dataset(SMALL)
    x = torch.stack([source.load(int(i)) for i in store.sample_ids])
    seen: dict[str, torch.Tensor] = {}
    energies: list[torch.Tensor] = []
    model.layer3.register_forward_hook(lambda m, i, o: seen.__setitem__("layer3", o.clone()))
    for m in model.modules():
        if isinstance(m, torch.nn.ReLU):
            m.register_forward_hook(lambda m, i, o: energies.append(o.clone()))
    with torch.no_grad():
        logits = model(x)
    np.testing.assert_allclose(np.asarray(store.logits()), logits.numpy(), rtol=1e-4, atol=1e-4)
    ref_maps = seen["layer3"].permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(store.maps("layer3")), ref_maps, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(store.pooled("layer3")), ref_maps.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    # energy share written out by hand: Σ_hw a² / Σ_chw a², per ReLU call in forward order
    ref = []
    for a in energies:
        e = (a.double() ** 2).sum(dim=(2, 3))
        ref.append((e / e.sum(dim=1, keepdim=True)).float())
    np.testing.assert_allclose(np.asarray(store.unit_energy()), torch.cat(ref, 1).numpy(), rtol=1e-4, atol=1e-6)
    table = store.unit_table
    assert table[0] == ("relu", 0) and ("layer1.0.relu_1", 15) in table and len(table) == 464


def test_energy_share_handles_all_zero_layers() -> None:
    a = torch.zeros(2, 3, 4, 4)
    a[1, 0] = 1.0
    e = energy_share(a)
    np.testing.assert_array_equal(e.numpy(), [[0, 0, 0], [1, 0, 0]])


def test_reader_is_lazy_and_selects_rows(small_store: Path) -> None:
    store = open_store(small_store)
    m = store.maps("layer3")
    assert isinstance(m, da.Array) and m.chunks[0][0] == 8
    assert store.maps().shape == (40, 8, 8, 64)  # default: the last layer
    rows = np.array([3, 17, 30])
    np.testing.assert_array_equal(np.asarray(store.pooled("layer2", rows)),
                                  zarr.open_array(str(small_store / "layers/layer2/pooled"), mode="r")[rows])
    ids = store.sample_ids[rows]
    np.testing.assert_array_equal(store.rows_for_ids(ids), rows)
    with pytest.raises(errors.StoreError, match="not in this store"):
        store.rows_for_ids([999])
    with pytest.raises(errors.StoreError, match="no layer 'layer9'"):
        store.maps("layer9")
    with pytest.raises(errors.StoreError, match="out of range"):
        store.class_rows(7)


def test_opens_with_plain_zarr_xarray_dask(small_store: Path) -> None:
    xr = pytest.importorskip("xarray")
    arr = da.from_zarr(str(small_store / "layers/layer3/maps"))
    assert arr.shape == (40, 8, 8, 64)
    ds = xr.open_zarr(str(small_store / "layers/layer3"), consolidated=False, zarr_format=3)
    assert ds["pooled"].shape == (40, 64)


def test_incomplete_store_is_refused_with_a_resume_hint(tmp_path: Path) -> None:
    with pytest.raises(errors.StoreError, match="no activation store"):
        open_store(tmp_path / "nothing.zarr")
    (tmp_path / "x.zarr.partial").mkdir()
    zarr.open_group(str(tmp_path / "x.zarr.partial"), mode="w")
    with pytest.raises(errors.StoreIncompleteError, match="resume"):
        open_store(tmp_path / "x.zarr")


def test_as_float32_equals_numpys_cast() -> None:
    from actstore.store.convert import as_float32

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((5, 3, 4)) * 300).astype(np.float16)
    x[0, 0, 0], x[1, 1, 1], x[2, 2, 2] = np.nan, np.inf, -np.inf
    for given in (x, x[:, ::-1], x.astype(np.float64), x.astype(np.float32)):
        got = as_float32(given)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, given.astype(np.float32))
    out = np.zeros((5, 3, 4), np.float32)
    assert as_float32(x, out) is out
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_cpu_forward_runs_in_slices_and_keeps_the_rows() -> None:
    from actstore.extract.extractor import CPU_FORWARD_ROWS, forward_slices

    x = torch.arange(21 * 2, dtype=torch.float32).reshape(21, 2)
    parts = forward_slices(x, torch.device("cpu"))
    assert [len(p) for p in parts] == [CPU_FORWARD_ROWS, CPU_FORWARD_ROWS, 21 - 2 * CPU_FORWARD_ROWS]
    assert torch.equal(torch.cat(parts), x)
    assert len(forward_slices(x, torch.device("meta"))) == 1  # an accelerator takes the whole batch
