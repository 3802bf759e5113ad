"""VEBI on the model itself: forward hooks on every ReLU *call*, over a store's own images.

Two uses (ref. interpreters.md §1.3): the "all layers" ablation, which zeroes a class's relevant
units in every hooked layer and so needs a full forward pass from pixels; and the maps of layers
that a validation store does not hold. ReLU calls are named as the extractor names them
(``layer1.0.relu``, ``layer1.0.relu_1`` for the second call of a shared module), so unit names in
a Features artifact address the same call here. The images are the store's rows, loaded from the
dataset its provenance names; a changed dataset (fingerprint) or transform is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DatasetError, LayerError
from .datasets import DatasetSource
from .models import LoadedModel
from ..store.reader import ActivationStore

__all__ = ["relu_calls", "store_dataset", "store_images", "hooked_accuracy", "hooked_maps"]


def relu_calls(loaded: LoadedModel) -> dict[str, nn.Module]:
    """The ReLU modules VEBI hooks (ResNet: all; VGG: ``features`` only), by module name."""
    scope = "features." if loaded.family == "vgg" else ""
    return {name: m for name, m in loaded.module.named_modules()
            if isinstance(m, nn.ReLU) and name.startswith(scope)}


@contextmanager
def _hooks(loaded: LoadedModel, zero: dict[str, np.ndarray], capture: dict[str, torch.Tensor],
           out: dict[str, list[torch.Tensor]]) -> Iterator[dict[str, int]]:
    """Hooks that, per ReLU call name, zero the channels in ``zero`` and keep the channels in
    ``capture`` (channels-last, in ``out``). Yields the per-module call counter, reset per batch."""
    modules = relu_calls(loaded)
    called: dict[str, int] = {}
    known: set[str] = set()

    def hook_for(name: str) -> Any:
        def hook(_m: nn.Module, _inp: Any, output: torch.Tensor) -> torch.Tensor | None:
            k = called.get(name, 0)
            called[name] = k + 1
            call = name if k == 0 else f"{name}_{k}"
            known.add(call)
            if call in zero:
                mask = torch.ones(output.shape[1], dtype=output.dtype, device=output.device)
                mask[torch.as_tensor(zero[call], dtype=torch.long)] = 0
                output = output * mask.view(1, -1, *([1] * (output.ndim - 2)))  # a new tensor: safe with inplace
            if call in capture:
                kept = output[:, capture[call].to(output.device)]
                out.setdefault(call, []).append(kept.permute(0, 2, 3, 1).float().cpu())
            return output if call in zero else None

        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in modules.items()]
    try:
        yield called
    finally:
        for h in handles:
            h.remove()
    missing = (set(zero) | set(capture)) - known
    if known and missing:
        raise LayerError(f"model '{loaded.name}' has no ReLU call {', '.join(sorted(missing))} "
                         f"(its calls: {', '.join(sorted(known)[:6])}, ...)")


def store_dataset(store: ActivationStore, loaded: LoadedModel) -> DatasetSource:
    """The dataset ``store`` was extracted from, resolved and checked: same fingerprint, and the
    weights' own transform (forward hooks cannot replay a custom one). Resolve it once per store."""
    from .datasets import resolve_dataset

    prov = store.provenance
    source = resolve_dataset(prov["dataset"]["spec"])
    if source.fingerprint != prov["dataset"]["fingerprint"]:
        raise DatasetError(f"{store.path}: the images of '{prov['dataset']['spec']}' changed since extraction "
                           f"(fingerprint {source.fingerprint} != {prov['dataset']['fingerprint']})")
    if source.needs_transform:
        source.transform, source.preprocessing = loaded.transform, loaded.preprocessing
        if source.preprocessing != prov["preprocessing"]:
            raise DatasetError(f"{store.path} was extracted with a custom transform "
                               f"({prov['preprocessing']}); forward hooks can only replay the weights' own")
    return source


def store_images(store: ActivationStore, loaded: LoadedModel, rows: np.ndarray, batch_size: int = 128,
                 source: DatasetSource | None = None) -> Iterator[torch.Tensor]:
    """The preprocessed images of ``rows`` of ``store``, in batches; ``source``: :func:`store_dataset`'s
    result when already at hand (resolving an image folder scans it)."""
    source = source or store_dataset(store, loaded)
    ids = store.sample_ids[rows]
    for i in range(0, len(ids), batch_size):
        yield torch.stack([source.load(int(j)) for j in ids[i:i + batch_size]])


@torch.inference_mode()
def hooked_accuracy(loaded: LoadedModel, images: list[torch.Tensor], c: int,
                    zero: dict[str, np.ndarray] | None = None) -> float:
    """Top-1 accuracy on class ``c``'s ``images`` with the channels in ``zero`` (per ReLU call) switched off."""
    device = next(loaded.module.parameters()).device
    hits = total = 0
    with _hooks(loaded, zero or {}, {}, {}) as called:
        for x in images:
            called.clear()
            hits += int((loaded.module(x.to(device)).argmax(1) == c).sum())
            total += len(x)
    return hits / total if total else float("nan")


@torch.inference_mode()
def hooked_maps(loaded: LoadedModel, images: list[torch.Tensor], channels: dict[str, np.ndarray]
                ) -> dict[str, np.ndarray]:
    """The maps (n, H, W, len(channels)) float32 of the given channels of each ReLU call over ``images``."""
    device = next(loaded.module.parameters()).device
    keep = {name: torch.as_tensor(np.asarray(ch, np.int64)) for name, ch in channels.items()}
    out: dict[str, list[torch.Tensor]] = {}
    with _hooks(loaded, {}, keep, out) as called:
        for x in images:
            called.clear()
            loaded.module(x.to(device))
    return {name: torch.cat(out[name]).numpy() for name in channels if name in out}
