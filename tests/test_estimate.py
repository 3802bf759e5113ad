"""experiment --estimate: the plan's counts are what a run then does; a rerun plans no work; the estimate's
table and JSON; bad configs give the run's own errors; a calibration from another machine is redone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from actstore import open_catalog
from actstore.evaluate.config import ExperimentConfig
from actstore.evaluate.plan import plan_grid

pytestmark = pytest.mark.slow  # real processes, models or whole experiments: `-m "not slow"` skips them


def test_the_plan_counts_what_the_run_then_did(experiment_run):
    root = experiment_run.parent.parent
    planned = json.loads((root / "planned.json").read_text())
    done = json.loads((experiment_run.parent / "provenance.json").read_text())["work"]
    assert planned == {k: done[k] for k in planned} and planned["fits"] == 3 * 5 + 1 and planned["extracted"] == 2
    stages = done["stages"]  # what each stage cost, for comparing with --estimate
    assert {"extract/demo-vgg", "select", "interpret/demo-vgg/ice", "evaluate/demo-vgg/topic"} <= set(stages)
    assert all(s["seconds"] > 0 and s["peak_rss_MB"] > 0 for s in stages.values())


def test_after_the_run_everything_is_reused(experiment_run, monkeypatch):
    root = experiment_run.parent.parent
    monkeypatch.setenv("ACTSTORE_HOME", str(root / "home"))
    plan = plan_grid(ExperimentConfig.load(root / "exp.yaml"), open_catalog(root / "catalog.yaml"))
    assert all(m.train_found is not None and m.val_found is not None for m in plan.models.values())
    assert all(plan.selections_found.values())
    assert all(t.found for targets in plan.targets.values() for t in targets)


def _cli(*args, home):
    env = {**os.environ, "ACTSTORE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "actstore.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def test_estimate_prints_a_plan_and_runs_nothing(experiment_run, tmp_path):
    root = experiment_run.parent.parent
    proc = _cli("experiment", str(root / "exp.yaml"), "--catalog", str(root / "catalog.yaml"), "--estimate", "--json",
                home=root / "home")
    assert proc.returncode == 0, proc.stderr
    est = json.loads(proc.stdout)
    stages = {(s["stage"], s["what"].split(":")[0]): s for s in est["stages"]}
    assert stages[("interpret", "ice")]["compute"] == 0 and stages[("interpret", "ice")]["reuse"] == 5
    assert stages[("interpret", "topic")]["reuse"] == 6  # and its noise-floor fit
    assert all(s["seconds"] >= 0 and s["peak_MB"] > 0 for s in est["stages"])
    assert est["machine"]["cores"] == os.cpu_count()
    text = _cli("experiment", str(root / "exp.yaml"), "--catalog", str(root / "catalog.yaml"), "--estimate",
                home=root / "home")
    assert text.returncode == 0 and "compute" in text.stdout and "total" in text.stdout


def test_a_calibration_from_another_machine_is_redone(experiment_run, tmp_path):
    root = experiment_run.parent.parent
    home = tmp_path / "home"
    home.mkdir()
    (home / "calibration.json").write_text(json.dumps({"machine": {"cpu": "elsewhere"}, "costs": {}, "models": {}}))
    for link in ("models",):
        (home / link).symlink_to(root / "home" / link)
    proc = _cli("experiment", str(root / "exp.yaml"), "--catalog", str(root / "catalog.yaml"), "--estimate",
                home=home)
    assert proc.returncode == 0, proc.stderr
    assert "another machine or with other package versions" in proc.stderr
    assert json.loads((home / "calibration.json").read_text())["machine"]["cpu"] != "elsewhere"


@pytest.mark.parametrize(("patch", "message"), [({"models": ["resnet19"]}, "unknown model 'resnet19'"),
                                                ({"train": "imagefolder:/nonexistent"}, "/nonexistent")])
def test_estimate_of_a_bad_config_is_the_runs_error(tmp_path, home, patch, message):
    from conftest import EXPERIMENT

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**EXPERIMENT, **patch}))
    proc = _cli("experiment", str(path), "--estimate", home=home)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr

