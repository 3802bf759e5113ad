"""Model registry: torchvision classification builders by name, plus models other packages register.

Weights come from a local state-dict file, from torchvision's weights enum when its file is
already in the local torch cache (never a download), from a registered model's own trained
weights, or from random init (flagged in the provenance). Layer names are torchvision FX node
names (``get_graph_node_names``). Other models register themselves as plugins: a function that calls
:func:`register_model`, named in the ``actstore.models`` entry-point group of a package's metadata (the
embedded demo models are one: ``actstore.demo.models:register`` in this package's pyproject.toml).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import LayerError, ModelError, WeightsError

__all__ = ["LoadedModel", "ModelSpec", "register_model", "registered_models", "build_model", "load_model",
           "check_model", "list_models", "layer_names", "valid_layers", "layer_node", "file_sha256", "IMAGENET_MEAN",
           "IMAGENET_STD", "ENTRY_POINTS"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_INIT_SEED = 0
ENTRY_POINTS = "actstore.models"  # a plugin's entry point names a function that calls register_model


@dataclass(frozen=True)
class ModelSpec:
    """A model that is not a torchvision builder: how to build it and what its weights and inputs are."""

    name: str
    build: Callable[[int], nn.Module]  # num_classes -> an untrained module
    family: str  # "resnet", "vgg" or "other": where its head and VEBI's ReLU calls are
    input_size: int
    num_classes: int
    trained: Callable[[], Path] | None = None  # path of its own trained weights (``--weights trained``), made if needed
    is_trained: Callable[[], bool] | None = None  # whether ``trained`` would find them without making them
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


_REGISTERED: dict[str, ModelSpec] = {}
_PLUGINS_LOADED: list[bool] = []


def register_model(spec: ModelSpec) -> None:
    """Make ``spec.name`` a model every verb knows (``--model NAME``)."""
    _REGISTERED[spec.name] = spec


def registered_models() -> dict[str, ModelSpec]:
    """The registered (non-torchvision) models, the plugins' entry points loaded once."""
    if not _PLUGINS_LOADED:
        from importlib.metadata import entry_points

        _PLUGINS_LOADED.append(True)
        for ep in entry_points(group=ENTRY_POINTS):
            ep.load()()
    return dict(_REGISTERED)


@dataclass
class LoadedModel:
    """A built model in eval mode, with what the store's provenance needs to know about it."""

    name: str
    builder: str
    module: nn.Module
    family: str  # "resnet", "vgg" or "other"
    weights: str  # "random", a file path, an enum name, or "trained" (a registered model's own)
    weights_sha256: str | None
    num_classes: int
    input_size: int
    preprocessing: dict[str, Any] = field(default_factory=dict)
    transform: Any = None  # PIL -> tensor for imagefolder data; None when weights bring none

    @property
    def random_init(self) -> bool:
        return self.weights == "random"

    @property
    def relu_scope(self) -> nn.Module:
        """Where VEBI hooks ReLU calls: the whole ResNet; VGG's ``features`` only (ref. §1.1)."""
        return self.module.features if self.family == "vgg" else self.module  # type: ignore[return-value]

    @property
    def default_layer(self) -> str:
        """The last conv block: ``layer4`` (``layer3`` in demo-resnet); VGG's last ReLU in ``features``."""
        if self.family == "resnet":
            blocks = [n for n, _ in self.module.named_children() if n.startswith("layer") and n[5:].isdigit()]
            return max(blocks, key=lambda n: int(n[5:]))
        if self.family == "vgg":
            relus = [f"features.{i}" for i, m in enumerate(self.module.features) if isinstance(m, nn.ReLU)]
            return relus[-1]
        raise LayerError(f"model '{self.name}' has no default layer; pass --layer (see actstore info --model)")

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name, "builder": self.builder, "weights": self.weights,
                "weights_sha256": self.weights_sha256, "random_init": self.random_init,
                "num_classes": self.num_classes, "family": self.family, "input_size": self.input_size}


