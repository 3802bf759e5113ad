"""The experiment config: one typed schema (pydantic, strict), checked before anything is extracted.

Types are checked by the schema (``rates: 0.1`` is not a list, ``transfer: "yes"`` is not a bool),
names and ranges by :meth:`ExperimentConfig.check` (models through the catalog, interpreters and
selectors through their registries, every interpreter's ``params`` against its declared parameters).
"""

from __future__ import annotations

import os
from dataclasses import asdict, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

from ..coresets.base import PAPER_RATES
from ..errors import ActstoreError, ConfigError
from ..yamlio import load_yaml, one_line

__all__ = ["ExperimentConfig", "HeatmapConfig"]

_STRICT = ConfigDict(strict=True, extra="forbid")


@dataclass(config=_STRICT)
class HeatmapConfig:
    """Paper §4.7 grids: ``classes`` first classes, ``per_class`` images each, the ``top_k`` maps, at ρ = ``rate``."""

    classes: int = 4
    per_class: int = 1
    top_k: int = 3
    rate: float = 0.1


@dataclass(config=_STRICT)
class ExperimentConfig:
    """The grid models x interpreters x selectors x ρ x seeds, and how it is evaluated (README: Experiments)."""

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
    vebi_maps: Literal["store", "hooks"] = "store"  # the val store holds every ReLU layer, or forward hooks
    vebi_all_layers: bool = True  # the "all layers" ablation: one forward pass per target and class
    noise_floor: bool = True  # one extra full-data fit per stochastic interpreter, with another seed
    heatmaps: bool | HeatmapConfig = True
    scheduler: str | None = None  # Dask scheduler of selection, ICE and VEBI (see actstore.scheduler)
    out: str = "results"

    @classmethod
    def load(cls, path: str | os.PathLike[str], catalog: Any = None) -> ExperimentConfig:
        """Read, type-check and check a YAML config; ``out`` is taken relative to the config's folder."""
        try:
            raw = load_yaml(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such experiment config") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({one_line(exc)})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: an experiment config is a YAML mapping")
        cfg = cls.from_dict(raw, str(path))
        if not Path(cfg.out).is_absolute():
            cfg.out = str(Path(path).resolve().parent / cfg.out)
        cfg.check(catalog)
        return cfg

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "the config") -> ExperimentConfig:
        """The typed config of a mapping; every type error named with its key."""
        raw = dict(raw)
        if "models" not in raw:
            raise ConfigError(f"{where}: 'models' is required")
        try:
            if isinstance(raw.get("heatmaps"), dict):
                try:
                    raw["heatmaps"] = HeatmapConfig(**raw["heatmaps"])
                except ValidationError as exc:
                    raise ConfigError(f"{where}: {_describe(exc, 'heatmaps.')}") from None
            return cls(**raw)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_describe(exc)}") from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def heatmap_settings(self) -> HeatmapConfig | None:
        if self.heatmaps is False:
            return None
        return self.heatmaps if isinstance(self.heatmaps, HeatmapConfig) else HeatmapConfig()

    def check(self, catalog: Any = None) -> None:
        """Names and ranges: every model, interpreter, selector and parameter known and valid."""
        from ..scheduler import check_scheduler

        for name, values in (("models", self.models), ("interpreters", self.interpreters),
                             ("selectors", self.selectors), ("rates", self.rates), ("seeds", self.seeds),
                             ("alphas", self.alphas)):
            if not values:
                raise ConfigError(f"'{name}' is empty: the grid would have nothing to run")
        self._check_models(catalog)
        self._check_methods()
        if any(not 0 < r <= 1 for r in self.rates):
            raise ConfigError(f"rate {next(r for r in self.rates if not 0 < r <= 1)} in the config is not in (0, 1]")
        if any(not 0 <= a <= 1 for a in self.alphas):
            raise ConfigError(f"alpha {next(a for a in self.alphas if not 0 <= a <= 1)} in the config is not in [0, 1]")
        try:
            check_scheduler(self.scheduler)
        except ActstoreError as exc:
            raise ConfigError(f"{exc} (in the config)") from None

    def _check_models(self, catalog: Any) -> None:
        from ..errors import ModelError
        from ..extract.models import check_model

        for m in self.models:
            try:
                check_model(m, catalog)
            except ModelError as exc:
                raise ConfigError(f"{exc} (in the config)") from None

    def _check_methods(self) -> None:
        from ..coresets.base import get_selector
        from ..interpret.base import list_interpreters

        interpreters = list_interpreters()
        for i in [*self.interpreters, *self.params]:
            if i not in interpreters:
                raise ConfigError(f"unknown interpreter '{i}' in the config; known: {', '.join(interpreters)}")
        for s in self.selectors:
            try:
                get_selector(s)
            except ActstoreError as exc:
                raise ConfigError(f"{exc} (in the config)") from None
        if isinstance(self.transfer, list) and set(self.transfer) - set(self.selectors):
            raise ConfigError(f"transfer names selectors the grid does not run: {sorted(set(self.transfer) - set(self.selectors))}")
        for method, params in self.params.items():
            try:
                interpreters[method].check(params)
            except ActstoreError as exc:
                raise ConfigError(f"params.{method}: {exc}") from None


def _describe(exc: ValidationError, prefix: str = "") -> str:
    """A pydantic error as one line: each failing key, what it needs, what it got."""
    needs: dict[str, list[str]] = {}
    got: dict[str, Any] = {}
    for err in exc.errors():
        loc = prefix + ".".join(str(p) for p in err["loc"] if not str(p)[:1].isupper() and p not in
                                ("bool", "list[str]", "str", "none", "literal['store','hooks']"))
        msg = err["msg"].lower().removeprefix("input should be ")
        if err["type"] == "unexpected_keyword_argument":
            owner = HeatmapConfig if prefix else ExperimentConfig
            msg = f"not a key of the config (allowed: {', '.join(owner.__dataclass_fields__)})"
        needs.setdefault(loc, []).append(msg)
        got[loc] = err["input"]
    return "; ".join(f"'{loc}' must be {' or '.join(dict.fromkeys(m))}, got {got[loc]!r}" if not
                     m[0].startswith("not a key") else f"'{loc}' is {m[0]}" for loc, m in needs.items())
