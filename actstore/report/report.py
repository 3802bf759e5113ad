"""``actstore report RESULTS``: Table 1 (robustness), figures (Φ, accuracy, transfer, cost vs ρ), one HTML page."""

from __future__ import annotations

import base64
import csv
import html
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ResultsError
from ..evaluate.heatmap_data import load_heatmap_data
from ..evaluate.results import BASELINES, read_results
from .heatmaps import heatmap_grid
from .png import subplots, to_png

__all__ = ["robustness_table", "write_report"]

ROBUST_RATES = (0.1, 0.2, 0.3, 0.4, 0.5)


def _per_rate(rows: list[dict[str, Any]], value: str) -> dict[tuple[str, str, str, float], dict[float, float]]:
    """{(model, interpreter, selector, α): {ρ: mean over classes (and seeds) of ``value``}}."""
    acc: dict[tuple[str, str, str, float], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[(r["model"], r["interpreter"], r["selector"], r["alpha"])][r["rate"]].append(r[value])
    return {k: {rate: _mean(v) for rate, v in sorted(d.items())} for k, d in acc.items()}


def _mean(values: list[float]) -> float:
    """The mean over the finite values; NaN (undefined Φ, no accuracy) when there is none."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def robustness_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paper Table 1: mean ± std over ρ in 10..50 % of the class-averaged Φ, per model x interpreter x selector."""
    out = []
    for (model, interp, sel, alpha), by_rate in sorted(_per_rate(rows, "phi").items()):
        vals = [v for rate, v in by_rate.items() if any(abs(rate - r) < 1e-9 for r in ROBUST_RATES)]
        if sel in ("full", *BASELINES) or not vals:
            continue
        out.append({"model": model, "interpreter": interp, "selector": sel, "alpha": alpha,
                    "phi_mean": _mean(vals), "phi_std": float(np.std([v for v in vals if np.isfinite(v)]))
                    if any(np.isfinite(vals)) else float("nan"), "rates": len(vals)})
    return out


def _figure(rows: list[dict[str, Any]], value: str, transfer: bool, title: str) -> bytes:
    series = _per_rate(rows, value)
    panels = sorted({(m, i) for (m, i, _, _) in series})
    fig, axes = subplots(1, max(1, len(panels)), figsize=(4 * max(1, len(panels)), 3.2), squeeze=False)
    for ax, (model, interp) in zip(axes[0], panels, strict=False):
        for (m, i, sel, alpha), by_rate in sorted(series.items()):
            if (m, i) != (model, interp) or ("@" in sel) != transfer:
                continue
            if sel in ("full", "unmodified", "random-units"):
                if value.startswith("accuracy") and 1.0 in by_rate:
                    style = {"full": "--", "unmodified": ":", "random-units": "-."}[sel]
                    ax.axhline(by_rate[1.0], color="black", linestyle=style, label=f"{sel} (ρ = 1)")
                continue
            ax.plot(list(by_rate), list(by_rate.values()), marker="o", label=f"{sel} α={alpha:g}")
        ax.set_title(f"{model} · {interp}", fontsize=9)
        ax.set_xlabel("ρ (fraction kept per class)")
        ax.set_ylabel(value if value != "phi" else "Φ (rad)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    return to_png(fig, 110)


def _units_figure(path: Path) -> bytes:
    """Paper Fig. 3: VEBI units per layer (left) and coverage of the full data's units (right), ρ = 0.1."""
    with open(path) as fh:
        rows = [r for r in csv.DictReader(fh) if "@" not in r["selector"]]
    models = sorted({r["model"] for r in rows})
    fig, axes = subplots(len(models), 2, figsize=(11, 3 * len(models)), squeeze=False)
    for ax_row, model in zip(axes, models, strict=True):
        mine = [r for r in rows if r["model"] == model and (r["selector"] == "full" or abs(float(r["rate"]) - 0.1) < 1e-9)]
        layers = list(dict.fromkeys(r["layer"] for r in mine))
        for sel in sorted({r["selector"] for r in mine}):
            by = {r["layer"]: r for r in mine if r["selector"] == sel}
            ax_row[0].plot(range(len(layers)), [int(by[layer]["units"]) if layer in by else 0 for layer in layers],
                           marker="o", label=sel)
            if sel != "full":
                ax_row[1].plot(range(len(layers)), [float(by[layer]["coverage"]) * 100 if layer in by else np.nan
                                                    for layer in layers], marker="o", label=sel)
        ax_row[0].set_title(f"{model}: units per layer (ρ = 0.1 and full)", fontsize=9)
        ax_row[1].set_title(f"{model}: coverage of the full data's units (%)", fontsize=9)
        for ax in ax_row:
            ax.set_xlabel("ReLU layer (forward order)")
            ax.legend(fontsize=6)
    return to_png(fig, 100)


def write_report(results: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Table 1 (Markdown, CSV), PNG figures and ``report.html`` next to ``results`` (or in ``out_dir``)."""
    results = Path(results)
    rows = read_results(results)
    provenance = results.parent / "provenance.json"
    prov = json.loads(provenance.read_text()) if provenance.is_file() else {}
    known = {s["key"] for by_split in prov.get("stores", {}).values() for s in by_split.values()}
    foreign = {r[k] for r in rows for k in ("train_store", "val_store") if r.get(k)} - known
    if prov and foreign:
        raise ResultsError(f"{results}: rows from store(s) {', '.join(sorted(foreign))}, which {provenance} "
                              "does not list: the table and its provenance come from different runs")
    out = Path(out_dir) if out_dir is not None else results.parent
    out.mkdir(parents=True, exist_ok=True)
    table = robustness_table(rows)
    with open(out / "table1.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]) if table else ["model"])
        w.writeheader()
        w.writerows(table)
    md = ["| model | interpreter | selector | α | Φ mean ± std (ρ 10-50 %) |", "|---|---|---|---|---|"]
    md += [f"| {t['model']} | {t['interpreter']} | {t['selector']} | {t['alpha']:g} | "
           f"{t['phi_mean']:.4f} ± {t['phi_std']:.4f} |" for t in table]
    (out / "table1.md").write_text("\n".join(md) + "\n")
    figures = {
        "phi_vs_rate.png": _figure(rows, "phi", False, "Φ between full-data and coreset interpretations (Fig. 4)"),
        "accuracy_vs_rate.png": _figure(rows, "accuracy", False, "Accuracy through the head (Fig. 2)"),
        "transfer.png": _figure(rows, "phi", True, "Coresets transferred from another model (Fig. 5)"),
        "cost_vs_rate.png": _figure(rows, "fit_seconds", False, "Interpreter fit time per run, s (§4.6)"),
        "bytes_vs_rate.png": _figure(rows, "bytes_read", False, "Bytes of activations each run reads (§4.6)"),
    }
    vebi = [r for r in rows if r["interpreter"] == "vebi"]
    if vebi:
        figures["accuracy_all_layers_vs_rate.png"] = _figure(
            vebi, "accuracy_all_layers", False, "VEBI accuracy, units switched off in all layers (§4.2)")
    units_csv = results.parent / "vebi_units.csv"
    if units_csv.is_file():
        figures["vebi_units.png"] = _units_figure(units_csv)
    for name, png in figures.items():
        (out / name).write_bytes(png)
    for data in sorted((results.parent / "heatmaps").glob("*.npz")):  # paper §4.7, collected by the experiment
        meta, images, columns = load_heatmap_data(data)
        png = heatmap_grid(list(images), columns, meta["top_k"], f"{meta['model']} · {meta['interpreter']}: "
                           f"top-{meta['top_k']} maps, ρ = {meta['rate']:g} (paper §4.7)", meta["rows"])
        (out / "heatmaps").mkdir(exist_ok=True)
        (out / "heatmaps" / f"{data.stem}.png").write_bytes(png)
        figures[f"heatmaps/{data.stem}.png"] = png
    imgs = "".join(f'<h2>{html.escape(n)}</h2><img src="data:image/png;base64,{base64.b64encode(p).decode()}">'
                   for n, p in figures.items())
    rows_html = "".join(f"<tr><td>{html.escape(t['model'])}</td><td>{t['interpreter']}</td><td>{t['selector']}</td>"
                        f"<td>{t['alpha']:g}</td><td>{t['phi_mean']:.4f} ± {t['phi_std']:.4f}</td></tr>"
                        for t in table)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>actstore report</title>"
            f"<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}}td,th{{padding:2px 8px}}"
            f"img{{max-width:100%}}</style></head><body><h1>Coreset-based interpretation: results</h1>"
            f"<p>{len(rows)} result rows from <code>{html.escape(str(results))}</code>.</p>"
            f"<h2>Table 1: robustness of Φ over ρ in 10-50 %</h2><table border=1><tr><th>model</th>"
            f"<th>interpreter</th><th>selector</th><th>α</th><th>Φ mean ± std</th></tr>{rows_html}</table>{imgs}"
            f"<h2>Provenance</h2><pre>{html.escape(json.dumps(prov, indent=1, default=str))}</pre></body></html>")
    path = out / "report.html"
    path.write_text(page)
    return path
