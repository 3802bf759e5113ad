"""``actstore experiment``: the paper's grid, models x interpreters x selectors x ρ x seeds.

Every artifact is looked up in the catalog by its content key before it is computed (stores by
provenance, coresets and features by their keys), so a rerun after completion does no work and an
interrupted run resumes. Results go to one tidy CSV (:mod:`.results` says what each column means)
plus the tables interpreters add (VEBI's units per layer) and the §4.7 heatmaps' data; the report
(:mod:`actstore.report`) draws the figures from those. Coreset transfer (paper §4.5): coresets
selected on one model's store are also applied to every other model's (selector
``dgpruning@demo-vgg``: dgpruning computed on demo-vgg's store). Interpreters are asked through
the registry; the runner knows none of them by name.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..catalog import Catalog, open_catalog
from ..coresets.artifact import Coreset
from ..coresets.select import save_coreset, select_many
from ..device import resolve_device
from ..errors import ActstoreError
from ..extract.extractor import extract
from ..extract.heads import model_head
from ..extract.hooks import store_dataset
from ..extract.models import layer_names, layer_node, load_model
from ..interpret.base import ClassData, EvalContext, Interpreter, get_interpreter, store_model
from ..interpret.features import Features
from ..interpret.run import interpret, save_features
from ..location import exists
from ..progress import Advance, progress_bar, status
from ..resources import measured
from ..store.reader import ActivationStore
from ..store.schema import provenance_key
from .config import ExperimentConfig
from .heatmap_data import HeatmapCollector
from .plan import GridPlan, TargetPlan, fit_params, plan_grid
from .protocol import class_accuracy, phi_of_pairs
from .results import write_csv, write_results

__all__ = ["ExperimentConfig", "run_experiment"]
COST_COLUMNS = ("fit_seconds", "bytes_read", "peak_rss_MB")
Labelled = list[tuple[str, Coreset | None]]  # (selector label, coreset), the full data first as ("full", None)


@dataclass
class Grid:
    """What the run works on: each model's train and validation stores, the plan, and the coresets by key."""

    stores: dict[str, dict[str, ActivationStore]]
    plan: GridPlan
    coresets: dict[str, Coreset] = field(default_factory=dict)
    work: dict[str, Any] = field(default_factory=lambda: {"extracted": 0, "selections": 0, "fits": 0})

    def labelled(self, model: str) -> Labelled:
        return [(t.label, None if t.coreset is None else self.coresets[t.coreset]) for t in self.plan.labelled(model)]


def _extract_stores(cfg: ExperimentConfig, models: list[str], cat: Catalog, progress: bool, work: dict[str, Any]
                    ) -> dict[str, dict[str, ActivationStore]]:
    """Each model's train store (with VEBI's units) and validation store; the validation store holds the
    maps of every ReLU call VEBI uses unless ``vebi_maps: hooks``."""
    stores = {}
    for model in models:
        train = extract(model, cfg.train, units=True, catalog=cat, progress=progress)
        val_layers = [load_model(model, catalog=cat).default_layer]
        if cfg.vebi_maps == "store" and any(get_interpreter(i).needs_unit_maps for i in cfg.interpreters):
            val_layers += [n for n, _ in train.store.provenance["units"]["layers"] if n not in val_layers]
        val = extract(model, cfg.val, units=True, layers=val_layers, catalog=cat, progress=progress)
        work["extracted"] += int(not train.reused) + int(not val.reused)
        stores[model] = {"train": train.store, "val": val.store}
    return stores


def _select_coresets(grid: Grid, cat: Catalog) -> None:
    """Every selector x seed on each model's train store (all ρ in one pass), or its coresets from the catalog."""
    cfg = grid.plan.cfg
    for (model, method, seed), keys in grid.plan.selections.items():
        if grid.plan.selections_found[(model, method, seed)]:
            for k in keys:
                grid.coresets[k] = Coreset.load(cat.resolve(cat.get("coresets", str(cat.find("coresets", key=k)))))
            continue
        made = select_many(grid.stores[model]["train"], method, cfg.rates, seed=seed, scheduler=cfg.scheduler)
        grid.work["selections"] += 1
        for cs, k in zip(made, keys, strict=True):
            _same_key("coreset", k, cs.key)
            save_coreset(cs, cat)
            grid.coresets[k] = cs


