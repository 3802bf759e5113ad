"""Every verb resolves names one way, through the catalog given by --catalog / ACTSTORE_CATALOG: a model or
dataset declared only there works end to end, and an unknown name is one line that says where it looked."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from actstore import Catalog
from actstore.config import repo_catalog_path

from conftest import SMALL
from test_cli import one_line_error, run

pytestmark = pytest.mark.slow  # real processes, models or whole experiments: `-m "not slow"` skips them

CATALOG = {"models": {"my-demo": {"builder": "demo-resnet", "weights": "random"}},
           "datasets": {"tiny": {"spec": SMALL}}}


@pytest.fixture
def cat(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere" / "cat.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(CATALOG))
    return path


def test_info_model_and_extract_find_a_model_only_the_given_catalog_declares(tmp_path: Path, home: Path,
                                                                            cat: Path) -> None:
    described = json.loads(run("info", "--model", "my-demo", "--catalog", str(cat), "--json", home=home).stdout)
    assert described["model"] == "my-demo" and described["builder"] == "demo-resnet"
    assert described["default_layer"] == "layer3"

    out = tmp_path / "s.zarr"
    made = json.loads(run("extract", "--model", "my-demo", "--dataset", "tiny", "--out", str(out), "--name", "mine",
                          "--catalog", str(cat), "--json", home=home).stdout)
    assert made["path"] == str(out) and made["name"] == "mine"
    assert "mine" in Catalog.load(cat).entries("stores")
    assert not (home / "catalog.yaml").exists()  # registered where --catalog said, nowhere else

    info = json.loads(run("info", "mine", "--catalog", str(cat), "--json", home=home).stdout)
    assert info["path"] == str(out) and info["rows"] == 40
    assert info["provenance"]["model"]["name"] == "my-demo"
    assert info["provenance"]["model"]["builder"] == "demo-resnet"
    assert "ok:" in run("verify", "mine", "--catalog", str(cat), home=home).stdout


def test_actstore_catalog_variable_is_the_same_as_the_option(home: Path, cat: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("ACTSTORE_CATALOG", str(cat))
    described = json.loads(run("info", "--model", "my-demo", "--json", home=home).stdout)
    assert described["builder"] == "demo-resnet"
    shown = json.loads(run("catalog", "show", "models", "my-demo", "--json", home=home).stdout)
    assert shown == CATALOG["models"]["my-demo"]


def test_experiment_runs_a_model_only_the_given_catalog_declares(tmp_path: Path, home: Path, cat: Path) -> None:
    config = {"models": ["my-demo"], "interpreters": ["ice"], "selectors": ["random"], "rates": [0.5],
              "train": "tiny", "val": "synthetic:n=40,classes=4,size=32,seed=2", "transfer": False,
              "noise_floor": False, "heatmaps": False, "params": {"ice": {"n_components": 3, "max_iter": 20}},
              "out": "res"}
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(config))
    # --scheduler makes the command check the config again: that check looks in --catalog too
    done = json.loads(run("experiment", str(exp), "--catalog", str(cat), "--scheduler", "synchronous",
                          "--no-report", "--json", home=home).stdout)
    with open(done["results"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["model"] for r in rows} == {"my-demo"}
    stores = Catalog.load(cat).entries("stores")
    specs = {e["provenance"]["dataset"]["spec"] for e in stores.values()}
    assert specs == {SMALL, config["val"]}  # the train and the validation store, both through the catalog
    assert {e["provenance"]["model"]["builder"] for e in stores.values()} == {"demo-resnet"}

    line = one_line_error(run("experiment", str(exp), "--no-report", home=home, check=None))
    assert "unknown model 'my-demo'" in line  # without the catalog, the name means nothing


def _looked_in(home: Path) -> list[str]:
    repo = repo_catalog_path()
    return [str(home / "catalog.yaml"), *([str(repo)] if repo else [])]


@pytest.mark.parametrize(("args", "said", "where"), [
    (["info", "--model", "my-demo"], ["unknown model 'my-demo'", "demo-resnet", "resnet18"], "both"),
    (["extract", "--model", "my-demo", "--dataset", "digits"], ["unknown model 'my-demo'", "demo-vgg"], "both"),
    (["extract", "--model", "demo-vgg", "--dataset", "tiny", "--weights", "random"],
     ["unknown dataset 'tiny'", "synthetic:n=N"], "both"),
    (["catalog", "show", "models", "my-demo"], ["no model named 'my-demo'"], "both"),
    (["info", "mine"], ["no store named 'mine'", "no such file or folder"], "home"),
    (["verify", "mine"], ["no store named 'mine'"], "home"),
    (["select", "mine", "--method", "random", "--rate", "0.5"], ["no store named 'mine'"], "home"),
    (["interpret", "mine", "--method", "ice"], ["no store named 'mine'"], "home"),
    (["coreset", "show", "cs"], ["no coreset named 'cs'"], "home"),
    (["coreset", "export", "cs"], ["no coreset named 'cs'"], "home"),
    (["report", "res"], ["no result named 'res'"], "home"),
])
def test_an_unknown_name_is_one_line_that_says_where_it_looked(args: list[str], said: list[str], where: str,
                                                               home: Path) -> None:
    line = one_line_error(run(*args, home=home, check=None))
    looked = _looked_in(home) if where == "both" else _looked_in(home)[:1]
    for text in [*said, *looked]:
        assert text in line, (text, line)


def test_a_path_that_is_not_there_is_not_looked_up_by_name(home: Path) -> None:
    line = one_line_error(run("verify", "/nonexistent/s.zarr", home=home, check=None))
    assert line == "error: no store at '/nonexistent/s.zarr': no such file or folder"
