"""``actstore experiment CONFIG --estimate``: the plan of a run and what it will cost, before any work.

For each stage (extract per model and split, select, interpret per interpreter, evaluate) the plan
says how many artifacts will be computed and how many are reused from the catalog (:mod:`.plan`),
and the estimate gives wall time, disk and peak memory from the shapes (rows, classes, layers, units,
the ρ grid) times per-unit costs measured on this machine (:mod:`.calibrate`). The cost model:

- extract: rows / images per second through the model's probe; disk from the store layout and the
  codec's ratio on ReLU maps;
- select: dgpruning ~ n_c² · D per class (its kNN Gram), the others ~ n_c · D;
- interpret: each interpreter's own cost model (``Interpreter.fit_cost``: ICE iterations x rows·H·W x D x k,
  VEBI rows · P² per target plus its solves, the topic model's steps x one step's cost at the run's
  batch, topics and hidden width, streaming included);
- evaluate, per class and target: Φ's statistics on Z (rows x width²) and its SVD and
  eigendecompositions, measured at Z's width (``Interpreter.z_width``), the head on the class's rows,
  and what the interpreter adds (``Interpreter.eval_cost``: ICE's transform, VEBI's ablation through the model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..catalog import Catalog
from ..interpret.base import Shapes, get_interpreter
from .calibrate import busy_warning, calibration, interpreter_costs, model_costs, phi_costs
from .config import ExperimentConfig
from .plan import GridPlan, ModelPlan, fit_params, plan_grid
from .shape import SLAB_BYTES

__all__ = ["Stage", "estimate", "format_estimate"]

COMPRESSION = 0.45  # stored bytes per raw byte of float16 ReLU maps (blosc-zstd, bit-shuffle)


@dataclass
class Stage:
    """One line of the plan."""

    stage: str
    model: str
    what: str
    compute: int
    reuse: int
    seconds: float
    disk_MB: float
    peak_MB: float
    note: str = ""


def _extract(mp: ModelPlan, costs: dict[str, float]) -> list[Stage]:
    out = []
    params = sum(p.numel() * 4 for p in mp.train.loaded.module.parameters()) / 2**20
    for split, plan, found in (("train", mp.train, mp.train_found), ("val", mp.val, mp.val_found)):
        rows, row_bytes = plan.spec.n_rows, plan.spec.row_bytes()
        todo = found is None
        block = plan.spec.block_rows * row_bytes / 2**20
        out.append(Stage("extract", mp.model, f"{split}: {rows} rows, {len(plan.spec.layers)} layer(s)"
                         f"{', ' + str(plan.spec.n_units) + ' units' if plan.spec.n_units else ''}", int(todo),
                         int(not todo), rows / costs["images_per_s"] if todo else 0.0,
                         rows * row_bytes * COMPRESSION / 2**20 if todo else 0.0, 400 + params + 4 * block,
                         "" if mp.weights_ready else "weights not trained yet: trained first"))
    return out


def _select(plan: GridPlan, model: str, cal: dict[str, float]) -> Stage:
    cfg = plan.cfg
    todo = sum(not plan.selections_found[(model, m, s)] for m in cfg.selectors for s in cfg.seeds)
    d = plan.models[model].train.spec.layers[-1].channels
    sizes = np.array(plan.class_rows(model), float)
    per = {"dgpruning": cal["dgpruning_s_per_n2d"] * float((sizes**2).sum()) * d}
    seconds = sum(per.get(m, 2e-9 * sizes.sum() * d) for m in cfg.selectors) * len(cfg.seeds)
    seconds *= todo / max(1, len(cfg.selectors) * len(cfg.seeds))
    return Stage("select", model, f"{len(cfg.selectors)} selector(s) x {len(cfg.seeds)} seed(s), every ρ per pass",
                 todo, len(cfg.selectors) * len(cfg.seeds) - todo, seconds, 0.0,
                 300 + 8 * float(sizes.max()) ** 2 / 2**20 * 3)


def _shapes(plan: GridPlan, model: str) -> Shapes:
    spec = plan.models[model].train.spec
    layer = spec.layers[-1]
    return Shapes(plan.class_rows(model), layer.height, layer.width, layer.channels, spec.n_units, spec.n_rows)


def _interpret(plan: GridPlan, model: str, method: str, costs: dict[str, float]) -> Stage:
    interp = get_interpreter(method)
    targets = plan.targets[(model, method)]
    todo = [plan.target_rows(model, t) for t in targets if not t.found]
    seconds, peak, disk = interp.fit_cost(_shapes(plan, model), todo, fit_params(plan.cfg, interp, 0), costs)
    note = f"{sum(t.floor for t in targets)} noise-floor fit" if any(t.floor for t in targets) else ""
    return Stage("interpret", model, f"{method}: {len(targets)} targets", len(todo), len(targets) - len(todo),
                 seconds, disk, 500 + peak, note)


def _evaluate(plan: GridPlan, model: str, method: str, costs: dict[str, float], cal: dict[str, Any]) -> Stage:
    """Per class and target: Φ's statistics on the interpretation maps, the head on the class's rows, and what
    the interpreter adds (ICE's transform, VEBI's ablation through the model)."""
    cfg, interp = plan.cfg, get_interpreter(method)
    layer = plan.models[model].val.spec.layers[0]
    hw, d = layer.height * layer.width, layer.channels
    n_targets = len(plan.targets[(model, method)])
    val_rows = plan.class_rows(model, "val")
    n = sum(val_rows)
    width = interp.z_width(_shapes(plan, model), fit_params(cfg, interp, 0))
    pc = phi_costs(cal, width)
    per_pair = len(cfg.alphas) * pc["phi_svd_s"] + pc["phi_eigh_s"] * any(a < 1 for a in cfg.alphas)
    phi = n_targets * (n * hw * width**2 * pc["phi_s_per_row_d2"] + len(val_rows) * per_pair)
    own = interp.eval_cost(_shapes(plan, model), val_rows, n_targets, fit_params(cfg, interp, 0), costs,
                           cfg.vebi_all_layers)
    return Stage("evaluate", model, f"{method}: {len(val_rows)} classes x {n_targets} targets x {len(cfg.alphas)} α",
                 len(val_rows), 0, phi + n * n_targets * costs["head_s_per_row"] + own, 0.0,
                 500 + 4 * max(val_rows) * hw * d * 3 / 2**20 + (8 * (2 * width) ** 2 + SLAB_BYTES) / 2**20)


def estimate(cfg: ExperimentConfig, cat: Catalog, refresh: bool = False) -> dict[str, Any]:
    """The plan of ``cfg`` with its estimated cost per stage, and the calibration it used."""
    plan = plan_grid(cfg, cat)
    cal = calibration(refresh)
    stages: list[Stage] = []
    used = []
    for model, mp in plan.models.items():
        layers = [s.name for s in mp.train.spec.layers]
        mc = model_costs(cal, mp.train.loaded, layers, True)
        stages += _extract(mp, mc)
        stages.append(_select(plan, model, cal["costs"]))
        used.append(mc)
        own = {}
        for method in cfg.interpreters:
            interp = get_interpreter(method)
            own[method] = interpreter_costs(cal, mp.train.loaded, layers, True, interp, fit_params(cfg, interp, 0))
            used.append(own[method])
            stages.append(_interpret(plan, model, method, {**cal["costs"], **mc, **own[method]}))
        stages += [_evaluate(plan, model, m, {**cal["costs"], **mc, **own[m]}, cal) for m in cfg.interpreters]
    total = {"seconds": sum(s.seconds for s in stages), "disk_MB": sum(s.disk_MB for s in stages),
             "peak_MB": max(s.peak_MB for s in stages)}
    return {"stages": [asdict(s) for s in stages], "total": total, "machine": cal["machine"],
            "calibrated": cal["created"], "warning": busy_warning(cal, used)}


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def format_estimate(est: dict[str, Any]) -> str:
    """A table a user reads in ten seconds."""
    head = f"{'stage':<10} {'model':<14} {'what':<46} {'compute':>7} {'reuse':>6} {'time':>9} {'disk':>9} {'peak':>8}"
    lines = [head, "-" * len(head)]
    for s in est["stages"]:
        lines.append(f"{s['stage']:<10} {s['model']:<14} {s['what'][:46]:<46} {s['compute']:>7} {s['reuse']:>6} "
                     f"{_clock(s['seconds']):>9} {s['disk_MB']:>7.0f}MB {s['peak_MB']:>6.0f}MB"
                     + (f"  ({s['note']})" if s["note"] else ""))
    t = est["total"]
    m = est["machine"]
    lines += ["-" * len(head), f"{'total':<10} {'':<14} {'':<46} {'':>7} {'':>6} {_clock(t['seconds']):>9} "
              f"{t['disk_MB']:>7.0f}MB {t['peak_MB']:>6.0f}MB",
              f"costs measured on {m['cpu']} ({m['cores']} cores, {m['memory_GB']} GB), {est['calibrated']}; "
              "peak is the largest stage's"]
    if est.get("warning"):
        lines.append(est["warning"])
    return "\n".join(lines)