def list_models() -> list[str]:
    """Every model name ``load_model`` knows without a catalog: registered models and torchvision classifiers."""
    import torchvision

    return [*registered_models(), *torchvision.models.list_models(module=torchvision.models)]


def _family(builder: str) -> str:
    spec = registered_models().get(builder)
    if spec is not None:
        return spec.family
    if builder.startswith(("resnet", "resnext", "wide_resnet")):
        return "resnet"
    return "vgg" if builder.startswith("vgg") else "other"


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _state_sha256(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"weights file {path} is not a readable state dict ({first[:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict (name -> tensor)")
    return state


def _classes_in(state: dict[str, torch.Tensor]) -> int | None:
    last = [v for k, v in state.items() if k.endswith(".weight") and v.ndim == 2]
    return int(last[-1].shape[0]) if last else None


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str, name: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise WeightsError(f"weights {source} do not fit model '{name}': {detail}") from None


def build_model(builder: str, num_classes: int) -> nn.Module:
    """An untrained ``builder`` (a registered model or a torchvision builder) with ``num_classes`` outputs."""
    spec = registered_models().get(builder)
    if spec is not None:
        return spec.build(num_classes)
    import torchvision

    return torchvision.models.get_model(builder, weights=None, num_classes=num_classes)


def _resolve_name(name: str, weights: str | None, num_classes: int | None, catalog: Any
                  ) -> tuple[str, str | None, int | None]:
    """The builder, weights and class count ``name`` means: a catalog model (the given catalog, then the
    project's), else a built-in model; an unknown name is an error that says where it was looked up."""
    from ..catalog import resolve, searched

    found = resolve("models", name, catalog)
    entry = found.entry
    builder = entry["builder"] if entry is not None else name
    known = list_models()
    if builder not in known:
        import difflib

        close = difflib.get_close_matches(builder, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        builtin = f"built-in models: {', '.join(known)}"
        if entry is not None:
            raise ModelError(f"model '{name}' in {found.source} has builder '{builder}'{hint}, which is not one of "
                             f"the {builtin}")
        raise ModelError(f"unknown model '{name}'{hint}: not a model name in {searched(catalog)}, nor one of the "
                         f"{builtin}")
    if entry is None:
        return name, weights, num_classes
    return builder, weights or entry.get("weights"), num_classes or entry.get("num_classes")


def check_model(name: str, catalog: Any = None) -> None:
    """Raise :class:`ModelError` (saying where it looked) unless ``name`` is a catalog or built-in model."""
    _resolve_name(name, None, None, catalog)


@dataclass
class _Built:
    module: nn.Module
    weights: str
    sha: str | None
    num_classes: int
    transform: Any = None


def _random(builder: str, num_classes: int) -> _Built:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)  # reproducible, so a resumed extraction sees the same net
        module = build_model(builder, num_classes)
    return _Built(module, "random", _state_sha256(module), num_classes)


def _from_file(name: str, builder: str, path: Path, num_classes: int | None, default_classes: int,
               label: str | None = None) -> _Built:
    state = _read_state_dict(path)
    classes = num_classes or _classes_in(state) or default_classes
    module = build_model(builder, classes)
    _load_into(module, state, f"file {path}", name)
    return _Built(module, label or str(path.resolve()), file_sha256(path), classes)


def _from_enum(name: str, builder: str, weights: str) -> _Built:
    enum = _weights_enum(builder, weights)
    path = _cached_weights_file(enum, builder)
    state = _read_state_dict(path)
    classes = len(enum.meta["categories"])
    module = build_model(builder, classes)
    _load_into(module, state, f"{enum} ({path})", name)
    return _Built(module, str(enum), file_sha256(path), classes, enum.transforms())


