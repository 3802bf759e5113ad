"""What an experiment will do, decided before any of it is done: every artifact named by the key it
will have (stores by provenance, coresets and features by theirs), found in the catalog or to compute,
and the shapes the work depends on. The runner and ``experiment --estimate`` use the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..catalog import Catalog
from ..coresets.base import class_budget
from ..coresets.select import coreset_keys
from ..extract.extractor import ExtractPlan, find_reusable, plan_extraction
from ..extract.models import registered_models
from ..interpret.base import Interpreter, get_interpreter
from ..interpret.features import Features
from ..location import exists
from .config import ExperimentConfig

__all__ = ["GridPlan", "ModelPlan", "TargetPlan", "plan_grid", "fit_params", "FLOOR_SEED_OFFSET"]

FLOOR_SEED_OFFSET = 1  # the noise-floor fit's seed: the full data's, plus this


@dataclass
class ModelPlan:
    """One model's stores: their extraction plans, and where a finished one already is (None: to extract)."""

    model: str
    train: ExtractPlan
    val: ExtractPlan
    train_found: Any
    val_found: Any
    weights_ready: bool  # False: a registered model's own weights are not trained yet (keys are provisional)


@dataclass
class TargetPlan:
    """One fit of an interpreter: the full data (``coreset`` None) or a coreset, with the key it will have."""

    label: str
    coreset: str | None  # the coreset's key
    rate: float
    seed: int
    source: str  # the model whose store the coreset was selected on
    key: str = ""
    found: bool = False
    floor: bool = False  # the noise floor's second full-data fit


@dataclass
class GridPlan:
    cfg: ExperimentConfig
    models: dict[str, ModelPlan]
    selections: dict[tuple[str, str, int], list[str]] = field(default_factory=dict)  # (model, selector, seed): keys
    selections_found: dict[tuple[str, str, int], bool] = field(default_factory=dict)
    targets: dict[tuple[str, str], list[TargetPlan]] = field(default_factory=dict)  # (model, interpreter)

    def class_rows(self, model: str, split: str = "train") -> list[int]:
        """Rows per class of a model's store."""
        offsets = getattr(self.models[model], split).spec.class_offsets()
        return [int(b - a) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

    def labelled(self, model: str) -> list[TargetPlan]:
        """The model's targets in the results' order: the full data, its own selections, the transferred ones."""
        return _labelled(self, model)

    def target_rows(self, model: str, t: TargetPlan) -> list[int]:
        """Rows per class a target fits on (budgets by the selectors' formula)."""
        return [n if t.coreset is None else class_budget(n, t.rate) for n in self.class_rows(model)]


def fit_params(cfg: ExperimentConfig, interp: Interpreter, seed: int) -> dict[str, Any]:
    """The interpreter's checked parameters for a fit with ``seed`` (its ``random_state`` when it has one)."""
    given = dict(cfg.params.get(interp.name, {}))
    if interp.seeded:
        given["random_state"] = seed
    return interp.check(given)


def _model_plan(cfg: ExperimentConfig, model: str, cat: Catalog) -> ModelPlan:
    spec = registered_models().get(model) or registered_models().get(_builder(model, cat))
    ready = spec is None or spec.is_trained is None or spec.is_trained()
    weights = None if ready else "random"  # shapes only: training its weights is part of the run
    common = {"out": None, "units": True, "dtype": "float16", "block_rows": None, "transform": None,
              "preprocessing": None, "name": None, "weights": weights}
    train = plan_extraction(model, cfg.train, cat=cat, layers=None, **common)
    val_layers = [train.loaded.default_layer]
    if cfg.vebi_maps == "store" and any(get_interpreter(i).needs_unit_maps for i in cfg.interpreters):
        val_layers += [n for n, _ in train.spec.unit_layers if n not in val_layers]
    val = plan_extraction(model, cfg.val, cat=cat, layers=val_layers, **common)
    found = (find_reusable(train, cat), find_reusable(val, cat)) if ready else (None, None)
    return ModelPlan(model, train, val, *found, ready)


def _builder(model: str, cat: Catalog) -> str:
    from ..catalog import lookup

    entry = lookup("models", model, cat)
    return entry["builder"] if entry else model


def _coreset_found(cat: Catalog, key: str) -> bool:
    name = cat.find("coresets", key=key)
    return name is not None and exists(cat.resolve(cat.get("coresets", name)))


def _selections(plan: GridPlan, cat: Catalog) -> None:
    cfg = plan.cfg
    for model, mp in plan.models.items():
        layers = [s.name for s in mp.train.spec.layers]
        for method in cfg.selectors:
            for seed in cfg.seeds:
                keys = coreset_keys(mp.train.key, layers, method, cfg.rates, seed)
                plan.selections[(model, method, seed)] = keys
                plan.selections_found[(model, method, seed)] = mp.weights_ready and all(_coreset_found(cat, k)
                                                                                        for k in keys)


def _labelled(plan: GridPlan, model: str) -> list[TargetPlan]:
    """The full data, then every selector x seed x ρ of this model, then the ones transferred to it."""
    cfg = plan.cfg
    out = [TargetPlan("full", None, 1.0, cfg.seeds[0], model)]
    for source in cfg.models:
        for method in cfg.selectors:
            transfers = cfg.transfer is True or (isinstance(cfg.transfer, list) and method in cfg.transfer)
            if source != model and not transfers:
                continue
            label = method if source == model else f"{method}@{source}"
            for seed in cfg.seeds:
                keys = plan.selections[(source, method, seed)]
                out += [TargetPlan(label, k, r, seed, source) for k, r in zip(keys, cfg.rates, strict=True)]
    return out


def _features(plan: GridPlan, cat: Catalog) -> None:
    cfg = plan.cfg
    for model, mp in plan.models.items():
        labelled = _labelled(plan, model)
        layers = [s.name for s in mp.train.spec.layers]
        for method in cfg.interpreters:
            interp = get_interpreter(method)
            targets = [TargetPlan(**vars(t)) for t in labelled]
            if cfg.noise_floor and not interp.deterministic(mp.train.spec.layers[-1].channels,
                                                            fit_params(cfg, interp, cfg.seeds[0])):
                targets.append(TargetPlan("full", None, 1.0, cfg.seeds[0] + FLOOR_SEED_OFFSET, model, floor=True))
            layer = interp.features_layer(layers, None)
            for t in targets:
                params = interp.recorded(fit_params(cfg, interp, t.seed))
                t.key = Features.key_of(method, params, mp.train.key, t.coreset, layer)
                name = cat.find("features", key=t.key) if mp.weights_ready else None
                t.found = name is not None and exists(cat.resolve(cat.get("features", name)))
            plan.targets[(model, method)] = targets


def plan_grid(cfg: ExperimentConfig, cat: Catalog) -> GridPlan:
    """Every store, coreset and features artifact the run needs, by key, found or to compute."""
    plan = GridPlan(cfg, {m: _model_plan(cfg, m, cat) for m in cfg.models})
    _selections(plan, cat)
    _features(plan, cat)
    return plan
