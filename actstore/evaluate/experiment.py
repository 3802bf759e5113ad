"""``actstore experiment``: the paper's grid, models x interpreters x selectors x ρ x seeds.

Every artifact is looked up in the catalog by its content key before it is computed (stores by
provenance, coresets and features by their keys), so a rerun after completion does no work and an
interrupted run resumes. Results go to one tidy CSV: one row per model x interpreter x selector x
ρ x seed x class x α, plus the full-data rows (ρ = 1) that carry the baseline accuracy.
Coreset transfer (paper §4.5): coresets selected on one model's store are also applied to every
other model's (selector ``dgpruning@demo-vgg``: dgpruning computed on demo-vgg's store).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..catalog import Catalog, open_catalog
from ..coresets.artifact import Coreset
from ..coresets.base import get_selector
from ..coresets.select import PAPER_RATES, save_coreset, select_many
from ..device import resolve_device
from ..errors import ActstoreError
from ..extract.extractor import extract
from ..extract.heads import model_head
from ..extract.models import layer_names, layer_node, list_models, load_model
from ..interpret.features import Features
from ..interpret.run import METHODS, interpret, save_features, store_model
from ..location import exists
from ..progress import progress_bar
from ..scheduler import check_scheduler
from ..store.reader import ActivationStore
from ..store.schema import provenance_key
from .hooks import hooked_accuracy, hooked_maps, store_dataset, store_images
from .protocol import UnitMaps, class_accuracy, class_phi, interpretation_maps, unit_maps, vebi_units_by_layer

__all__ = ["ExperimentConfig", "run_experiment", "RESULT_COLUMNS"]

RESULT_COLUMNS = ["model", "interpreter", "selector", "source_model", "rate", "seed", "class", "alpha", "phi",
                  "accuracy", "accuracy_all_layers", "vebi_layers", "fit_seconds", "bytes_read", "peak_rss_MB",
                  "train_store", "val_store", "features"]
COST_COLUMNS = ("fit_seconds", "bytes_read", "peak_rss_MB")
HEATMAP_DEFAULTS: dict[str, Any] = {"classes": 4, "per_class": 1, "top_k": 3, "rate": 0.1}


def _cost(features: Features | None) -> dict[str, float]:
    """What fitting ``features`` cost, as the interpreter recorded it (NaN for baselines)."""
    cost = features.meta.get("cost", {}) if features is not None else {}
    return {k: float(cost.get(k, float("nan"))) for k in COST_COLUMNS}


class ConfigError(ActstoreError, ValueError):
    """An experiment config names something unknown or is malformed."""


@dataclass
class ExperimentConfig:
    models: list[str]
    interpreters: list[str] = field(default_factory=lambda: ["ice", "vebi", "topic"])
    selectors: list[str] = field(default_factory=lambda: ["random", "moderate", "dgpruning", "kcenter"])
    rates: list[float] = field(default_factory=lambda: list(PAPER_RATES))
    seeds: list[int] = field(default_factory=lambda: [0])
    alphas: list[float] = field(default_factory=lambda: [1.0])
    train: str = "digits:train"
    val: str = "digits:val"
    transfer: bool | list[str] = True  # or the selectors whose coresets are transferred
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    vebi_maps: str = "store"  # "store": the val store holds every ReLU layer; "hooks": computed by forward hooks
    vebi_all_layers: bool = True  # the "all layers" ablation: one forward pass per target and class over the images
    heatmaps: dict[str, Any] | bool = True  # paper §4.7 grids; a mapping overrides HEATMAP_DEFAULTS
    scheduler: str | None = None  # Dask scheduler of selection, ICE and VEBI (see actstore.scheduler)
    out: str = "results"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ExperimentConfig:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such experiment config") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: an experiment config is a YAML mapping")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(cls.__dataclass_fields__)}")
        if "models" not in raw:
            raise ConfigError(f"{path}: 'models' is required")
        cfg = cls(**raw)
        if not Path(cfg.out).is_absolute():
            cfg.out = str(Path(path).resolve().parent / cfg.out)
        cfg.check()
        return cfg

    def check(self) -> None:
        from ..catalog import lookup

        known = set(list_models())
        for m in self.models:
            if m not in known and lookup("models", m) is None:
                raise ConfigError(f"unknown model '{m}' in the config; known: {', '.join(sorted(known))}")
        for i in self.interpreters:
            if i not in METHODS:
                raise ConfigError(f"unknown interpreter '{i}' in the config; known: {', '.join(METHODS)}")
        for s in self.selectors:
            try:
                get_selector(s)
            except ActstoreError as exc:
                raise ConfigError(f"{exc} (in the config)") from None
        for r in self.rates:
            if not 0 < r <= 1:
                raise ConfigError(f"rate {r} in the config is not in (0, 1]")
        for a in self.alphas:
            if not 0 <= a <= 1:
                raise ConfigError(f"alpha {a} in the config is not in [0, 1]")
        if isinstance(self.heatmaps, dict):
            unknown = set(self.heatmaps) - set(HEATMAP_DEFAULTS)
            if unknown:
                raise ConfigError(f"unknown heatmaps key(s) {sorted(unknown)}; allowed: {', '.join(HEATMAP_DEFAULTS)}")
        elif not isinstance(self.heatmaps, bool):
            raise ConfigError("heatmaps must be true, false or a mapping of "
                              f"{', '.join(HEATMAP_DEFAULTS)}")
        try:
            check_scheduler(self.scheduler)
        except ActstoreError as exc:
            raise ConfigError(f"{exc} (in the config)") from None
        if self.vebi_maps not in ("store", "hooks"):
            raise ConfigError(f"vebi_maps must be 'store' or 'hooks', not '{self.vebi_maps}'")


def _features_for(store: ActivationStore, method: str, targets: list[Coreset | None], params: dict[str, Any],
                  cat: Catalog, scheduler: str | None = None) -> list[Features]:
    """Features per target: from the catalog when already computed, else computed in groups that
    share their reads and are saved as each group ends, so an interrupted run loses one group at most.
    VEBI: one group (one pass over the store serves every target); ICE: one per selector run (its
    rates read each class's maps once); topic: one per target (nothing is shared)."""
    found: dict[int, Features] = {}
    groups: dict[Any, list[int]] = {}
    for i, t in enumerate(targets):
        name = cat.find("features", key=_expected_key(store, method, params, t))
        if name is not None and exists(cat.resolve(cat.get("features", name))):
            found[i] = Features.load(cat.resolve(cat.get("features", name)))
            continue
        group = ("all" if method == "vebi" else i if method == "topic" or t is None
                 else (t.method, t.seed, t.store_key))
        groups.setdefault(group, []).append(i)
    for todo in groups.values():
        subs = [i for i in todo if targets[i] is not None]
        full = [i for i in todo if targets[i] is None]
        made = interpret(store, method, coresets=[targets[i] for i in subs], full=bool(full), scheduler=scheduler,
                         **params)
        for i, f in zip(subs + full, made, strict=True):  # interpret returns the coresets, then the full data
            save_features(f, cat)
            found[i] = f
    return [found[i] for i in range(len(targets))]


def _expected_key(store: ActivationStore, method: str, params: dict[str, Any], target: Coreset | None) -> str:
    """The key of the Features a run would produce, so it can be found before computing."""
    from ..interpret.run import _PARAMS, recorded_params

    used = recorded_params(method, {**_PARAMS[method], **params})
    layer = None if method == "vebi" else store.layers[-1]
    return provenance_key({"method": method, "params": used, "store": store.key,
                           "coreset": None if target is None else target.key, "layer": layer})


def _vebi_unit_stats(model: str, labelled: list[tuple[str, Coreset | None]], feats: list[Features]
                     ) -> list[dict[str, Any]]:
    """Paper Fig. 3: units identified per layer (over all classes) and their intersection coverage
    with the full data's: |(class, unit) pairs found by both| / |pairs found on the full data|."""
    def pairs(f: Features) -> dict[str, set[tuple[int, int]]]:
        layers = f.arrays["unit_layer"]
        out: dict[str, set[tuple[int, int]]] = {}
        for c, j in zip(*np.nonzero(f.arrays["coef"] > 0), strict=True):
            out.setdefault(str(layers[j]), set()).add((int(c), int(j)))
        return out

    full = pairs(feats[0])
    rows = []
    for (label, cs), f in zip(labelled, feats, strict=True):
        mine = pairs(f)
        for layer in [*full, *(k for k in mine if k not in full)]:
            found, ref = mine.get(layer, set()), full.get(layer, set())
            rows.append({"model": model, "selector": label, "rate": 1.0 if cs is None else cs.rate,
                         "seed": 0 if cs is None else cs.seed, "layer": layer, "units": len(found),
                         "coverage": len(found & ref) / len(ref) if ref else float("nan")})
    return rows


def _vebi_baselines(full: Features, loaded: Any, val: ActivationStore, head: Any, A: np.ndarray,
                    unit_layer: str, c: int, images: list[Any], rng: np.random.Generator, every: bool
                    ) -> dict[str, tuple[float, float]]:
    """Paper §4.2 baselines next to VEBI, for class ``c``: the unmodified model, and as many random
    units switched off as VEBI found for the class, per layer (seeded). {label: (final, all layers)};
    ``A``: the class's maps of the head's layer. All layers is NaN unless ``every`` (vebi_all_layers)."""
    found = vebi_units_by_layer(full, c)
    width = dict(val.provenance["units"]["layers"])
    random_units = {name: rng.choice(width[name], size=len(ch), replace=False) for name, (ch, _) in found.items()}
    Z = A.copy()
    Z[..., random_units.get(unit_layer, [])] = 0.0
    return {"unmodified": (float((head.logits(A).argmax(1) == c).mean()),
                           hooked_accuracy(loaded, images, c) if every else float("nan")),
            "random-units": (float((head.logits(Z).argmax(1) == c).mean()),
                             hooked_accuracy(loaded, images, c, random_units) if every else float("nan"))}


def _write_heatmaps(path: Path, model: str, method: str, val: ActivationStore, loaded: Any, source: Any,
                    layer: str, unit_layer: str, labelled: list[tuple[str, Coreset | None]], feats: list[Features],
                    hm: dict[str, Any]) -> None:
    """Paper §4.7 for one model x interpreter: a few validation images of the first classes, each
    selector's interpretation at ρ = hm["rate"] (first seed), and the full data's in the last column.
    VEBI's maps are the class's units in the head's layer."""
    from ..report.heatmaps import heatmap_grid

    chosen: dict[str, Features] = {}
    for (label, cs), f in zip(labelled, feats, strict=True):
        if cs is not None and abs(cs.rate - float(hm["rate"])) < 1e-9 and label not in chosen:
            chosen[label] = f
    chosen["full data"] = feats[0]
    images: list[np.ndarray] = []
    row_labels: list[str] = []
    columns: dict[str, list[np.ndarray]] = {label: [] for label in chosen}
    for c in range(min(int(hm["classes"]), len(val.classes))):
        sl = val.class_rows(c)
        rows = np.arange(sl.start, min(sl.stop, sl.start + int(hm["per_class"])))
        if rows.size == 0:
            continue
        images += [x.numpy() for batch in store_images(val, loaded, rows, source=source) for x in batch]
        row_labels += [f"{val.classes[c]} #{int(val.sample_ids[r])}" for r in rows]
        A = np.asarray(val.array(f"layers/{layer}/maps").oindex[rows], np.float32)
        for label, f in chosen.items():
            if method == "vebi":
                units = vebi_units_by_layer(f, c).get(unit_layer)
                Z = A[..., units[0]] if units is not None else np.zeros((*A.shape[:3], 1), np.float32)
            else:
                Z = interpretation_maps(f, A, c)
            columns[label] += list(Z)
    if not images:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    png = heatmap_grid(images, columns, int(hm["top_k"]), f"{model} · {method}: top-{hm['top_k']} maps, "
                       f"ρ = {hm['rate']:g} (paper §4.7)", row_labels)
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(png)
    os.replace(tmp, path)


def run_experiment(cfg: ExperimentConfig, catalog: str | os.PathLike[str] | Catalog | None = None,
                   progress: bool = True) -> Path:
    """Run (or resume) the grid; returns the results CSV path."""
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stores: dict[str, dict[str, ActivationStore]] = {}
    for model in cfg.models:
        train = extract(model, cfg.train, units=True, catalog=cat, progress=progress).store
        val_layers = [load_model(model).default_layer]
        if "vebi" in cfg.interpreters and cfg.vebi_maps == "store":
            # every ReLU call of the VEBI units, as the train store recorded them (no second model build)
            val_layers += [n for n, _ in train.provenance["units"]["layers"] if n not in val_layers]
        val = extract(model, cfg.val, units=True, layers=val_layers, catalog=cat, progress=progress).store
        stores[model] = {"train": train, "val": val}

    coresets: dict[str, list[tuple[str, Coreset]]] = {m: [] for m in cfg.models}  # (selector label, coreset)
    for model in cfg.models:
        for method in cfg.selectors:
            for seed in cfg.seeds:
                for cs in select_many(stores[model]["train"], method, cfg.rates, seed=seed, scheduler=cfg.scheduler):
                    save_coreset(cs, cat)
                    for target in cfg.models:
                        transfers = cfg.transfer is True or (isinstance(cfg.transfer, list) and method in cfg.transfer)
                        if target == model or transfers:
                            label = method if target == model else f"{method}@{model}"
                            coresets[target].append((label, cs))

    path = out / "results.csv"
    expected = {f"{m}/{method}": [_expected_key(stores[m]["train"], method, cfg.params.get(method, {}), t)
                                  for t in [None, *[cs for _, cs in coresets[m]]]]
                for m in cfg.models for method in cfg.interpreters}
    results_key = provenance_key({"config": {k: v for k, v in cfg.__dict__.items() if k not in ("out", "scheduler")},
                                  "stores": {m: [s.key for s in v.values()] for m, v in stores.items()},
                                  "features": expected})
    done_before = out / "provenance.json"
    if path.exists() and done_before.exists() and json.loads(done_before.read_text()).get("key") == results_key:
        if progress:
            print(f"results are up to date (key {results_key}): nothing to do", file=sys.stderr, flush=True)
        return path

    rows: list[dict[str, Any]] = []
    unit_rows: list[dict[str, Any]] = []
    grid = sum(len(stores[m]["val"].classes) for m in cfg.models) * len(cfg.interpreters)
    with progress_bar(progress, grid, "evaluate", "classes") as advance:
        for model in cfg.models:
            train, val = stores[model]["train"], stores[model]["val"]
            loaded = store_model(val)
            loaded.module.to(resolve_device("auto"))  # heads and hooks run where the model is
            layer = val.layers[0]
            head = model_head(loaded, layer)
            unit_layer = layer_node(layer_names(loaded.module), layer)  # the ReLU call the head layer is
            images_of = functools.cache(lambda val=val, loaded=loaded: store_dataset(val, loaded))  # once, if needed
            for method in cfg.interpreters:
                targets: list[Coreset | None] = [None, *[cs for _, cs in coresets[model]]]
                advance(steps=0, text=f"{model} · {method}: fitting")
                feats = _features_for(train, method, targets, cfg.params.get(method, {}), cat, cfg.scheduler)
                full = feats[0]
                labelled = [("full", None), *coresets[model]]
                per_target: list[list[dict[str, Any]]] = [[] for _ in labelled]
                rng = np.random.default_rng(0)
                advance(steps=0, text=f"{model} · {method}: evaluating")
                for c in range(len(val.classes)):  # class by class: one class's maps in memory at a time
                    cache: UnitMaps = {}
                    maps = np.asarray(val.array(f"layers/{layer}/maps")[val.class_rows(c)], np.float32)
                    z_full = interpretation_maps(full, maps, c) if method != "vebi" else None
                    images: list[Any] = []
                    if method == "vebi":  # the model itself: "all layers" ablation, and maps the store lacks
                        needed: dict[str, np.ndarray] = {}  # only the units some interpretation uses
                        for f in feats:
                            for name, (ch, _) in vebi_units_by_layer(f, c).items():
                                needed[name] = np.union1d(needed.get(name, ch), ch)
                        cache.update(unit_maps(val, c, {k: v for k, v in needed.items() if k in val.layers}))
                        missing = {k: v for k, v in needed.items() if k not in val.layers}
                        if cfg.vebi_all_layers or missing:
                            rows_c = np.arange(val.class_rows(c).start, val.class_rows(c).stop)
                            images = list(store_images(val, loaded, rows_c, source=images_of()))
                        hooked = hooked_maps(loaded, images, missing) if missing else {}
                        cache.update({(name, c): (needed[name], m) for name, m in hooked.items()})
                    for t, ((label, cs), sub) in enumerate(zip(labelled, feats, strict=True)):
                        z = z_full if cs is None or method == "vebi" else interpretation_maps(sub, maps, c)
                        acc = class_accuracy(sub, val, c, head, layer, A=maps, z=z, unit_layer=unit_layer)
                        acc_all = float("nan")
                        if method == "vebi" and cfg.vebi_all_layers:
                            units = {name: ch for name, (ch, _) in vebi_units_by_layer(sub, c).items()}
                            acc_all = hooked_accuracy(loaded, images, c, units)
                        phi = class_phi(full, sub, val, c, cfg.alphas, layer, z_full, z, cache) if cs is not None \
                            else {"phi": {a: 0.0 for a in cfg.alphas}, "layers": 0}
                        for a in cfg.alphas:
                            per_target[t].append({
                                "model": model, "interpreter": method, "selector": label,
                                "source_model": label.split("@")[1] if "@" in label else model,
                                "rate": 1.0 if cs is None else cs.rate, "seed": 0 if cs is None else cs.seed,
                                "class": val.classes[c], "alpha": a, "phi": phi["phi"][a], "accuracy": acc,
                                "accuracy_all_layers": acc_all, "vebi_layers": phi["layers"], **_cost(sub),
                                "train_store": train.key, "val_store": val.key, "features": sub.key})
                    if method == "vebi":
                        for label, (acc, acc_all) in _vebi_baselines(full, loaded, val, head, maps, unit_layer, c, images,
                                                                     rng, cfg.vebi_all_layers).items():
                            rows += [{"model": model, "interpreter": "vebi", "selector": label, "source_model": model,
                                      "rate": 1.0, "seed": 0, "class": val.classes[c], "alpha": a, "phi": float("nan"),
                                      "accuracy": acc, "accuracy_all_layers": acc_all, "vebi_layers": 0,
                                      **_cost(None), "train_store": train.key, "val_store": val.key,
                                      "features": full.key} for a in cfg.alphas]
                    advance()
                rows += [r for target_rows in per_target for r in target_rows]
                if cfg.heatmaps is not False:
                    hm = {**HEATMAP_DEFAULTS, **(cfg.heatmaps if isinstance(cfg.heatmaps, dict) else {})}
                    _write_heatmaps(out / "heatmaps" / f"{model}.{method}.png", model, method, val, loaded,
                                    images_of(), layer, unit_layer, labelled, feats, hm)
                if method == "vebi":
                    unit_rows += _vebi_unit_stats(model, labelled, feats)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    if unit_rows:
        with open(out / "vebi_units.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(unit_rows[0]))
            writer.writeheader()
            writer.writerows(unit_rows)
    os.replace(tmp, path)
    (out / "provenance.json").write_text(json.dumps(
        {"key": results_key, "config": cfg.__dict__, "stores": {m: {k: {"key": s.key, "path": str(s.path)} for k, s in v.items()}
                                            for m, v in stores.items()}}, indent=1, default=str))
    return path


def summary_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The results CSV as dicts with numbers parsed."""
    with open(path) as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("model", "interpreter", "selector", "rate", "alpha", "phi", "accuracy")
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"no column(s) {', '.join(missing)}")
        rows = list(reader)
    for r in rows:
        for k in ("rate", "alpha", "phi", "accuracy", "accuracy_all_layers", *COST_COLUMNS):
            r[k] = float(r[k]) if r.get(k) not in (None, "", "nan") else float("nan")
    return rows
