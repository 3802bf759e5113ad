"""Table 1 of the paper (robustness of Φ over ρ) with what it needs to be read: how many Φ were defined
out of how many, the interpreter's noise floor, every α the run asked for.

Averaging (:func:`actstore.evaluate.protocol.defined_mean`, the one rule): at each ρ, Φ is the mean over
the classes (and seeds) where it is defined; Table 1 is the mean ± std over ρ in 10-50 % of those, and
shows the defined count out of the total next to it. Undefined values are counted, never averaged in.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ..evaluate.protocol import defined_mean
from ..evaluate.results import BASELINES

__all__ = ["ROBUST_RATES", "robustness_table", "floors", "per_rate", "is_coreset", "columns_of", "pivot"]

ROBUST_RATES = (0.1, 0.2, 0.3, 0.4, 0.5)
Key = tuple[str, str, str, float]  # (model, interpreter, selector, α)


def is_coreset(selector: str) -> bool:
    return selector != "full" and selector not in BASELINES


def per_rate(rows: list[dict[str, Any]], value: str) -> dict[Key, dict[float, tuple[float, int, int]]]:
    """{(model, interpreter, selector, α): {ρ: (mean of the defined values, defined, total)}}."""
    acc: dict[Key, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[(r["model"], r["interpreter"], r["selector"], r["alpha"])][r["rate"]].append(r[value])
    return {k: {rate: (*defined_mean(v), len(v)) for rate, v in sorted(d.items())} for k, d in acc.items()}


def floors(rows: list[dict[str, Any]]) -> dict[tuple[str, str, float], float]:
    """The noise floor per (model, interpreter, α): the mean over classes of Φ between two full-data fits."""
    acc: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for r in rows:
        if r["selector"] == "full":
            acc[(r["model"], r["interpreter"], r["alpha"])].append(r["phi_floor"])
    return {k: defined_mean(v)[0] for k, v in acc.items()}


def robustness_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paper Table 1, long form: per model x interpreter x selector x α, mean ± std over ρ in 10-50 % of the
    class-averaged Φ, with the defined/total counts behind it and the interpreter's noise floor."""
    floor = floors(rows)
    out = []
    for (model, interp, sel, alpha), by_rate in sorted(per_rate(rows, "phi").items()):
        at = [v for rate, v in by_rate.items() if any(abs(rate - r) < 1e-9 for r in ROBUST_RATES)]
        if not is_coreset(sel) or not at:
            continue
        means = [m for m, _, _ in at if np.isfinite(m)]
        out.append({"model": model, "interpreter": interp, "selector": sel, "alpha": alpha,
                    "phi_mean": float(np.mean(means)) if means else float("nan"),
                    "phi_std": float(np.std(means)) if means else float("nan"),
                    "defined": sum(d for _, d, _ in at), "total": sum(t for _, _, t in at), "rates": len(at),
                    "floor": floor.get((model, interp, alpha), float("nan"))})
    return out


def columns_of(table: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted({(t["model"], t["interpreter"]) for t in table})


def pivot(table: list[dict[str, Any]], alpha: float, selectors: list[str]
          ) -> tuple[list[tuple[str, str]], dict[str, dict[tuple[str, str], dict[str, Any]]], dict[tuple[str, str], str]]:
    """Table 1 as the paper prints it: (columns (model, interpreter), {selector: {column: cell}}, {column: best
    selector}) at one α; the best is the lowest mean Φ among fully defined cells."""
    cells = [t for t in table if t["alpha"] == alpha]
    cols = columns_of(cells)
    grid: dict[str, dict[tuple[str, str], dict[str, Any]]] = {s: {} for s in selectors}
    for t in cells:
        grid.setdefault(t["selector"], {})[(t["model"], t["interpreter"])] = t
    best = {}
    for col in cols:
        ranked = [(cell["phi_mean"], sel) for sel, by in grid.items() if (cell := by.get(col)) is not None
                  and np.isfinite(cell["phi_mean"]) and cell["defined"] == cell["total"]]
        if ranked:
            best[col] = min(ranked)[1]
    return cols, {s: g for s, g in grid.items() if g}, best
