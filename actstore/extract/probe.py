"""One forward pass that returns logits, the asked layers' maps and VEBI unit features.

Layers are taken with torchvision's FX feature extractor (node names as in
``get_graph_node_names``). Unit features hook every ReLU *call* (ref. interpreters.md §1.1):
torchvision reuses one ``relu`` module per block, so the k-th call of a module is its own
layer, named like FX names it: ``layer1.0.relu``, ``layer1.0.relu_1``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import LayerError
from .models import LoadedModel, layer_names, layer_node, valid_layers

__all__ = ["Probe", "energy_share"]

_LOGITS = "__logits__"


def energy_share(a: torch.Tensor) -> torch.Tensor:
    """Each channel's share of the layer's energy: Σ_hw a² / Σ_chw a² (0 where the layer is all zero)."""
    e = a.detach().float().pow(2)
    e = e.sum(dim=tuple(range(2, e.ndim))) if e.ndim > 2 else e
    total = e.sum(dim=1, keepdim=True)
    return torch.where(total > 0, e / total.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(e))


class Probe(nn.Module):
    """Wraps a model: ``probe(x) -> (logits, {layer: NCHW maps}, energy (N, P) or None)``."""

    def __init__(self, loaded: LoadedModel, layers: list[str], units: bool) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        valid = valid_layers(loaded.module)
        bad = [layer for layer in layers if layer not in valid]
        if bad:
            raise LayerError(f"model '{loaded.name}' has no layer {', '.join(map(repr, bad))}; "
                             f"valid layers: {', '.join(valid)}")
        names = layer_names(loaded.module)
        output = names[-1]
        # a module name means its last node; two names for one node are computed once
        self.node_of = {layer: layer_node(names, layer) for layer in layers}
        nodes = {node: node for node in self.node_of.values() if node != output}
        nodes[output] = _LOGITS
        self.layers, self.output = list(layers), output
        self.fx = create_feature_extractor(loaded.module, return_nodes=nodes).eval()
        self.unit_layers: list[tuple[str, int]] = []
        self._energy: list[torch.Tensor] = []
        self._calls: dict[str, int] = {}
        self._hooks: list[Any] = []
        if units:
            scope = "features." if loaded.family == "vgg" else ""
            for name, module in self.fx.named_modules():
                if isinstance(module, nn.ReLU) and name.startswith(scope):
                    self._hooks.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            k = self._calls.get(name, 0)
            self._calls[name] = k + 1
            share = energy_share(output)
            self._energy.append(share)
            if self._recording:
                self.unit_layers.append((name if k == 0 else f"{name}_{k}", int(share.shape[1])))

        return hook

    _recording = False

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        self._energy, self._calls = [], {}
        out = self.fx(x)
        logits = out[_LOGITS]
        maps = {layer: (out[node] if node != self.output else logits) for layer, node in self.node_of.items()}
        energy = torch.cat(self._energy, dim=1) if self._hooks else None
        return logits, maps, energy

    def describe(self, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """Run once on ``x`` (one sample) to learn map shapes and the ReLU call table."""
        self.unit_layers, self._recording = [], True
        try:
            logits, maps, _ = self(x)
        finally:
            self._recording = False
        shapes = {}
        for layer, m in maps.items():
            if m.ndim != 4:
                raise LayerError(f"layer '{layer}' gives shape {tuple(m.shape[1:])}, not spatial maps "
                                 "(C, H, W); pick a convolutional layer (actstore info --model lists them)")
            shapes[layer] = (int(m.shape[2]), int(m.shape[3]), int(m.shape[1]))  # H, W, D
        shapes[_LOGITS] = (int(logits.shape[1]),)
        return shapes