def _same_key(what: str, planned: str, made: str) -> None:
    if planned != made:
        raise ActstoreError(f"internal: the {what} made has key {made}, the plan expected {planned}; please report")


def _features_for(store: ActivationStore, interp: Interpreter, targets: list[TargetPlan], grid: Grid, cat: Catalog,
                  advance: Advance) -> list[Features]:
    """Features per planned target: from the catalog when already computed, else computed in the groups the
    interpreter shares reads in, each saved as it ends (an interrupted run loses one group at most)."""
    cfg = grid.plan.cfg
    found: dict[int, Features] = {}
    groups: dict[Any, list[int]] = {}
    for i, t in enumerate(targets):
        name = cat.find("features", key=t.key)
        if name is not None and exists(cat.resolve(cat.get("features", name))):
            found[i] = Features.load(cat.resolve(cat.get("features", name)))
        else:
            cs = None if t.coreset is None else grid.coresets[t.coreset]
            groups.setdefault((interp.group(cs), t.seed), []).append(i)
    for (_, seed), todo in groups.items():
        subs = [i for i in todo if targets[i].coreset is not None]
        full = [i for i in todo if targets[i].coreset is None]
        params = fit_params(cfg, interp, seed)
        chosen = [grid.coresets[str(targets[i].coreset)] for i in subs]
        advance.grow(interp.work(store, [*chosen, *([None] if full else [])], params)[0])
        made = interpret(store, interp.name, coresets=chosen, full=bool(full), scheduler=cfg.scheduler,
                         progress=advance, **params)
        grid.work["fits"] += len(made)
        for i, f in zip(subs + full, made, strict=True):  # interpret returns the coresets, then the full data
            _same_key("features", targets[i].key, f.key)
            save_features(f, cat)
            found[i] = f
    return [found[i] for i in range(len(targets))]


def _results_key(cfg: ExperimentConfig, grid: Grid) -> str:
    """What the results depend on: the config (less where it runs), the stores and every features key."""
    expected = {f"{m}/{i}": [t.key for t in targets] for (m, i), targets in grid.plan.targets.items()}
    settings = {k: v for k, v in cfg.as_dict().items() if k not in ("out", "scheduler")}
    return provenance_key({"config": settings, "stores": {m: [s.key for s in v.values()] for m, v in grid.stores.items()},
                           "features": expected})


def _context(cfg: ExperimentConfig, stores: dict[str, ActivationStore]) -> EvalContext:
    """The validation side of one model: the model on its device, its head, the images when needed."""
    val = stores["val"]
    loaded = store_model(val)
    loaded.module.to(resolve_device("auto"))  # heads and hooks run where the model is
    layer = val.layers[0]
    return EvalContext(val=val, loaded=loaded, head=model_head(loaded, layer), layer=layer,
                       unit_layer=layer_node(layer_names(loaded.module), layer),
                       dataset=functools.cache(lambda: store_dataset(val, loaded)), all_layers=cfg.vebi_all_layers)


@dataclass
class _Fitted:
    """One model x interpreter: its labelled targets' features, and the noise floor's full-data fit."""

    interp: Interpreter
    labelled: Labelled
    feats: list[Features]
    floor: Features | None  # the full data fitted with another seed (stochastic interpreters)
    deterministic: bool  # no floor to fit: two seeds give the same R


def _fit(grid: Grid, model: str, interp: Interpreter, cat: Catalog, advance: Advance) -> _Fitted:
    train = grid.stores[model]["train"]
    labelled = grid.labelled(model)
    targets = grid.plan.targets[(model, interp.name)]
    deterministic = interp.deterministic(train.maps_array().shape[-1], fit_params(grid.plan.cfg, interp, 0))
    feats = _features_for(train, interp, targets, grid, cat, advance)
    floor = targets[-1].floor
    return _Fitted(interp, labelled, feats[:len(labelled)], feats[-1] if floor else None, deterministic)


