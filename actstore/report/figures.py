"""The report's figures: grids of panels (rows: models, columns: interpreters) sized for a 1400 px page,
one fixed colour per selector in every figure (a transferred coreset is its source's colour, dashed),
the full data in black, shared legends under the panels."""

from __future__ import annotations

from typing import Any

import numpy as np

from .png import subplots, to_png
from .tables import is_coreset, per_rate

__all__ = ["Styles", "rate_figure", "units_figure", "PANEL"]

PANEL = (4.1, 2.7)  # inches per panel; at 100 dpi three panels are 1230 px wide
DPI = 100
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728"]
_REFERENCES = {"full": ("black", "--"), "unmodified": ("#555555", ":"), "random-units": ("#999999", "-.")}


class Styles:
    """Colour, line and marker of every selector label, fixed for the whole report."""

    def __init__(self, selectors: list[str]) -> None:
        bases = list(dict.fromkeys(s.split("@")[0] for s in selectors if is_coreset(s)))
        self.colour = {b: _PALETTE[i % len(_PALETTE)] for i, b in enumerate(bases)}

    def of(self, label: str) -> dict[str, Any]:
        if label in _REFERENCES:
            colour, line = _REFERENCES[label]
            return {"color": colour, "linestyle": line, "marker": None}
        base, _, source = label.partition("@")
        return {"color": self.colour.get(base, "grey"), "linestyle": "--" if source else "-",
                "marker": "s" if source else "o", "markersize": 4, "markerfacecolor": "white" if source else None}


def _grid(panels: list[tuple[str, str]]) -> tuple[Any, Any, list[str], list[str]]:
    models = sorted({m for m, _ in panels})
    interps = sorted({i for _, i in panels})
    fig, axes = subplots(len(models), len(interps), figsize=(PANEL[0] * len(interps), PANEL[1] * len(models) + 0.7),
                         squeeze=False)
    return fig, axes, models, interps


def _finish(fig: Any, axes: Any, ylabel: str) -> bytes:
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
        ax.grid(alpha=0.3)
        ax.set_xlabel("ρ (fraction of each class kept)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=8)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(6, max(1, len(handles))),
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.09 if len(axes) == 1 else 0.05, 1, 1))
    return to_png(fig, DPI, layout=False)


def rate_figure(rows: list[dict[str, Any]], value: str, styles: Styles, *, alpha: float | None = None,
                transferred: bool = False, references: bool = False, floor: dict[tuple[str, str, float], float] | None = None,
                ylabel: str = "") -> bytes | None:
    """``value`` (mean over classes, defined values only) against ρ, one panel per model x interpreter.
    ``transferred``: only selectors with transferred coresets, source solid and transferred dashed;
    ``references``: the full data's (and baselines') value as horizontal lines; ``floor``: the noise floor."""
    series = {k: v for k, v in per_rate(rows, value).items() if (alpha is None or k[3] == alpha)
              and any(np.isfinite(mean) for mean, _, _ in v.values())}
    sources = {s.split("@")[0] for (_, _, s, _) in series if "@" in s}
    keep = {k: v for k, v in series.items() if is_coreset(k[2]) and (not transferred or k[2].split("@")[0] in sources)
            and (transferred or "@" not in k[2])}
    if not keep:
        return None
    panels = sorted({(m, i) for (m, i, _, _) in keep})
    fig, axes, models, interps = _grid(panels)
    for (m, i, sel, a), by_rate in sorted(series.items()):
        ax = axes[models.index(m)][interps.index(i)] if (m, i) in panels else None
        if ax is None:
            continue
        if (m, i, sel, a) in keep:
            xs = [r for r, (mean, _, _) in by_rate.items() if np.isfinite(mean)]
            ax.plot(xs, [by_rate[r][0] for r in xs], label=sel, **styles.of(sel))
        elif references and not is_coreset(sel) and 1.0 in by_rate and np.isfinite(by_rate[1.0][0]):
            ax.axhline(by_rate[1.0][0], linewidth=1.2, label=f"{sel} (all data)" if sel == "full" else sel,
                       **{k: v for k, v in styles.of(sel).items() if k != "marker"})
    for (m, i) in panels:
        ax = axes[models.index(m)][interps.index(i)]
        ax.set_title(f"{m} · {i}", fontsize=9)
        level = (floor or {}).get((m, i, alpha if alpha is not None else 1.0))
        if level is not None and np.isfinite(level):
            ax.axhline(level, color="#d62728", linewidth=1, linestyle=(0, (4, 2)), label="noise floor (seed only)")
    for r, row in enumerate(axes):  # an empty panel (no such model x interpreter) says so
        for c, ax in enumerate(row):
            if (models[r], interps[c]) not in panels:
                ax.set_axis_off()
    return _finish(fig, axes, ylabel or value)


def units_figure(units: list[dict[str, Any]], styles: Styles, rate: float) -> bytes:
    """Paper Fig. 3: units identified per layer (left) and their coverage of the full data's (right), at ρ = ``rate``,
    layers in forward order with their names."""
    models = sorted({u["model"] for u in units})
    fig, axes = subplots(len(models), 2, figsize=(2 * PANEL[0] * 1.45, PANEL[1] * 1.25 * len(models) + 0.7),
                         squeeze=False)
    for ax_row, model in zip(axes, models, strict=True):
        mine = [u for u in units if u["model"] == model and "@" not in u["selector"]
                and (u["selector"] == "full" or abs(float(u["rate"]) - rate) < 1e-9)]
        layers = list(dict.fromkeys(x[1] for x in sorted({(int(u["position"]), u["layer"]) for u in mine})))
        for sel in sorted({u["selector"] for u in mine}, key=lambda s: (s == "full", s)):
            by = {u["layer"]: u for u in mine if u["selector"] == sel}
            style = styles.of(sel)
            ax_row[0].plot(range(len(layers)), [int(by[x]["units"]) if x in by else 0 for x in layers], label=sel,
                           **style)
            if sel != "full":
                ax_row[1].plot(range(len(layers)), [float(by[x]["coverage"]) * 100 if x in by else np.nan
                                                    for x in layers], label=sel, **style)
        ax_row[0].set_title(f"{model}: relevant units per ReLU layer (ρ = {rate:g} and all data)", fontsize=9)
        ax_row[1].set_title(f"{model}: % of the full data's units found", fontsize=9)
        for ax in ax_row:
            ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(axis="y", labelsize=8)
        ax_row[0].set_ylabel("units (all classes)", fontsize=8)
        ax_row[1].set_ylabel("coverage (%)", fontsize=8)
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return to_png(fig, DPI, layout=False)
