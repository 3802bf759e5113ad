"""``actstore demo``: the whole experiment on the embedded default (digits, two small models)."""

from __future__ import annotations

import csv
import os
import time
from typing import Any

import numpy as np

from ..config import home
from ..coresets.base import PAPER_RATES
from ..evaluate.config import ExperimentConfig
from ..evaluate.experiment import run_experiment
from ..report import write_report
from .models import DEMO_MODELS
from .train import demo_metrics

__all__ = ["run_demo", "format_summary", "demo_config", "DEMO_SELECTORS"]

DEMO_SELECTORS = ["random", "moderate", "dgpruning", "kcenter"]


def demo_config() -> ExperimentConfig:
    """Both demo models x ICE, VEBI, topics x every selector x the paper's ρ grid, with dgpruning's
    coresets transferred between the models. Lighter than the reference defaults where a 2-core
    machine needs it (ICE max_iter 30, 2 topic epochs); every setting is recorded in the results."""
    return ExperimentConfig(
        models=list(DEMO_MODELS), interpreters=["ice", "vebi", "topic"], selectors=list(DEMO_SELECTORS),
        rates=list(PAPER_RATES), seeds=[0], alphas=[1.0], train="digits:train", val="digits:val",
        transfer=["dgpruning"],
        params={"ice": {"n_components": 10, "max_iter": 30}, "vebi": {"mu": 1e-3},
                "topic": {"n_topics": 10, "epochs": 2, "batch_size": 128, "hidden": 64, "lr": 2e-2,
                          "lambda1": 1.0, "lambda2": 1.0}},
        out=str(home() / "demo-results"))


def run_demo(catalog: str | os.PathLike[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train or load both demo models, run the experiment grid (reusing what exists), write the report."""
    start = time.perf_counter()
    results = run_experiment(demo_config(), catalog, progress=progress)
    page = write_report(results)
    with open(results) as fh:
        rows = list(csv.DictReader(fh))
    summary: dict[str, dict[str, float]] = {}
    for key in sorted({f"{r['model']} {r['interpreter']}" for r in rows}):
        sel = [r for r in rows if f"{r['model']} {r['interpreter']}" == key]
        full = [float(r["accuracy"]) for r in sel if r["selector"] == "full"]
        full_all = [float(r["accuracy_all_layers"]) for r in sel if r["selector"] == "full"]
        tenth = [float(r["phi"]) for r in sel if r["selector"] == "dgpruning" and abs(float(r["rate"]) - 0.1) < 1e-9]
        summary[key] = {"full_accuracy": float(np.mean(full)), "phi_dgpruning_10pct": float(np.nanmean(tenth)),
                        "full_accuracy_all_layers": float(np.mean(full_all))}
    return {"results": str(results), "report": str(page), "rows": len(rows), "summary": summary,
            "models": {m: demo_metrics(m) for m in DEMO_MODELS}, "seconds": round(time.perf_counter() - start, 1)}


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'model / interpreter':<24} {'top-1 after R (full data)':>26} {'VEBI all layers':>16} "
             f"{'Φ dgpruning ρ=0.1':>18}"]
    for key, v in summary["summary"].items():
        every = v["full_accuracy_all_layers"]
        lines.append(f"{key:<24} {v['full_accuracy']:>26.3f} {'' if np.isnan(every) else f'{every:.3f}':>16} "
                     f"{v['phi_dgpruning_10pct']:>18.4f}")
    lines += [f"results: {summary['results']} ({summary['rows']} rows)", f"report:  {summary['report']}",
              f"done in {summary['seconds']} s"]
    return "\n".join(lines)