def _floor(cfg: ExperimentConfig, fitted: _Fitted, data: ClassData, z_full: dict[str, np.ndarray]
           ) -> dict[float, float]:
    """Φ between the two full-data fits (another seed): 0 for a deterministic interpreter, NaN if not asked."""
    if fitted.floor is None:
        return {a: 0.0 if fitted.deterministic else float("nan") for a in cfg.alphas}
    pairs = fitted.interp.pairs(z_full, fitted.interp.interpretation(fitted.floor, data))
    return phi_of_pairs(pairs, cfg.alphas)[0]


def _class_rows(cfg: ExperimentConfig, model: str, ctx: EvalContext, fitted: _Fitted, data: ClassData,
                heat: HeatmapCollector | None) -> list[dict[str, Any]]:
    """The result rows of one class: every target x α, and the interpreter's baselines."""
    interp, c = fitted.interp, data.c
    zs = [interp.interpretation(f, data) for f in fitted.feats]
    floor = _floor(cfg, fitted, data, zs[0])
    rows = []
    for (label, cs), f, z in zip(fitted.labelled, fitted.feats, zs, strict=True):
        phi, layers = phi_of_pairs(interp.pairs(zs[0], z), cfg.alphas) if cs is not None else \
            ({a: 0.0 for a in cfg.alphas}, len(interp.pairs(zs[0], zs[0])))
        n_iter, converged = interp.fit_record(f, c)
        common = {"model": model, "interpreter": interp.name, "selector": label,
                  "source_model": label.split("@")[1] if "@" in label else model,
                  "rate": 1.0 if cs is None else cs.rate, "seed": cfg.seeds[0] if cs is None else cs.seed, "class": ctx.val.classes[c],
                  "phi_layers": layers, "accuracy": class_accuracy(interp, f, data, ctx, z),
                  "accuracy_all_layers": interp.accuracy_all_layers(f, data, ctx), "units": interp.units(f, c),
                  "n_iter": n_iter, "converged": converged, "mu": f.meta.get("mu", float("nan")), **_cost(f),
                  "train_store": f.store_key, "val_store": ctx.val.key, "features": f.key}
        rows += [{**common, "alpha": a, "phi": phi[a], "phi_floor": floor[a]} for a in cfg.alphas]
        if heat is not None:
            heat.add(c, label, cs, interp.heatmap_maps(f, data, z))
    rng = np.random.default_rng([cfg.seeds[0], c])
    for label, (acc, acc_all) in interp.baselines(fitted.feats[0], data, ctx, rng).items():
        rows += [{"model": model, "interpreter": interp.name, "selector": label, "source_model": model, "rate": 1.0,
                  "seed": cfg.seeds[0], "class": ctx.val.classes[c], "alpha": a, "phi": float("nan"),
                  "phi_floor": float("nan"), "phi_layers": 0, "accuracy": acc, "accuracy_all_layers": acc_all,
                  "units": float("nan"), "n_iter": float("nan"), "converged": "", "mu": float("nan"), **_cost(None),
                  "train_store": rows[0]["train_store"], "val_store": ctx.val.key, "features": fitted.feats[0].key}
                 for a in cfg.alphas]
    return rows


def _cost(features: Features | None) -> dict[str, float]:
    """What fitting ``features`` cost, as the interpreter recorded it (NaN for baselines)."""
    cost = features.meta.get("cost", {}) if features is not None else {}
    return {k: float(cost.get(k, float("nan"))) for k in COST_COLUMNS}


def _evaluate(cfg: ExperimentConfig, model: str, ctx: EvalContext, fitted: _Fitted, out: Path,
              advance: Advance) -> list[dict[str, Any]]:
    """Every class of one model x interpreter, one class's data in memory at a time."""
    hm = cfg.heatmap_settings()
    heat = HeatmapCollector(model, fitted.interp.name, fitted.labelled, cfg.selectors, hm) if hm else None
    rows = []
    for c in range(len(ctx.val.classes)):
        data = fitted.interp.class_data(ctx, c, [*fitted.feats, *([fitted.floor] if fitted.floor else [])])
        wanted = heat is not None and heat.wants(c)
        rows += _class_rows(cfg, model, ctx, fitted, data, heat if wanted else None)
        if wanted and heat is not None:
            heat.add_images(ctx, c)
        advance()
    if heat is not None:
        heat.save(out / "heatmaps" / f"{model}.{fitted.interp.name}.npz")
    return rows


