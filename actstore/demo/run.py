"""``actstore demo``: the embedded default, end to end on the digits data."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from ..extract.extractor import extract
from .train import demo_metrics

__all__ = ["run_demo", "format_summary", "DEMO_SPLITS"]

DEMO_SPLITS = ("digits:train", "digits:val")
DEMO_SELECTORS = ("random", "moderate", "dgpruning", "kcenter")


def run_demo(catalog: str | os.PathLike[str] | None = None, batch_size: int = 128,
             progress: bool = True) -> dict[str, Any]:
    """Train or load both demo models; extract train and val stores with VEBI unit features; select
    coresets with every selector at the paper's rates and transfer them between the two models."""
    from ..extract.models import DEMO_MODELS

    start = time.perf_counter()
    rows = []
    for model in DEMO_MODELS:
        for split in DEMO_SPLITS:
            t0 = time.perf_counter()
            result = extract(model, split, units=True, batch_size=batch_size, catalog=catalog, progress=progress)
            store = result.store
            accuracy = float((np.asarray(store.logits()).argmax(1) == store.labels).mean())
            rows.append({"model": model, "dataset": split, "store": result.name, "path": str(result.path),
                         "rows": store.n_rows, "layer": store.layers[-1],
                         "maps": list(store.maps().shape[1:]), "units": len(store.unit_table),
                         "top1": round(accuracy, 4), "reused": result.reused,
                         "seconds": round(time.perf_counter() - t0, 2)})
    coresets = _demo_coresets(rows, catalog)
    return {"stores": rows, "coresets": coresets, "models": {m: demo_metrics(m) for m in DEMO_MODELS},
            "seconds": round(time.perf_counter() - start, 2)}


def _demo_coresets(stores: list[dict[str, Any]], catalog: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """Every selector at the paper's rates on each train store, and their transfer to the other model."""
    from ..coresets import PAPER_RATES, save_coreset, select_many
    from ..store.reader import open_store

    train = [r for r in stores if r["dataset"] == DEMO_SPLITS[0]]
    out = []
    for source in train:
        others = [open_store(r["path"]) for r in train if r is not source]
        for method in DEMO_SELECTORS:
            for cs in select_many(source["path"], method, PAPER_RATES):
                name, _ = save_coreset(cs, catalog)
                transferred = {o.provenance["model"]["name"]: int(cs.rows(o).size) for o in others}
                out.append({"model": source["model"], "method": method, "rate": cs.rate, "n": cs.n,
                            "name": name, "transfer_rows": transferred})
    return out


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'model':<12} {'dataset':<13} {'rows':>5} {'layer':<11} {'maps':<12} {'units':>5} {'top1':>6}  store"]
    for r in summary["stores"]:
        maps = "x".join(map(str, r["maps"]))
        lines.append(f"{r['model']:<12} {r['dataset']:<13} {r['rows']:>5} {r['layer']:<11} {maps:<12} "
                     f"{r['units']:>5} {r['top1']:>6.3f}  {r['path']}{'  (reused)' if r['reused'] else ''}")
    by = {}
    for c in summary.get("coresets", []):
        by.setdefault((c["model"], c["method"]), []).append(f"{c['rate']:g}:{c['n']}")
    if by:
        lines.append("coresets (rate:samples), each also mapped onto the other model's store:")
        lines += [f"  {m:<12} {method:<10} " + " ".join(v) for (m, method), v in by.items()]
    lines.append(f"done in {summary['seconds']} s")
    return "\n".join(lines)
