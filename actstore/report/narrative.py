"""The report's words: what was run, what the main numbers say, and every warning a reader must see
(undefined Φ and why, fits that did not converge, accuracies that do not move with ρ). Sentences are
built from the results; nothing here knows an interpreter by name (the registry describes each)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from ..evaluate.protocol import defined_mean
from ..interpret.base import list_interpreters
from .tables import floors, is_coreset

__all__ = ["what_was_run", "findings", "warnings"]


def _label(interpreter: str) -> str:
    known = list_interpreters()
    return known[interpreter].label if interpreter in known and known[interpreter].label else interpreter


def _list(values: list[Any]) -> str:
    items = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else "".join(items)


def what_was_run(rows: list[dict[str, Any]], prov: dict[str, Any]) -> str:
    """One paragraph: models, interpreters, selectors, ρ, seeds, α, data sizes."""
    cfg = prov.get("config", {})
    models = sorted({r["model"] for r in rows})
    sizes = []
    for m in models:
        stores = prov.get("stores", {}).get(m, {})
        if "train" in stores and "rows" in stores["train"]:
            sizes.append(f"{m}: {stores['train']['rows']} training rows in {stores['train']['classes']} classes, "
                         f"{stores['val']['rows']} validation rows")
    selectors = sorted({r["selector"] for r in rows if is_coreset(r["selector"])})
    rates = sorted({r["rate"] for r in rows if is_coreset(r["selector"])})
    text = (f"Interpreters {_list([_label(i) for i in sorted({r['interpreter'] for r in rows})])} on "
            f"{_list(models)}, with coresets from {_list(selectors)} at ρ = {_list(rates)} "
            f"(seeds {_list(sorted({int(r['seed']) for r in rows}))}); Φ at α = "
            f"{_list(sorted({r['alpha'] for r in rows}))}.")
    if sizes:
        text += " Data: " + "; ".join(sizes) + "."
    if cfg.get("params"):
        text += " Settings: " + "; ".join(f"{k} {v}" for k, v in cfg["params"].items()) + "."
    return text


def _mean_phi(rows: list[dict[str, Any]], rate: float) -> tuple[float, int, int]:
    values = [r["phi"] for r in rows if abs(r["rate"] - rate) < 1e-9]
    return (*defined_mean(values), len(values))


def findings(rows: list[dict[str, Any]], table: list[dict[str, Any]]) -> list[str]:
    """Per model x interpreter: Φ at the smallest and largest ρ against the noise floor; the steadiest selector."""
    floor = floors(rows)
    alpha = max(r["alpha"] for r in rows)
    out = []
    for model, interp in sorted({(r["model"], r["interpreter"]) for r in rows}):
        own = [r for r in rows if (r["model"], r["interpreter"]) == (model, interp) and r["alpha"] == alpha
               and is_coreset(r["selector"]) and "@" not in r["selector"]]
        if not own:
            continue
        lo, hi = min(r["rate"] for r in own), max(r["rate"] for r in own)
        (m_lo, d_lo, t_lo), (m_hi, d_hi, t_hi) = _mean_phi(own, lo), _mean_phi(own, hi)
        fl = floor.get((model, interp, alpha), float("nan"))
        text = (f"{_label(interp)} on {model} (α = {alpha:g}): Φ is {m_lo:.3f} rad at ρ = {lo:g} and {m_hi:.3f} at "
                f"ρ = {hi:g} (mean over classes and selectors, {d_lo}/{t_lo} and {d_hi}/{t_hi} defined)")
        text += f"; its noise floor is {fl:.3f}" + (" (deterministic: 0 by construction)" if fl == 0 else "")
        text += _against_floor(m_lo, fl, lo) + _exact_zeros(own)
        steady = [t for t in table if (t["model"], t["interpreter"], t["alpha"]) == (model, interp, alpha)
                  and np.isfinite(t["phi_std"]) and "@" not in t["selector"]]
        if steady:
            best = min(steady, key=lambda t: t["phi_mean"])
            text += f". Over ρ 10-50 % the lowest mean Φ is {best['selector']}'s ({best['phi_mean']:.3f} ± " \
                    f"{best['phi_std']:.3f})"
        units = [r["units"] for r in own if np.isfinite(r["units"])]
        if units:
            text += f"; interpretations hold {np.mean(units):.1f} units or components per class on average"
        out.append(text + ".")
    return out


def _against_floor(phi: float, floor: float, rate: float) -> str:
    if not (np.isfinite(floor) and floor > 0 and np.isfinite(phi)):
        return ""
    text = f", so Φ at ρ = {rate:g} is {phi / floor:.1f}× the run-to-run variation"
    if phi < floor:
        text += (" — below the floor: a coreset moves this interpreter's result less than a new seed does (each "
                 "coreset's fit uses the full-data fit's seed), so differences between selectors here are within the "
                 "interpreter's own variation")
    return text


def _exact_zeros(own: list[dict[str, Any]]) -> str:
    """Φ exactly 0 is not a small number but identical features: say how often and what it means."""
    zeros = sum(1 for r in own if r["phi"] == 0.0)
    if not zeros:
        return ""
    return (f"; {zeros} of {len(own)} Φ are exactly 0: there the coreset's fit equals the full data's (the same "
            "units or components), so that Φ measures no difference at all rather than a small one")


def _undefined(rows: list[dict[str, Any]]) -> list[str]:
    """Per model x interpreter x reason: how many (class, coreset) Φ are undefined, and where."""
    alpha = min(r["alpha"] for r in rows)
    totals: Counter[tuple[str, str, str, float]] = Counter()
    bad: dict[tuple[str, str, str], Counter[tuple[str, float]]] = defaultdict(Counter)
    for r in rows:
        if r["alpha"] != alpha or not is_coreset(r["selector"]):
            continue
        totals[(r["model"], r["interpreter"], r["selector"], r["rate"])] += 1
        if not np.isfinite(r["phi"]):
            why = "R and R' share no layer" if r["phi_layers"] == 0 else "a map has no variance"
            bad[(r["model"], r["interpreter"], why)][(r["selector"], r["rate"])] += 1
    out = []
    for (m, i, why), where in sorted(bad.items()):
        pairs = sum(n for (mm, ii, _, _), n in totals.items() if (mm, ii) == (m, i))
        detail = ", ".join(f"{s} ρ = {rate:g} ({n}/{totals[(m, i, s, rate)]})" for (s, rate), n in sorted(where.items()))
        out.append(f"{_label(i)} on {m}: {why} in {sum(where.values())} of {pairs} (class, coreset) pairs: {detail}")
    return out


def _fitted(r: dict[str, Any]) -> bool:
    """A row of an interpreter's own fit (the full data or a coreset), not a baseline."""
    return r["selector"] == "full" or is_coreset(r["selector"])


