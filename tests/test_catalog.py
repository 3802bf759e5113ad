"""catalog.yaml: validation with located messages, relative paths, atomic edits, stale entries."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from actstore import Catalog, errors, extract, list_models
from actstore.catalog import lookup
from actstore.config import repo_catalog_path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stores: [1, 2\n", "not valid YAML at line"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("version: 1\nmodles: {}\n", "unknown top-level key(s) ['modles']"),
        ("models:\n  m: {builder: resnet18, wieghts: x}\n", "models.m: unknown key(s) ['wieghts']"),
        ("models:\n  m: {weights: x}\n", "models.m: missing required key 'builder'"),
        ("models:\n  m: {builder: resnet18, num_classes: ten}\n", "models.m.num_classes must be int"),
        ("stores:\n  s: {path: a.zarr}\n", "stores.s: missing required key 'fingerprint'"),
        ("version: 7\n", "unsupported catalog version 7"),
        ("datasets: [digits]\n", "'datasets' must be a mapping"),
    ],
)
def test_malformed_catalogs_are_errors_with_location(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    with pytest.raises(errors.CatalogError) as info:
        Catalog.load(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_add_remove_relative_paths_and_atomic_file(tmp_path: Path) -> None:
    cat = Catalog.load(tmp_path / "sub" / "catalog.yaml")
    cat.add("stores", "s1", {"path": str(tmp_path / "sub" / "stores" / "a.zarr"), "fingerprint": "f1"})
    on_disk = yaml.safe_load((tmp_path / "sub" / "catalog.yaml").read_text())
    assert on_disk["stores"]["s1"]["path"] == "stores/a.zarr"
    again = Catalog.load(tmp_path / "sub" / "catalog.yaml")
    assert again.resolve(again.get("stores", "s1")) == tmp_path / "sub" / "stores" / "a.zarr"
    assert again.find("stores", fingerprint="f1") == "s1"
    again.remove("stores", "s1")
    assert Catalog.load(tmp_path / "sub" / "catalog.yaml").entries("stores") == {}
    assert not list((tmp_path / "sub").glob("*.tmp"))
    with pytest.raises(errors.CatalogError, match="no store named 'nope'"):
        again.get("stores", "nope")
    with pytest.raises(errors.CatalogError, match="unknown key"):
        again.add("stores", "bad", {"path": "x", "fingerprint": "f", "colour": "red"})


def test_stale_entries_are_reported(tmp_path: Path, small_store: Path) -> None:
    cat = Catalog.load(tmp_path / "c.yaml")
    cat.add("stores", "gone", {"path": str(tmp_path / "missing.zarr"), "fingerprint": "x"})
    cat.add("stores", "changed", {"path": str(small_store), "fingerprint": "x", "key": "0000"})
    problems = cat.problems()
    assert any("gone" in p and "does not exist" in p for p in problems)
    assert any("changed" in p and "other content" in p for p in problems)


def test_repo_catalog_is_valid_and_its_models_exist() -> None:
    path = repo_catalog_path()
    assert path is not None, "the checkout's catalog.yaml is missing"
    repo = Catalog.load(path)
    known = set(list_models())
    for name, entry in repo.entries("models").items():
        assert entry["builder"] in known, name
    assert {"demo-resnet", "demo-vgg", "resnet18", "resnet50", "vgg16", "vgg19_bn"} <= set(repo.entries("models"))
    from actstore.extract.datasets import resolve_dataset

    for name, entry in repo.entries("datasets").items():
        assert resolve_dataset(entry["spec"]).fingerprint == entry["fingerprint"], name


def test_user_catalog_names_resolve_before_the_repo_catalog(tmp_path: Path) -> None:
    cat = Catalog.load(tmp_path / "c.yaml")
    cat.add("models", "my-net", {"builder": "demo-vgg", "weights": "random"})
    cat.add("datasets", "tiny", {"spec": "synthetic:n=8,classes=2"})
    assert lookup("models", "demo-resnet", cat)["builder"] == "demo-resnet"  # from the repo catalog
    res = extract("my-net", "tiny", tmp_path / "x.zarr", catalog=cat, progress=False)
    prov = res.store.provenance
    assert prov["model"]["builder"] == "demo-vgg" and prov["dataset"]["spec"].startswith("synthetic:n=8")


def test_dataset_fingerprint_mismatch_is_an_error(tmp_path: Path) -> None:
    cat = Catalog.load(tmp_path / "c.yaml")
    cat.add("datasets", "tiny", {"spec": "synthetic:n=8,classes=2", "fingerprint": "deadbeef"})
    with pytest.raises(errors.DatasetError, match="the data changed"):
        extract("demo-vgg", "tiny", tmp_path / "x.zarr", weights="random", catalog=cat, progress=False)
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "x.zarr.partial").exists()


def test_extract_registers_and_reuses(tmp_path: Path) -> None:
    cat_path = tmp_path / "c.yaml"
    first = extract("demo-vgg", "synthetic:n=8,classes=2", tmp_path / "a.zarr", weights="random",
                    catalog=cat_path, progress=False)
    entry = Catalog.load(cat_path).get("stores", first.name)
    assert entry["path"] == "a.zarr" and entry["key"] == first.store.key
    again = extract("demo-vgg", "synthetic:n=8,classes=2", tmp_path / "a.zarr", weights="random",
                    catalog=cat_path, progress=False)
    assert again.reused and again.written_blocks == 0
    elsewhere = extract("demo-vgg", "synthetic:n=8,classes=2", tmp_path / "b.zarr", weights="random",
                        catalog=cat_path, progress=False)
    assert elsewhere.reused and elsewhere.path == tmp_path / "a.zarr" and not (tmp_path / "b.zarr").exists()


def test_resolve_is_the_one_way_names_become_things(tmp_path: Path, small_store: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from actstore.catalog import resolve, searched

    cat = Catalog.load(tmp_path / "c.yaml")
    cat.add("stores", "s", {"path": str(small_store), "fingerprint": "f"})
    cat.add("models", "my-net", {"builder": "demo-vgg"})
    assert resolve("stores", "s", cat).location == small_store  # a name: where its entry says
    assert resolve("stores", "s", tmp_path / "c.yaml").location == small_store  # the catalog given by path
    assert resolve("stores", str(small_store), cat).entry is None  # a path is itself
    assert resolve("stores", "s3://bucket/x.zarr", cat).location == "s3://bucket/x.zarr"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s").mkdir()
    assert resolve("stores", "s", cat).location == Path("s")  # a path that exists wins over a name
    found = resolve("models", "my-net", cat)
    assert found.entry == {"builder": "demo-vgg"} and found.source == tmp_path / "c.yaml"
    assert resolve("models", "demo-resnet", cat).source == repo_catalog_path()  # then the project's catalog
    assert resolve("models", "resnet152", cat).entry is None  # a built-in name: the caller checks it
    assert searched(cat) == f"{tmp_path / 'c.yaml'} or {repo_catalog_path()}"
    with pytest.raises(errors.CatalogError, match=r"no coreset at 'nope' \(no such file or folder\) and no "
                                                   r"coreset named 'nope' in .*c\.yaml \(known: none\)"):
        resolve("coresets", "nope", cat)
    with pytest.raises(errors.ModelError, match=r"unknown model 'nope': not a model name in .*c\.yaml or .*"
                                                r"catalog\.yaml, nor one of the built-in models: demo-resnet"):
        from actstore.extract.models import check_model

        check_model("nope", cat)
