"""Stores and catalogs addressed by fsspec URL (memory://, file://): the same results as local paths,
a store published only once complete, and a store that disappears mid-read is a clear error."""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid

import fsspec
import numpy as np
import pytest

from actstore import Catalog, extract, interpret, open_store, select_many
from actstore.errors import CatalogError, StoreCorruptError, StoreError
from actstore.store import verify_store

from conftest import SMALL


@pytest.fixture
def bucket():
    root = f"memory://bucket-{uuid.uuid4().hex[:8]}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root[len("memory://"):]):
        fs.rm(root[len("memory://"):], recursive=True)


def _extract(out, catalog):
    return extract("demo-resnet", SMALL, out, layers=["layer3"], units=True, weights="random", block_rows=8,
                   batch_size=5, catalog=catalog, progress=False)


def test_a_store_at_a_url_gives_the_local_results(bucket, tmp_path):
    result = _extract(f"{bucket}/s.zarr", f"{bucket}/catalog.yaml")
    assert result.path == f"{bucket}/s.zarr" and not result.reused
    remote, local = open_store(result.path), _extract(tmp_path / "local.zarr", tmp_path / "c.yaml").store
    assert remote.key == local.key  # same provenance, wherever it lives
    np.testing.assert_array_equal(np.asarray(remote.array("layers/layer3/maps")[:]),
                                  np.asarray(local.array("layers/layer3/maps")[:]))
    assert verify_store(result.path).ok
    a = select_many(remote, "dgpruning", [0.5])[0]
    b = select_many(local, "dgpruning", [0.5])[0]
    assert all(np.array_equal(a.ids_by_class[c], b.ids_by_class[c]) for c in a.ids_by_class)
    np.testing.assert_allclose(interpret(remote, "vebi", mu=0.05)[0].arrays["coef"],
                               interpret(local, "vebi", mu=0.05)[0].arrays["coef"], rtol=1e-10)
    again = _extract(f"{bucket}/s.zarr", f"{bucket}/catalog.yaml")
    assert again.reused
    cat = Catalog.load(f"{bucket}/catalog.yaml")
    assert cat.resolve(cat.get("stores", result.name)) == f"{bucket}/s.zarr" and not cat.problems()
    assert not (tmp_path / "home" / "staging").exists() or not any((tmp_path / "home" / "staging").iterdir())


def test_a_store_disappearing_mid_read_is_a_clear_error(bucket, monkeypatch):
    run = importlib.import_module("actstore.interpret.vebi_store")

    store = open_store(_extract(f"{bucket}/s.zarr", f"{bucket}/catalog.yaml").path)
    real = run.read_ahead

    def vanishing(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 0:
                fsspec.filesystem("memory").rm(f"{bucket}/s.zarr"[len("memory://"):], recursive=True)
            yield item

    monkeypatch.setattr(run, "read_ahead", vanishing)
    with pytest.raises(StoreCorruptError, match="is missing; the store was changed or removed"):
        interpret(store, "vebi", mu=0.05, block_rows=8)
    with pytest.raises(StoreError, match="no activation store here"):
        open_store(f"{bucket}/s.zarr")


def test_a_local_store_missing_a_chunk_is_an_error_not_zeros(tmp_path, small_store):
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(small_store, copy)
    (copy / "layers" / "layer3" / "pooled" / "c" / "1" / "0").unlink()
    with pytest.raises(StoreCorruptError, match=r"chunk layers/layer3/pooled/c/1/0 is missing"):
        select_many(copy, "moderate", [0.5])


def test_remote_catalog_entries_and_errors(bucket):
    cat = Catalog.load(f"{bucket}/catalog.yaml")
    cat.add("datasets", "mine", {"spec": "digits:val"})
    assert Catalog.load(f"{bucket}/catalog.yaml").entries("datasets")["mine"]["spec"] == "digits:val"
    fsspec.filesystem("memory").pipe_file(f"{bucket}/bad.yaml"[len("memory://"):], b"stores: [unclosed\n")
    with pytest.raises(CatalogError, match=f"{bucket}/bad.yaml: not valid YAML at line 2"):
        Catalog.load(f"{bucket}/bad.yaml")


def test_unknown_protocol_is_a_clear_error():
    with pytest.raises(StoreError, match="no filesystem for this URL"):
        open_store("nosuchfs://bucket/x.zarr")


def test_cli_reads_a_file_url(small_store, home):
    url = f"file://{small_store}"
    proc = subprocess.run([sys.executable, "-m", "actstore.cli", "select", url, "--method", "random", "--rate", "0.5",
                           "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    info = subprocess.run([sys.executable, "-m", "actstore.cli", "info", url, "--json"], capture_output=True,
                          text=True)
    assert info.returncode == 0 and '"rows": 40' in info.stdout


def test_cli_extracts_to_a_url_and_reads_it_back(bucket, home, monkeypatch):
    """The URL plumbing of the command line, in-process; memory:// itself is refused on a real command line
    (it would vanish with the process: tests/test_faults.py), so this in-process run allows it."""
    from typer.testing import CliRunner

    from actstore import location
    from actstore.cli import app

    monkeypatch.setattr(location, "EPHEMERAL_PROTOCOLS", ())
    runner = CliRunner()
    made = runner.invoke(app, ["extract", "--model", "demo-vgg", "--dataset", "synthetic:n=12,classes=3", "--weights",
                               "random", "--out", f"{bucket}/cli.zarr", "--catalog", f"{bucket}/c.yaml", "--json"])
    assert made.exit_code == 0, made.output
    assert '"path": "' + f"{bucket}/cli.zarr" in made.output
    shown = runner.invoke(app, ["info", f"{bucket}/cli.zarr", "--json"])
    assert shown.exit_code == 0 and '"rows": 12' in shown.output
    assert runner.invoke(app, ["verify", f"{bucket}/cli.zarr"]).exit_code == 0
