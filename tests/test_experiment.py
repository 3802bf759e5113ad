"""The experiment runner end to end on the digits demo, its reuse of artifacts, the report, bad configs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from actstore import Catalog
from actstore.errors import ActstoreError
from actstore.evaluate.config import ExperimentConfig
from actstore.evaluate.experiment import run_experiment

from conftest import EXPERIMENT as CONFIG

pytestmark = pytest.mark.slow  # real processes, models or whole experiments: `-m "not slow"` skips them


def test_experiment_runs_and_records_what_each_number_needs(experiment_run):
    results = experiment_run
    rows = list(csv.DictReader(open(results)))
    # 3 interpreters x (full + 2 selectors x 2 rates) x 10 classes x 2 alphas, + 2 VEBI baselines
    assert len(rows) == 3 * 5 * 10 * 2 + 2 * 10 * 2
    assert {r["selector"] for r in rows} == {"full", "random", "dgpruning", "unmodified", "random-units"}
    plain = [float(r["accuracy"]) for r in rows if r["selector"] == "unmodified"]
    assert np.mean(plain) > 0.95  # the trained demo model itself
    full_ice = [r for r in rows if r["interpreter"] == "ice" and r["selector"] == "full"]
    assert np.mean([float(r["accuracy"]) for r in full_ice]) > 0.8  # ICE's Z keeps the model working
    phis = [float(r["phi"]) for r in rows if r["selector"] != "full" and r["interpreter"] != "vebi"]
    assert all(0 <= p <= np.pi / 2 for p in phis)
    vebi = [r for r in rows if r["interpreter"] == "vebi"]
    assert all(0 <= float(r["accuracy_all_layers"]) <= 1 for r in vebi)
    assert all(r["accuracy_all_layers"] == "nan" for r in rows if r["interpreter"] != "vebi")
    fitted = [r for r in rows if r["selector"] not in ("unmodified", "random-units")]
    assert all(float(r["fit_seconds"]) > 0 and float(r["bytes_read"]) > 0 and float(r["peak_rss_MB"]) > 0
               for r in fitted)
    small, big = ([float(r["bytes_read"]) for r in fitted if r["interpreter"] == "ice" and r["selector"] == "random"
                   and float(r["rate"]) == rate] for rate in (0.1, 0.5))
    assert np.mean(small) < np.mean(big)  # bytes grow with ρ
    # validity (issue 10): units, convergence, the calibrated μ and the noise floor on every fitted row
    mus = {r["mu"] for r in vebi if r["selector"] not in ("unmodified", "random-units")}
    assert len(mus) == 1 and float(mus.pop()) > 0  # one calibrated μ for the full data and every coreset
    full_units = [int(float(r["units"])) for r in vebi if r["selector"] == "full"]
    assert sorted(full_units)[len(full_units) // 2] >= 2  # half the classes keep the asked 2 units
    assert {float(r["units"]) for r in fitted if r["interpreter"] == "ice"} == {4.0}
    assert all(r["converged"] in ("True", "False") and int(float(r["n_iter"])) >= 0 for r in fitted)
    assert all(float(r["phi_floor"]) == 0 for r in fitted if r["interpreter"] in ("ice", "vebi"))  # deterministic
    topic_floor = [float(r["phi_floor"]) for r in fitted if r["interpreter"] == "topic"]
    assert all(f == topic_floor[0] or np.isfinite(f) for f in topic_floor) and max(topic_floor) > 0


def test_a_rerun_reuses_every_artifact(experiment_run, monkeypatch):
    root = experiment_run.parent.parent
    catalog = root / "catalog.yaml"
    n_features = len(Catalog.load(catalog).entries("features"))
    assert n_features == 3 * 5 + 1  # and the topic model's noise-floor fit (ICE at D = 64 and VEBI are deterministic)
    monkeypatch.setenv("ACTSTORE_HOME", str(root / "home"))
    again = run_experiment(ExperimentConfig.load(root / "exp.yaml"), catalog, progress=False)
    assert len(Catalog.load(catalog).entries("features")) == n_features
    assert again.read_text() == experiment_run.read_text()
    units = list(csv.DictReader(open(experiment_run.parent / "vebi_units.csv")))
    assert {u["selector"] for u in units} >= {"full", "random", "dgpruning"}
    assert all(float(u["coverage"]) == 1.0 for u in units if u["selector"] == "full" and int(u["units"]) > 0)
    full_layers = [u["layer"] for u in units if u["selector"] == "full"]  # every ReLU call, in forward order
    assert full_layers[0] == "features.2" and [int(u["position"]) for u in units if u["selector"] == "full"] == \
        list(range(len(full_layers)))
    for method in ("ice", "vebi", "topic"):
        assert (experiment_run.parent / "heatmaps" / f"demo-vgg.{method}.npz").stat().st_size > 1000


@pytest.mark.parametrize(("patch", "message"), [
    ({"models": ["resnet19"]}, "unknown model 'resnet19'"),
    ({"interpreters": ["tcav"]}, "unknown interpreter 'tcav'"),
    ({"selectors": ["herding"]}, "unknown selection method 'herding'"),
    ({"alphas": [2.0]}, "alpha 2.0"),
    ({"colour": "red"}, "'colour' is not a key of the config"),
    ({"vebi_maps": "disk"}, "'vebi_maps' must be 'store' or 'hooks', got 'disk'"),
    ({"scheduler": "spark"}, "unknown scheduler 'spark'"),
    ({"heatmaps": {"colour": 1}}, "'heatmaps.colour' is not a key of the config"),
    ({"rates": ["abc"]}, "'rates.0' must be a valid number, got 'abc'"),
    ({"rates": 0.1}, "'rates' must be a valid list, got 0.1"),
    ({"seeds": ["a"]}, "'seeds.0' must be a valid integer, got 'a'"),
    ({"models": "demo-resnet"}, "'models' must be a valid list, got 'demo-resnet'"),
    ({"transfer": "yes"}, "'transfer' must be a valid boolean or a valid list, got 'yes'"),
    ({"params": [1, 2]}, "'params' must be a valid dictionary, got [1, 2]"),
    ({"out": 5}, "'out' must be a valid string, got 5"),
    ({"rates": []}, "'rates' is empty"),
    ({"models": []}, "'models' is empty"),
    ({"params": {"vebi": {"units_per_class": 0}}}, "'units_per_class' parameter of 'vebi' must be an int"),
    ({"params": {"vebi": {"units_per_class": 3, "mu": 0.1}}}, "give mu or units_per_class, not both"),
    ({"params": {"topic": {"training": "minutes"}}}, "'training' parameter of 'topic' must be a str among"),
    ({"params": {"ice": {"max_iter": "abc"}}}, "'max_iter' parameter of 'ice' must be an int"),
    ({"params": {"tcav": {}}}, "unknown interpreter 'tcav'"),
    ({"transfer": ["kcenter"]}, "transfer names selectors the grid does not run: ['kcenter']"),
])
def test_bad_configs(tmp_path, patch, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **patch}))

    with pytest.raises(ActstoreError) as info:
        ExperimentConfig.load(path)
    assert message in str(info.value)


def test_duplicate_keys_and_bad_yaml_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("models: [demo-vgg]\nrates: [0.1]\nrates: [0.5]\n")
    with pytest.raises(ActstoreError, match="duplicate key 'rates' at line 3"):
        ExperimentConfig.load(path)
    path.write_text("models: [demo-vgg\n")
    with pytest.raises(ActstoreError, match="not valid YAML"):
        ExperimentConfig.load(path)


def test_report_of_a_foreign_file_is_an_error(tmp_path, home):
    bad = tmp_path / "results.csv"
    bad.write_text("a,b\n1,2\n")
    proc = subprocess.run([sys.executable, "-m", "actstore.cli", "report", str(bad)], capture_output=True, text=True,
                          env={**os.environ, "ACTSTORE_HOME": str(home)})
    assert proc.returncode == 2 and "not an actstore results table" in proc.stderr


def test_vebi_maps_from_hooks_equal_the_stores(tmp_path, with_trained):
    """With vebi_maps: hooks the validation store holds only the head's layer; VEBI's per-layer maps
    come from forward hooks over the images, and Φ matches the run whose store holds every layer."""
    base = {**CONFIG, "models": ["demo-resnet"], "interpreters": ["vebi"], "selectors": ["random"], "rates": [0.2],
            "vebi_all_layers": False, "heatmaps": False}
    got = {}
    for mode in ("store", "hooks"):
        path = tmp_path / f"{mode}.yaml"
        path.write_text(yaml.safe_dump({**base, "vebi_maps": mode, "out": mode}))
        results = run_experiment(ExperimentConfig.load(path), tmp_path / "catalog.yaml", progress=False)
        got[mode] = list(csv.DictReader(open(results)))
    assert len(got["store"]) == len(got["hooks"])
    compared = 0
    for a, b in zip(got["store"], got["hooks"], strict=True):
        assert (a["selector"], a["class"], a["accuracy"], a["phi_layers"]) == \
            (b["selector"], b["class"], b["accuracy"], b["phi_layers"])
        if a["phi"] != "nan":
            assert float(a["phi"]) == pytest.approx(float(b["phi"]), abs=2e-2)  # float16 store vs float32 hooks
            compared += int(a["phi_layers"]) > 0
    assert compared > 0
    assert any(int(r["phi_layers"]) > 0 for r in got["hooks"])
    assert all(r["accuracy_all_layers"] == "nan" for r in got["hooks"])  # vebi_all_layers: false


def test_an_interrupted_run_resumes_from_the_saved_groups(tmp_path, with_trained, monkeypatch):
    """ICE runs one interpret call per selector run and saves it at once: a crash in the second
    call keeps the first's features, and the rerun computes only what is missing."""
    import actstore.evaluate.experiment as experiment

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "interpreters": ["ice"], "heatmaps": False, "out": "res"}))
    real = experiment.interpret
    calls: list[int] = []
    crash = [True]

    def crashing(*args, **kwargs):
        calls.append(len(kwargs["coresets"]) + int(kwargs["full"]))
        if len(calls) == 2 and crash:
            crash.clear()
            raise RuntimeError("killed mid-run")
        return real(*args, **kwargs)

    monkeypatch.setattr(experiment, "interpret", crashing)
    with pytest.raises(RuntimeError, match="killed mid-run"):
        run_experiment(ExperimentConfig.load(path), tmp_path / "catalog.yaml", progress=False)
    assert not (tmp_path / "res" / "results.csv").exists()  # no half-written results
    saved = len(Catalog.load(tmp_path / "catalog.yaml").entries("features"))
    assert saved == calls[0] > 0
    calls.clear()
    run_experiment(ExperimentConfig.load(path), tmp_path / "catalog.yaml", progress=False)
    assert sum(calls) == 5 - saved  # full + 2 selectors x 2 rates, minus what the first run saved
    assert len(Catalog.load(tmp_path / "catalog.yaml").entries("features")) == 5
