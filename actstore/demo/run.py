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


def run_demo(catalog: str | os.PathLike[str] | None = None, batch_size: int = 128,
             progress: bool = True) -> dict[str, Any]:
    """Train or load both demo models; extract train and val stores with VEBI unit features."""
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
    return {"stores": rows, "models": {m: demo_metrics(m) for m in DEMO_MODELS},
            "seconds": round(time.perf_counter() - start, 2)}


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'model':<12} {'dataset':<13} {'rows':>5} {'layer':<11} {'maps':<12} {'units':>5} {'top1':>6}  store"]
    for r in summary["stores"]:
        maps = "x".join(map(str, r["maps"]))
        lines.append(f"{r['model']:<12} {r['dataset']:<13} {r['rows']:>5} {r['layer']:<11} {maps:<12} "
                     f"{r['units']:>5} {r['top1']:>6.3f}  {r['path']}{'  (reused)' if r['reused'] else ''}")
    lines.append(f"done in {summary['seconds']} s")
    return "\n".join(lines)
