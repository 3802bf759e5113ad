"""``actstore report RESULTS``: Table 1, the figures with captions, the §4.7 heatmaps and one self-contained
HTML page a reviewer reads: a title, what was run, what the numbers say (and every warning), Table 1 as the
paper prints it, the figures, and the provenance.

Files are written into the output folder (default: beside the results) under fixed names (``report.html``,
``table1.csv``, ``table1.md``, ``figures/*.png``, ``heatmaps/*.png``), each written beside and renamed into
place; nothing else in the folder is touched or deleted.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_write_bytes
from ..errors import ResultsError
from ..evaluate.heatmap_data import load_heatmap_data
from ..evaluate.results import read_results
from ..results_io import read_results_csv
from .figures import Styles, rate_figure, units_figure
from .heatmaps import heatmap_grid
from .narrative import findings, warnings, what_was_run
from .page import page
from .tables import ROBUST_RATES, floors, pivot, robustness_table

__all__ = ["robustness_table", "write_report", "Figure"]

Figure = tuple[str, bytes, str]  # (file name, PNG, caption)


def _write(path: Path, data: bytes | str) -> None:
    atomic_write_bytes(path, data if isinstance(data, bytes) else data.encode(), what=f"the report's {path.name}",
                       hint="rerun actstore report once the folder is writable")


def _provenance(results: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's provenance.json; an error when the table holds rows of stores it does not list."""
    path = results.parent / "provenance.json"
    prov = json.loads(path.read_text()) if path.is_file() else {}
    known = {s["key"] for by_split in prov.get("stores", {}).values() for s in by_split.values()}
    foreign = {r[k] for r in rows for k in ("train_store", "val_store") if r.get(k)} - known
    if prov and foreign:
        raise ResultsError(f"{results}: rows from store(s) {', '.join(sorted(foreign))}, which {path} "
                           "does not list: the table and its provenance come from different runs")
    return prov


def _table_files(out: Path, table: list[dict[str, Any]], alphas: list[float], selectors: list[str]) -> str:
    """table1.csv (long form) and table1.md (pivoted per α); returns the Markdown."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]) if table else ["model"])
    writer.writeheader()
    writer.writerows(table)
    _write(out / "table1.csv", buf.getvalue())
    md = []
    for alpha in alphas:
        cols, grid, best = pivot(table, alpha, selectors)
        md += [f"Table 1 at α = {alpha:g}: Φ mean ± std over ρ in 10-50 % (defined/total)", "",
               "| selector | " + " | ".join(f"{m} · {i}" for m, i in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for sel, by in grid.items():
            md.append(f"| {sel} | " + " | ".join(_cell(by.get(c), best.get(c) == sel, markdown=True) for c in cols) + " |")
        fl = floors_row(table, alpha, cols)
        md += ["| noise floor | " + " | ".join(fl) + " |", ""]
    _write(out / "table1.md", "\n".join(md))
    return "\n".join(md)


def floors_row(table: list[dict[str, Any]], alpha: float, cols: list[tuple[str, str]]) -> list[str]:
    level = {(t["model"], t["interpreter"]): t["floor"] for t in table if t["alpha"] == alpha}
    return [f"{level[c]:.3f}" if np.isfinite(level.get(c, np.nan)) else "n/a" for c in cols]


def _cell(t: dict[str, Any] | None, best: bool, markdown: bool = False) -> str:
    if t is None:
        return ""
    value = "undefined" if not np.isfinite(t["phi_mean"]) else f"{t['phi_mean']:.3f} ± {t['phi_std']:.3f}"
    count = f"{t['defined']}/{t['total']}"
    if markdown:
        return f"**{value}** ({count})" if best else f"{value} ({count})"
    flag = " warn" if t["defined"] < t["total"] else ""
    return (f"<td class='num{' best' if best else ''}{flag}'>{html.escape(value)}"
            f"<span class='count'>{count}</span></td>")


def _html_tables(table: list[dict[str, Any]], alphas: list[float], selectors: list[str]) -> str:
    parts = []
    for alpha in alphas:
        cols, grid, best = pivot(table, alpha, selectors)
        head = "".join(f"<th>{html.escape(m)}<br><small>{html.escape(i)}</small></th>" for m, i in cols)
        body = "".join(f"<tr><th>{html.escape(sel)}</th>" + "".join(_cell(by.get(c), best.get(c) == sel) for c in cols)
                       + "</tr>" for sel, by in grid.items())
        fl = "".join(f"<td class='num floor'>{v}</td>" for v in floors_row(table, alpha, cols))
        parts.append(f"<table><caption>Φ (rad) at α = {alpha:g}: mean ± std over ρ in "
                     f"{', '.join(f'{r:g}' for r in ROBUST_RATES)} of the class-averaged Φ; the small number is "
                     "how many Φ were defined of all; bold: the lowest fully defined mean per column. Noise floor: "
                     "Φ between two full-data fits that differ only in the interpreter's seed.</caption>"
                     f"<tr><th>selector</th>{head}</tr>{body}<tr><th>noise floor</th>{fl}</tr></table>")
    return "".join(parts)


def _saving(rows: list[dict[str, Any]], value: str) -> str:
    """The cost of the smallest and largest ρ against the full data's, in words."""
    out = []
    for m, i in sorted({(r["model"], r["interpreter"]) for r in rows}):
        mine = [r for r in rows if (r["model"], r["interpreter"]) == (m, i) and np.isfinite(r[value])]
        full = [r[value] for r in mine if r["selector"] == "full"]
        coreset = [r for r in mine if r["selector"] not in ("full",) and "@" not in r["selector"] and r[value] > 0]
        if not full or not coreset or not np.mean(full) > 0:
            continue
        lo = min(r["rate"] for r in coreset)
        small = np.mean([r[value] for r in coreset if r["rate"] == lo])
        out.append(f"{m} · {i}: {100 * small / np.mean(full):.0f} % of the full data's at ρ = {lo:g}")
    return "; ".join(out)