def _write_tables(out: Path, tables: dict[str, list[dict[str, Any]]]) -> None:
    for name, rows in tables.items():
        if rows:
            write_csv(out / f"{name}.csv", rows, list(rows[0]), f"the {name} table")


def _up_to_date(out: Path, key: str) -> bool:
    prov = out / "provenance.json"
    return (out / "results.csv").exists() and prov.exists() and json.loads(prov.read_text()).get("key") == key


@contextlib.contextmanager
def _stage(grid_work: dict[str, Any], name: str) -> Iterator[None]:
    """Records a stage's wall time, peak memory and bytes read in the run's ``work`` (provenance.json)."""
    with measured() as cost:
        yield
    grid_work.setdefault("stages", {})[name] = {"seconds": round(cost["seconds"], 3),
                                                "peak_rss_MB": round(cost["peak_rss_MB"], 1),
                                                "read_MB": round(cost["read_bytes"] / 2**20, 1)}


def _prepare(cfg: ExperimentConfig, cat: Catalog, progress: bool) -> Grid:
    """Stores (extracted or found), the plan, and every coreset (selected or found)."""
    work: dict[str, Any] = {"extracted": 0, "selections": 0, "fits": 0}
    stores = {}
    for model in cfg.models:
        with _stage(work, f"extract/{model}"):
            stores.update(_extract_stores(cfg, [model], cat, progress, work))
    grid = Grid(stores, plan_grid(cfg, cat), work=work)  # planned now that every store (and its weights) exists
    with _stage(work, "select"):
        _select_coresets(grid, cat)
    return grid


def run_experiment(cfg: ExperimentConfig, catalog: str | os.PathLike[str] | Catalog | None = None,
                   progress: bool = True) -> Path:
    """Run (or resume) the grid; returns the results CSV path (the figures are the report's)."""
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    cfg.check(cat)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = _prepare(cfg, cat, progress)
    key = _results_key(cfg, grid)
    if _up_to_date(out, key):
        status(f"results are up to date (key {key}): nothing to do", progress)
        return out / "results.csv"
    rows: list[dict[str, Any]] = []
    tables: dict[str, list[dict[str, Any]]] = {}
    total = sum(len(grid.stores[m]["val"].classes) for m in cfg.models) * len(cfg.interpreters)
    with progress_bar(progress, total, "experiment", "units of work") as advance:
        for model in cfg.models:
            ctx = _context(cfg, grid.stores[model])
            for method in cfg.interpreters:
                interp = get_interpreter(method)
                advance(steps=0, text=f"{model} · {method}: fitting")
                with _stage(grid.work, f"interpret/{model}/{method}"):
                    fitted = _fit(grid, model, interp, cat, advance)
                advance(steps=0, text=f"{model} · {method}: evaluating")
                with _stage(grid.work, f"evaluate/{model}/{method}"):
                    rows += _evaluate(cfg, model, ctx, fitted, out, advance)
                for name, extra in interp.tables(model, fitted.labelled, fitted.feats).items():
                    tables.setdefault(name, []).extend(extra)
    _publish(out, rows, tables, key, cfg, grid)
    return out / "results.csv"


def _publish(out: Path, rows: list[dict[str, Any]], tables: dict[str, list[dict[str, Any]]], key: str,
             cfg: ExperimentConfig, grid: Grid) -> None:
    """The tables, then results.csv, then provenance.json (whose key says the results are complete)."""
    _write_tables(out, tables)
    write_results(out / "results.csv", rows)
    stores = {m: {k: {"key": s.key, "path": str(s.path), "rows": s.n_rows, "classes": len(s.classes)}
                  for k, s in v.items()} for m, v in grid.stores.items()}
    prov = {"key": key, "config": cfg.as_dict(), "stores": stores, "work": grid.work}
    atomic_write_text(out / "provenance.json", json.dumps(prov, indent=1, default=str), what="the results' provenance")