def _unconverged(rows: list[dict[str, Any]]) -> list[str]:
    fits: dict[tuple[str, str], Counter[bool]] = defaultdict(Counter)
    alpha = min(r["alpha"] for r in rows)
    for r in rows:
        if r["alpha"] == alpha and _fitted(r):
            fits[(r["model"], r["interpreter"])][bool(r["converged"])] += 1
    return [f"{_label(i)} on {m}: {c[False]} of {c[False] + c[True]} fits (class x target) did not converge "
            "(column converged = False in results.csv)" for (m, i), c in sorted(fits.items()) if c[False]]


def _flat(rows: list[dict[str, Any]]) -> list[str]:
    """Where every class keeps one accuracy across all targets, say so and why."""
    known = list_interpreters()
    out = []
    for model, interp in sorted({(r["model"], r["interpreter"]) for r in rows}):
        by_class: dict[str, set[float]] = defaultdict(set)
        for r in rows:
            if (r["model"], r["interpreter"]) == (model, interp) and _fitted(r) and np.isfinite(r["accuracy"]):
                by_class[r["class"]].add(round(r["accuracy"], 6))
        if len(by_class) and all(len(v) == 1 for v in by_class.values()):
            mean = float(np.mean([next(iter(v)) for v in by_class.values()]))
            how = known[interp].accuracy_protocol if interp in known else ""
            out.append(f"{_label(interp)} on {model}: the accuracy does not change with ρ (every class keeps its "
                       f"full-data value; mean {mean:.3f}). This is the protocol, not a finding: {how}.")
    return out


def warnings(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{"undefined": ..., "unconverged": ..., "flat": ...}: sentences for every artefact a reader must not miss."""
    return {"undefined": _undefined(rows), "unconverged": _unconverged(rows), "flat": _flat(rows)}
