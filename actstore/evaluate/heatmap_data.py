"""What the paper's §4.7 heatmaps show, collected during the evaluation and saved for the report to draw:
a few validation images of the first classes, and for each the interpretation maps of every selector at
one ρ (first seed), transferred coresets next to their source, the full data last."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes
from ..coresets.artifact import Coreset
from ..interpret.base import EvalContext

__all__ = ["HeatmapCollector", "load_heatmap_data", "FULL_LABEL"]

FULL_LABEL = "full data"


class HeatmapCollector:
    """Collects images and, per column (selector label), one Z (h, w, d) per image."""

    def __init__(self, model: str, method: str, labelled: list[tuple[str, Coreset | None]], selectors: list[str],
                 settings: Any) -> None:
        self.model, self.method, self.settings = model, method, settings
        at_rate = {label: cs for label, cs in labelled
                   if cs is not None and abs(cs.rate - float(settings.rate)) < 1e-9}
        seeds = {label: min(cs.seed for lab, cs in labelled if lab == label and cs is not None
                            and abs(cs.rate - float(settings.rate)) < 1e-9) for label in at_rate}
        order = [label for sel in selectors for label in sorted(at_rate, key=lambda x: (x != sel, x))
                 if label == sel or label.startswith(f"{sel}@")]
        self.columns = [*dict.fromkeys(order), FULL_LABEL]
        self._seed = seeds
        self.z: dict[str, list[np.ndarray]] = {col: [] for col in self.columns}
        self.images: list[np.ndarray] = []
        self.rows: list[str] = []

    def wants(self, c: int) -> bool:
        return c < int(self.settings.classes)

    def add(self, c: int, label: str, cs: Coreset | None, Z: np.ndarray) -> None:
        column = FULL_LABEL if cs is None else label
        if column not in self.z or (cs is not None and (abs(cs.rate - float(self.settings.rate)) > 1e-9
                                                         or cs.seed != self._seed[label])):
            return
        self.z[column] += [np.asarray(z, np.float32) for z in Z[:int(self.settings.per_class)]]

    def add_images(self, ctx: EvalContext, c: int) -> None:
        from ..extract.hooks import store_images

        sl = ctx.val.class_rows(c)
        rows = np.arange(sl.start, min(sl.stop, sl.start + int(self.settings.per_class)))
        for batch in store_images(ctx.val, ctx.loaded, rows, source=ctx.dataset()):
            self.images += [x.numpy() for x in batch]
        self.rows += [f"{ctx.val.classes[c]} · sample {int(ctx.val.sample_ids[r])}" for r in rows]

    def save(self, path: Path) -> None:
        """One .npz (written beside, then renamed): images, labels, and each column's maps per image."""
        if not self.images:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"images": np.stack(self.images).astype(np.float16)}
        for j, col in enumerate(self.columns):
            for i, z in enumerate(self.z[col]):
                arrays[f"z{j}_{i}"] = z
        meta = {"model": self.model, "interpreter": self.method, "columns": self.columns, "rows": self.rows,
                "top_k": int(self.settings.top_k), "rate": float(self.settings.rate)}
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)
        atomic_write_bytes(path, buf.getvalue(), what="heatmap data", hint="rerun the experiment to write it")


def load_heatmap_data(path: str | os.PathLike[str]) -> tuple[dict[str, Any], np.ndarray, dict[str, list[np.ndarray]]]:
    """(meta, images (n, 3, S, S), {column: [Z per image]}) of a saved collection."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        images = npz["images"].astype(np.float32)
        columns = {col: [npz[f"z{j}_{i}"] for i in range(len(images)) if f"z{j}_{i}" in npz]
                   for j, col in enumerate(meta["columns"])}
    return meta, images, columns