def _figures(rows: list[dict[str, Any]], results: Path, styles: Styles, alphas: list[float]) -> list[Figure]:
    fl = floors(rows)
    figs: list[Figure] = []
    for alpha in alphas:
        png = rate_figure(rows, "phi", styles, alpha=alpha, floor=fl, ylabel="Φ (rad)")
        if png:
            figs.append((f"phi_alpha{alpha:g}.png", png, f"Φ between the full data's and each coreset's "
                         f"interpretation maps at α = {alpha:g} (paper Fig. 4), mean over classes at each ρ. Lower "
                         "is closer to the full data; the red dashed line is the interpreter's noise floor (two "
                         "full-data fits with different seeds): a coreset below it is as close as a rerun."))
    for value, name, caption in _rate_figures(rows):
        png = rate_figure(rows, value, styles, alpha=alphas[0], references=True, ylabel=value.replace("_", " "))
        if png:
            figs.append((name, png, caption))
    png = rate_figure(rows, "phi", styles, alpha=alphas[-1], transferred=True, ylabel="Φ (rad)")
    if png:
        figs.append(("transfer.png", png, "Coresets selected on another model's store (dashed, hollow markers) next "
                     "to the same selector run on the model itself (solid), Φ at α = "
                     f"{alphas[-1]:g} (paper Fig. 5). Overlapping lines mean the coreset transfers."))
    units = results.parent / "vebi_units.csv"
    if units.is_file():
        table = read_results_csv(units, required=("model", "selector", "rate", "layer", "position", "units"))
        rate = min((float(u["rate"]) for u in table if u["selector"] != "full"), key=lambda r: abs(r - 0.1),
                   default=0.1)
        figs.append(("vebi_units.png", units_figure(table, styles, rate), f"VEBI's relevant units per ReLU layer in "
                     f"forward order (paper Fig. 3), summed over classes, at ρ = {rate:g} and on all data (black); "
                     "right: the share of the full data's (class, unit) pairs each coreset finds."))
    return figs


def _rate_figures(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    out = [("accuracy", "accuracy.png", "Top-1 accuracy through the model's head after the interpretation (paper "
            "Fig. 2), mean over classes. Black dashed: the full data's R; grey: the unmodified model and as many "
            "random units (VEBI). What each accuracy measures is in the warnings above.")]
    if any(np.isfinite(r["accuracy_all_layers"]) for r in rows):
        out.append(("accuracy_all_layers", "accuracy_all_layers.png", "VEBI: accuracy with each class's relevant "
                    "units switched off in every ReLU call (the model itself run over the validation images)."))
    out.append(("fit_seconds", "fit_seconds.png", "Seconds the interpreter's own fit took per target (paper §4.6); "
                f"black dashed: the full data. Saving: {_saving(rows, 'fit_seconds')}."))
    out.append(("bytes_read", "bytes_read.png", "Bytes of activations each fit read; black dashed: the full data. "
                f"Saving: {_saving(rows, 'bytes_read')}."))
    return out


def _heatmaps(results: Path, out: Path) -> list[Figure]:
    figs: list[Figure] = []
    for data in sorted((results.parent / "heatmaps").glob("*.npz")):
        meta, images, columns = load_heatmap_data(data)
        png = heatmap_grid(list(images), columns, meta["top_k"], f"{meta['model']} · {meta['interpreter']}: "
                           f"top-{meta['top_k']} maps at ρ = {meta['rate']:g}", meta["rows"])
        _write(out / "heatmaps" / f"{data.stem}.png", png)
        figs.append((f"heatmaps/{data.stem}.png", png, f"Paper §4.7 for {meta['model']} · {meta['interpreter']}: for "
                     f"validation images (rows: class · sample id), each map of the interpretation is scored by its "
                     f"sum, the top {meta['top_k']} are combined by their maximum, resized and overlaid. Columns: each "
                     f"selector at ρ = {meta['rate']:g} (a transferred coreset next to its source), the full data last."))
    return figs


def write_report(results: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Table 1 (CSV, Markdown), the figures, the heatmaps and ``report.html`` beside ``results`` (or in ``out_dir``)."""
    results = Path(results)
    rows = read_results(results)
    prov = _provenance(results, rows)
    out = Path(out_dir) if out_dir is not None else results.parent
    alphas = sorted({r["alpha"] for r in rows})
    selectors = list(dict.fromkeys(r["selector"] for r in rows))
    table = robustness_table(rows)
    _table_files(out, table, alphas, selectors)
    figs = [*_figures(rows, results, Styles(selectors), alphas), *_heatmaps(results, out)]
    for name, png, _ in figs:
        if not name.startswith("heatmaps/"):
            _write(out / "figures" / name, png)
    text = {"run": what_was_run(rows, prov), "findings": findings(rows, table), "warnings": warnings(rows)}
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    path = out / "report.html"
    _write(path, page(results, rows, text, _html_tables(table, alphas, selectors), figs, prov, created, __version__))
    return path
