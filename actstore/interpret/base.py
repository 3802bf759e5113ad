"""The interpreter contract and its registry.

An interpreter is a scikit-learn estimator (array level) plus a small :class:`Interpreter` protocol
(store level) registered by name: how it fits on a store's rows (all of them or a coreset's), which
hyperparameters make up its features' key, its interpretation maps Z, and what goes through the
model's head for the accuracy evaluation. The experiment, the evaluation and ``interpret()`` ask
the registry; none of them knows an interpreter by name. A new interpreter is one module that
subclasses :class:`Interpreter` and decorates it with :func:`register` (see DESIGN notes in the README).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, ClassVar

import numpy as np

from ..coresets.artifact import Coreset
from ..errors import InterpretError, ParameterError
from ..params import check_params
from ..store.convert import as_float32
from ..store.reader import ActivationStore
from .features import Features

__all__ = ["Interpreter", "Target", "EvalContext", "ClassData", "Shapes", "register", "get_interpreter", "list_interpreters",
           "make_features", "no_progress", "read_ahead", "rows_of", "spatial_maps", "store_model", "store_model_head"]

Target = Coreset | None  # None: the full data


def no_progress(*_: Any, **__: Any) -> None:
    """A progress callback that reports nowhere."""
Maps = dict[str, np.ndarray]  # interpretation maps Z per layer, (n, H, W, d) each, most relevant channels first


@dataclass
class EvalContext:
    """One model's validation side, shared by every interpreter's evaluation of that model."""

    val: ActivationStore
    loaded: Any  # extract.models.LoadedModel, on the device the heads and hooks run on
    head: Any  # extract.heads.Head after ``layer``
    layer: str  # the layer whose stored maps the head takes
    unit_layer: str  # the ReLU call that ``layer`` is (``layer3`` is the call ``layer3.1.relu_1``)
    dataset: Callable[[], Any]  # the validation images' source, resolved once, when first needed
    all_layers: bool = True  # whether interpreters that can run the model itself over images should


@dataclass
class Shapes:
    """What a cost estimate knows of a store before it exists: rows per class, the layer (H, W, D), the units."""

    class_rows: list[int]
    height: int
    width: int
    channels: int
    units: int
    n_rows: int


@dataclass
class ClassData:
    """What the evaluation of class ``c`` reads once for every target: the class's maps of the head's
    layer, and whatever else an interpreter needs (``extra``)."""

    c: int
    A: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


class Interpreter:
    """Store-level protocol of one interpreter. Subclass, set the class attributes, implement ``fit``,
    ``interpretation`` and ``head_input``; the rest has defaults that suit single-layer interpreters."""

    name: ClassVar[str]
    estimator: ClassVar[type]
    options: ClassVar[dict[str, tuple[list[Any], Any]]] = {}  # how R is computed, not what it is: constraints, default
    excluded: ClassVar[tuple[str, ...]] = ()  # estimator parameters the store level supplies itself
    unrecorded: ClassVar[tuple[str, ...]] = ()  # estimator parameters that do not change R
    spatial: ClassVar[bool] = True  # fitted on one layer's spatial maps (its features record the layer)
    needs_unit_maps: ClassVar[bool] = False  # evaluated on the maps of every ReLU call its units live in
    label: ClassVar[str] = ""  # how reports name it
    accuracy_protocol: ClassVar[str] = ""  # what its accuracy measures, in words, for reports
    cost_params: ClassVar[tuple[str, ...]] = ()  # parameters ``measure_costs`` depends on (none: it measures nothing)

    # -- parameters -----------------------------------------------------------------------------------
    def estimator_defaults(self) -> dict[str, Any]:
        sig = inspect.signature(self.estimator.__init__)
        return {k: p.default for k, p in sig.parameters.items() if k != "self" and k not in self.excluded}

    def defaults(self) -> dict[str, Any]:
        """Every parameter ``interpret`` takes for this method, with its default (one place: the estimator's
        signature, and the store-level options)."""
        return {**self.estimator_defaults(), **{k: default for k, (_, default) in self.options.items()}}

    def constraints(self) -> dict[str, list[Any]]:
        own = {k: v for k, v in self.estimator._parameter_constraints.items() if k not in self.excluded}
        return {**own, **{k: c for k, (c, _) in self.options.items()}}

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` coerced, validated against the declared constraints and merged over the defaults."""
        merged = {**self.defaults(), **check_params(self.constraints(), params, f"'{self.name}'")}
        self.check_combination(merged)
        return merged

    def check_combination(self, params: dict[str, Any]) -> None:
        """Constraints between parameters (each is already valid on its own)."""

    def recorded(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters that define R: what a Features artifact records and its key hashes."""
        return {k: params[k] for k in self.estimator_defaults() if k not in self.unrecorded}

    def estimator_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: params[k] for k in self.estimator_defaults()}

    @property
    def seeded(self) -> bool:
        """Whether the estimator takes a ``random_state`` (the experiment's seed goes there)."""
        return "random_state" in self.estimator_defaults()

    def deterministic(self, channels: int, params: dict[str, Any]) -> bool:
        """Whether two fits that differ only in ``random_state`` give the same R (no noise floor to measure),
        on a layer of ``channels`` channels."""
        return not self.seeded

    def features_layer(self, layers: list[str], layer: str | None) -> str | None:
        """The layer a fit on a store with ``layers`` records (its last one by default; None if not spatial)."""
        return (layer or layers[-1]) if self.spatial else None

    def group(self, target: Target) -> Hashable:
        """Targets with the same group are fitted in one call (they share its reads); one per target by default."""
        return id(target)

    # -- fitting --------------------------------------------------------------------------------------
    def work(self, store: ActivationStore, targets: list[Target], params: dict[str, Any]) -> tuple[int, str]:
        """(how many units of progress a fit of ``targets`` reports, what a unit is)."""
        return len(targets), "fits"

    def fit(self, store: ActivationStore, targets: list[Target], *, layer: str | None, scheduler: str | None,
            params: dict[str, Any], progress: Callable[..., None] = no_progress) -> list[Features]:
        """One Features per target, in order; ``params`` already checked and merged (:meth:`check`); ``progress()``
        once per unit of :meth:`work` done."""
        raise NotImplementedError

    # -- evaluation -----------------------------------------------------------------------------------
    def class_data(self, ctx: EvalContext, c: int, feats: list[Features]) -> ClassData:
        """Class ``c``'s validation data for every target's evaluation: by default its stored maps."""
        return ClassData(c, as_float32(ctx.val.maps_array(ctx.layer)[ctx.val.class_rows(c)]))

    def interpretation(self, features: Features, data: ClassData) -> Maps:
        """Z of class ``data.c`` under ``features``, per layer."""
        raise NotImplementedError

    def pairs(self, z_full: Maps, z_sub: Maps) -> list[tuple[np.ndarray, np.ndarray]]:
        """The (Z, Z') pairs Φ averages over: every layer both hold maps of."""
        return [(z_full[k], z_sub[k]) for k in z_full if k in z_sub and z_full[k].shape[-1] and z_sub[k].shape[-1]]

    def head_input(self, features: Features, data: ClassData, z: Maps, ctx: EvalContext) -> np.ndarray:
        """What the head classifies for the accuracy evaluation (paper §4.2), channels-last maps."""
        raise NotImplementedError

    def accuracy_all_layers(self, features: Features, data: ClassData, ctx: EvalContext) -> float:
        """Accuracy with the interpretation applied in every layer (VEBI); NaN where it means nothing."""
        return float("nan")

    def baselines(self, full: Features, data: ClassData, ctx: EvalContext, rng: np.random.Generator
                  ) -> dict[str, tuple[float, float]]:
        """Reference accuracies next to the method's own (label -> (accuracy, all layers)); none by default."""
        return {}

    def heatmap_maps(self, features: Features, data: ClassData, z: Maps) -> np.ndarray:
        """The maps (n, h, w, d) the §4.7 heatmaps score and overlay: the head layer's Z by default."""
        return next(iter(z.values()))

    def units(self, features: Features, c: int) -> int:
        """How many units or components class ``c``'s interpretation has."""
        raise NotImplementedError

    def fit_record(self, features: Features, c: int) -> tuple[int, bool]:
        """(iterations, converged) of the fit behind class ``c``'s interpretation."""
        raise NotImplementedError

    # -- cost, for ``experiment --estimate`` (per-unit costs from actstore.evaluate.calibrate) ---------------
    def fit_cost(self, shapes: Shapes, targets: list[list[int]], params: dict[str, Any], costs: dict[str, float]
                 ) -> tuple[float, float, float]:
        """(seconds, peak MB, disk MB) of fitting ``targets`` (each: its rows per class); unknown: zeros."""
        return 0.0, 0.0, 0.0

    def z_width(self, shapes: Shapes, params: dict[str, Any]) -> int:
        """Channels of the interpretation maps Z that Φ compares (the layer's by default)."""
        return shapes.channels

    def measure_costs(self, head: Any, shape: tuple[int, ...], n_classes: int, params: dict[str, Any]
                      ) -> dict[str, float]:
        """Per-unit costs of this interpreter's own work on maps of ``shape`` (H, W, D) through ``head``, with
        ``params`` (only ``cost_params`` matter), measured on this machine for ``fit_cost``; none by default."""
        return {}

    def eval_cost(self, shapes: Shapes, val_rows: list[int], n_targets: int, params: dict[str, Any],
                  costs: dict[str, float], all_layers: bool) -> float:
        """Seconds this interpreter adds to the evaluation of every class for ``n_targets`` targets (Φ and the
        head are the evaluation's own); none by default."""
        return 0.0

    def tables(self, model: str, labelled: list[tuple[str, Target]], feats: list[Features]
               ) -> dict[str, list[dict[str, Any]]]:
        """Extra result tables (name -> rows) an interpreter reports; none by default."""
        return {}


_REGISTRY: dict[str, Interpreter] = {}
_BUILTIN = ("actstore.interpret.ice_store", "actstore.interpret.vebi_store", "actstore.interpret.topic_store")
ENTRY_POINTS = "actstore.interpreters"  # third-party interpreters register through this entry-point group


def register(cls: type[Interpreter]) -> type[Interpreter]:
    """Class decorator: register an :class:`Interpreter` under its ``name``."""
    _REGISTRY[cls.name] = cls()
    return cls


_LOADED: list[bool] = []


def _load() -> None:
    """Import the built-in interpreters and those other packages declare (once)."""
    if _LOADED:
        return
    for module in _BUILTIN:
        import_module(module)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINTS):
        ep.load()
    _LOADED.append(True)


def list_interpreters() -> dict[str, Interpreter]:
    """Every registered interpreter by name."""
    _load()
    return dict(_REGISTRY)


def get_interpreter(name: str) -> Interpreter:
    known = list_interpreters()
    if name not in known:
        raise ParameterError(f"unknown interpretation method '{name}'; known: {', '.join(known)}")
    return known[name]


def make_features(store: ActivationStore, interp: Interpreter, params: dict[str, Any], target: Target,
                  layer: str | None, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Features:
    """A Features artifact of ``interp`` fitted on ``store`` (all rows, or ``target``'s)."""
    return Features(method=interp.name, params=interp.recorded(params), arrays=arrays, store_key=store.key,
                    store_path=str(store.path), fingerprint=store.fingerprint,
                    coreset=None if target is None else target.key, layer=layer,
                    meta={**meta, "coreset_rate": None if target is None else target.rate,
                          "coreset_method": None if target is None else target.method})


def rows_of(store: ActivationStore, target: Target, c: int) -> np.ndarray:
    """The store rows of class ``c`` that ``target`` selects (all of them for the full data), sorted."""
    if target is None:
        sl = store.class_rows(c)
        return np.arange(sl.start, sl.stop)
    return target.class_rows(store, c)


def spatial_maps(store: ActivationStore, layer: str | None, who: str) -> tuple[str, Any]:
    """(layer, its maps array): the store's last layer by default; an error unless (N, H, W, D)."""
    layer = layer or store.layers[-1]
    if layer not in store.layers:
        raise InterpretError(f"{store.path}: no layer '{layer}'; this store has {', '.join(store.layers)}")
    arr = store.maps_array(layer)
    if arr.ndim != 4:
        raise InterpretError(f"{who} needs spatial maps (N, H, W, D); '{layer}' has shape {arr.shape}")
    return layer, arr


def read_ahead(arrays: list[Any], step: int, n: int, first: int = 0) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yield (start, [array[start:min(n, start+step)] for each]) for start from ``first`` up to ``n``,
    sequentially, reading one block ahead on a thread (:func:`actstore.scheduler.ahead`)."""
    from ..scheduler import ahead

    return ahead((start, [np.asarray(a[start:min(n, start + step)]) for a in arrays])
                 for start in range(first, n, step))


def store_model(store: ActivationStore) -> Any:
    """The model that made ``store``, rebuilt from its provenance; refused if its weights changed."""
    from ..extract.models import load_model

    prov = store.provenance["model"]
    loaded = load_model(prov["builder"], prov.get("weights"), num_classes=prov.get("num_classes"))
    if prov.get("weights_sha256") and loaded.weights_sha256 != prov["weights_sha256"]:
        raise InterpretError(f"{store.path}: the weights of '{prov['name']}' changed since extraction "
                             f"(sha256 {loaded.weights_sha256} != {prov['weights_sha256']}); re-extract the store")
    return loaded


def store_model_head(store: ActivationStore, layer: str) -> Any:
    """The frozen head of the model that made ``store``, rebuilt from its provenance (weights checked)."""
    from ..extract.heads import model_head

    return model_head(store_model(store), layer)
