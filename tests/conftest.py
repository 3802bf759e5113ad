"""Shared fixtures: an isolated ACTSTORE_HOME per test, small real stores, trained demo models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SMALL = "synthetic:n=40,classes=4,size=32,seed=1"
EXPERIMENT = {
    "models": ["demo-vgg"], "interpreters": ["ice", "vebi", "topic"], "selectors": ["random", "dgpruning"],
    "rates": [0.1, 0.5], "alphas": [1.0, 0.5], "transfer": False,
    "params": {"ice": {"n_components": 4, "max_iter": 50}, "vebi": {"units_per_class": 2},
               "topic": {"n_topics": 6, "epochs": 2, "batch_size": 128, "hidden": 16, "lr": 0.01}},
}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ACTSTORE_HOME and catalog; nothing touches the user's or the checkout's."""
    h = tmp_path / "home"
    monkeypatch.setenv("ACTSTORE_HOME", str(h))
    monkeypatch.delenv("ACTSTORE_CATALOG", raising=False)
    return h


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models, trained once for the whole session (the real training code)."""
    from actstore.demo.train import demo_weights

    h = tmp_path_factory.mktemp("demo-home")
    old = os.environ.get("ACTSTORE_HOME")
    os.environ["ACTSTORE_HOME"] = str(h)
    try:
        for builder in ("demo-resnet", "demo-vgg"):
            demo_weights(builder)
    finally:
        if old is None:
            os.environ.pop("ACTSTORE_HOME", None)
        else:
            os.environ["ACTSTORE_HOME"] = old
    return h / "models"


@pytest.fixture
def with_trained(home: Path, trained_models: Path) -> Path:
    """This test's ACTSTORE_HOME, holding the session's trained demo models."""
    shutil.copytree(trained_models, home / "models", dirs_exist_ok=True)
    return home


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished store: random-init demo-resnet over 40 synthetic images, 2 layers, units, 8-row blocks."""
    from actstore import extract

    d = tmp_path_factory.mktemp("small")
    result = extract("demo-resnet", SMALL, d / "s.zarr", layers=["layer2", "layer3"], units=True,
                     weights="random", block_rows=8, batch_size=5, catalog=d / "catalog.yaml", progress=False)
    return result.path


@pytest.fixture(scope="session")
def experiment_run(tmp_path_factory: pytest.TempPathFactory, trained_models: Path) -> Path:
    """The results.csv of one small experiment (demo-vgg, the three interpreters, two selectors at two rates),
    run once for the session with its own home and catalog; copy the folder before changing anything in it."""
    import yaml

    from actstore.evaluate.config import ExperimentConfig
    from actstore.evaluate.experiment import run_experiment

    root = tmp_path_factory.mktemp("experiment")
    shutil.copytree(trained_models, root / "home" / "models")
    old = os.environ.get("ACTSTORE_HOME")
    os.environ["ACTSTORE_HOME"] = str(root / "home")
    try:
        import json

        from actstore import open_catalog
        from actstore.evaluate.plan import plan_grid

        (root / "exp.yaml").write_text(yaml.safe_dump({**EXPERIMENT, "out": "res"}))
        cfg = ExperimentConfig.load(root / "exp.yaml")
        plan = plan_grid(cfg, open_catalog(root / "catalog.yaml"))  # before any work: what the run will do
        counts = {"extracted": sum((m.train_found is None) + (m.val_found is None) for m in plan.models.values()),
                  "selections": sum(not found for found in plan.selections_found.values()),
                  "fits": sum(not t.found for targets in plan.targets.values() for t in targets)}
        (root / "planned.json").write_text(json.dumps(counts))
        return run_experiment(cfg, root / "catalog.yaml", progress=False)
    finally:
        if old is None:
            os.environ.pop("ACTSTORE_HOME", None)
        else:
            os.environ["ACTSTORE_HOME"] = old


def rerecord_digest(store: Path, array: str, row: int) -> None:
    """Record the digest of a chunk a test changed by hand (readers would rightly refuse it otherwise)."""
    import zarr

    from actstore.store.digests import DIGESTS, digest

    arr = zarr.open_array(str(store / array), mode="r")
    block = row // arr.chunks[0]
    table = zarr.open_group(str(store), mode="r+")[DIGESTS]
    key = "/".join([str(block)] + ["0"] * (arr.ndim - 1))
    table[block, list(table.attrs["arrays"]).index(array)] = digest((store / array / "c" / key).read_bytes())
