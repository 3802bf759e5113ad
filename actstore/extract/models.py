"""Model registry: torchvision classification builders by name, plus the demo models.

Weights come from a local state-dict file, from torchvision's weights enum when its file is
already in the local torch cache (never a download), or from random init (flagged in the
provenance). Layer names are torchvision FX node names (``get_graph_node_names``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import LayerError, ModelError, WeightsError

__all__ = ["LoadedModel", "load_model", "list_models", "layer_names", "valid_layers", "layer_node", "file_sha256",
           "DEMO_MODELS", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEMO_MODELS = ("demo-resnet", "demo-vgg")
RANDOM_INIT_SEED = 0


@dataclass
class LoadedModel:
    """A built model in eval mode, with what the store's provenance needs to know about it."""

    name: str
    builder: str
    module: nn.Module
    family: str  # "resnet", "vgg" or "other"
    weights: str  # "random", a file path, an enum name, or "demo"
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
    """Every model name ``load_model`` knows without a catalog: demo models and torchvision classifiers."""
    import torchvision

    return [*DEMO_MODELS, *torchvision.models.list_models(module=torchvision.models)]


def _family(builder: str) -> str:
    if builder == "demo-resnet" or builder.startswith(("resnet", "resnext", "wide_resnet")):
        return "resnet"
    if builder == "demo-vgg" or builder.startswith("vgg"):
        return "vgg"
    return "other"


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


def _build(builder: str, num_classes: int) -> nn.Module:
    if builder == "demo-resnet":
        from ..demo.models import demo_resnet

        return demo_resnet(num_classes)
    if builder == "demo-vgg":
        from ..demo.models import demo_vgg

        return demo_vgg(num_classes)
    import torchvision

    return torchvision.models.get_model(builder, weights=None, num_classes=num_classes)


def _resolve_name(name: str, weights: str | None, num_classes: int | None, catalog: Any
                  ) -> tuple[str, str | None, int | None]:
    from ..catalog import lookup

    entry = lookup("models", name, catalog)
    if entry is not None:
        return entry["builder"], weights or entry.get("weights"), num_classes or entry.get("num_classes")
    return name, weights, num_classes


def load_model(
    name: str,
    weights: str | None = None,
    *,
    num_classes: int | None = None,
    catalog: Any = None,
) -> LoadedModel:
    """Build ``name`` (a catalog model, a demo model or a torchvision builder) with ``weights``.

    ``weights``: ``None`` (demo models: their trained weights; torchvision: the builder's DEFAULT
    enum from the local cache), ``"random"``, a state-dict file, or an enum name
    (``IMAGENET1K_V1``, ``ResNet18_Weights.IMAGENET1K_V1``).
    """
    builder, weights, num_classes = _resolve_name(name, weights, num_classes, catalog)
    known = list_models()
    if builder not in known:
        import difflib

        close = difflib.get_close_matches(builder, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown model '{name}'{hint} Known: {', '.join(known)}")
    family = _family(builder)
    is_demo = builder in DEMO_MODELS
    weights = weights or ("demo" if is_demo else "DEFAULT")
    input_size = 32 if is_demo else 224
    preprocessing: dict[str, Any] = {}
    transform = None
    sha: str | None = None

    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)  # reproducible, so a resumed extraction sees the same net
            module = _build(builder, num_classes or (10 if is_demo else 1000))
        sha = _state_sha256(module)
    elif weights == "demo" or Path(weights).suffix in (".pt", ".pth") or os.sep in weights:
        if weights == "demo":
            if not is_demo:
                raise WeightsError(f"weights 'demo' exist only for {', '.join(DEMO_MODELS)}")
            from ..demo.train import demo_weights

            path = demo_weights(builder)
        else:
            path = Path(weights).expanduser()
        state = _read_state_dict(path)
        num_classes = num_classes or _classes_in(state) or (10 if is_demo else 1000)
        module = _build(builder, num_classes)
        _load_into(module, state, f"file {path}", name)
        sha = file_sha256(path)
        weights = "demo" if weights == "demo" else str(path.resolve())
    else:
        if is_demo:
            raise WeightsError(f"demo models take weights 'demo', 'random' or a file, not '{weights}'")
        enum = _weights_enum(builder, weights)
        path = _cached_weights_file(enum, builder)
        state = _read_state_dict(path)
        module = _build(builder, len(enum.meta["categories"]))
        _load_into(module, state, f"{enum} ({path})", name)
        sha = file_sha256(path)
        num_classes = len(enum.meta["categories"])
        transform = enum.transforms()
        weights = str(enum)
    if transform is not None:
        preprocessing = {"transform": " ".join(repr(transform).split())}
    else:  # a weights file or random init brings no transforms: the standard ones for the input size
        from .datasets import DIGITS_MEAN, DIGITS_STD, make_transform

        transform, preprocessing = (make_transform(32, 32, (DIGITS_MEAN,) * 3, (DIGITS_STD,) * 3) if is_demo
                                    else make_transform(256, 224, IMAGENET_MEAN, IMAGENET_STD))
    module.eval()
    n_out = num_classes if num_classes is not None else 1000
    return LoadedModel(name=name, builder=builder, module=module, family=family, weights=weights,
                       weights_sha256=sha, num_classes=n_out, input_size=input_size,
                       preprocessing=preprocessing, transform=transform)


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