def _weights(name: str, builder: str, weights: str | None, num_classes: int | None) -> _Built:
    """The module with ``weights``: random, a registered model's own, a state-dict file, or a torchvision enum."""
    spec = registered_models().get(builder)
    default_classes = spec.num_classes if spec is not None else 1000
    if spec is not None and weights in (None, "trained", "demo"):
        if spec.trained is None:
            raise WeightsError(f"model '{builder}' has no trained weights of its own; pass --weights FILE or random")
        return _from_file(name, builder, spec.trained(), num_classes, default_classes, label="trained")
    weights = weights or "DEFAULT"
    if weights == "random":
        return _random(builder, num_classes or default_classes)
    if Path(weights).suffix in (".pt", ".pth") or os.sep in weights:
        return _from_file(name, builder, Path(weights).expanduser(), num_classes, default_classes)
    if spec is not None:
        raise WeightsError(f"model '{builder}' takes weights 'trained', 'random' or a file, not '{weights}'")
    return _from_enum(name, builder, weights)


def load_model(name: str, weights: str | None = None, *, num_classes: int | None = None,
               catalog: Any = None) -> LoadedModel:
    """Build ``name`` (a catalog model, a registered model or a torchvision builder) with ``weights``.

    ``weights``: ``None`` (registered models: their trained weights; torchvision: the builder's DEFAULT
    enum from the local cache), ``"random"``, ``"trained"``, a state-dict file, or an enum name
    (``IMAGENET1K_V1``, ``ResNet18_Weights.IMAGENET1K_V1``).
    """
    builder, weights, num_classes = _resolve_name(name, weights, num_classes, catalog)
    spec = registered_models().get(builder)
    built = _weights(name, builder, weights, num_classes)
    built.module.eval()
    if built.transform is not None:
        transform, preprocessing = built.transform, {"transform": " ".join(repr(built.transform).split())}
    else:  # a weights file, trained or random weights bring no transforms: the standard ones for the input size
        from .datasets import make_transform

        transform, preprocessing = (make_transform(spec.input_size, spec.input_size, spec.mean, spec.std)
                                    if spec is not None else make_transform(256, 224, IMAGENET_MEAN, IMAGENET_STD))
    return LoadedModel(name=name, builder=builder, module=built.module, family=_family(builder),
                       weights=built.weights, weights_sha256=built.sha, num_classes=built.num_classes,
                       input_size=spec.input_size if spec is not None else 224, preprocessing=preprocessing,
                       transform=transform)


def _weights_enum(builder: str, weights: str) -> Any:
    import torchvision

    try:
        enum_cls = torchvision.models.get_model_weights(builder)
    except (ValueError, KeyError):
        raise WeightsError(f"torchvision has no pretrained weights for '{builder}'; pass --weights FILE") from None
    member = weights.split(".")[-1]
    try:
        return enum_cls[member] if member != "DEFAULT" else enum_cls.DEFAULT
    except KeyError:
        names = ", ".join(m.name for m in enum_cls)
        raise WeightsError(f"'{weights}' is not a weights file or a member of {enum_cls.__name__} "
                           f"({names}, DEFAULT); random init is --weights random") from None


def _cached_weights_file(enum: Any, builder: str) -> Path:
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
    if not path.is_file():
        raise WeightsError(
            f"pretrained weights {enum} for '{builder}' are not in the local torch cache ({path}); "
            f"actstore never downloads: copy the file there, or pass --weights FILE, or --weights random"
        )
    return path


def layer_names(module: nn.Module) -> list[str]:
    """The model's FX node names in eval mode (what ``--layer`` accepts), input excluded."""
    from torchvision.models.feature_extraction import get_graph_node_names

    _, eval_nodes = get_graph_node_names(module)
    return [n for n in eval_nodes if n != "x"]


def layer_node(names: list[str], layer: str) -> str:
    """The FX node a layer name means: itself, or a module's last node (``layer3`` -> ``layer3.1.relu_1``)."""
    return layer if layer in names else [n for n in names if n.startswith(layer + ".")][-1]


def valid_layers(module: nn.Module) -> list[str]:
    """Names ``--layer`` accepts: FX nodes, and modules (meaning the output of their last node)."""
    nodes = layer_names(module)
    prefixes = {n.rsplit(".", k)[0] for n in nodes for k in range(1, n.count(".") + 1)}
    return nodes + sorted(m for m, _ in module.named_modules() if m and m in prefixes and m not in nodes)
