"""The rest of a network after an extracted layer: stored activations -> logits in one call.

ResNet: the last block's output goes through ``avgpool + fc``. VGG: a layer inside ``features``
goes through what remains of ``features`` (the ReLU and pools after it), then ``avgpool +
classifier``. Heads take channels-last maps, as the store holds them, and run in eval mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import LayerError
from .models import LoadedModel

__all__ = ["Head", "model_head"]


class Head(nn.Module):
    """``head(maps)`` with maps (N, H, W, D) channels-last (numpy or torch) -> logits (N, K)."""

    def __init__(self, rest: nn.Module, layer: str) -> None:
        super().__init__()
        self.rest = rest.eval()
        self.layer = layer
        for p in self.rest.parameters():
            p.requires_grad_(False)

    def forward(self, maps: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(maps, np.float32)) if isinstance(maps, np.ndarray) else maps
        return self.rest(x.float().permute(0, 3, 1, 2))

    @torch.inference_mode()
    def logits(self, maps: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits of many maps, in batches (float32 numpy)."""
        device = next(self.rest.parameters()).device
        out = [self(torch.as_tensor(np.asarray(maps[i:i + batch_size], np.float32)).to(device)).cpu().numpy()
               for i in range(0, len(maps), batch_size)]
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)


def model_head(loaded: LoadedModel, layer: str | None = None) -> Head:
    """The head of ``loaded`` after ``layer`` (default: its default layer)."""
    layer = layer or loaded.default_layer
    m = loaded.module
    if loaded.family == "resnet":
        if layer != loaded.default_layer:
            raise LayerError(f"a ResNet head exists after its last block ('{loaded.default_layer}'), "
                             f"not after '{layer}'")
        return Head(nn.Sequential(m.avgpool, nn.Flatten(1), m.fc), layer)
    if loaded.family == "vgg":
        parts = layer.split(".")
        if parts[0] != "features" or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise LayerError(f"a VGG head exists after 'features' or a 'features.N' layer, not after '{layer}'")
        start = len(m.features) if len(parts) == 1 else int(parts[1]) + 1
        if start > len(m.features):
            raise LayerError(f"'{layer}' is not a layer of features (0..{len(m.features) - 1})")
        rest = [*m.features[start:], m.avgpool, nn.Flatten(1), *m.classifier]
        return Head(nn.Sequential(*rest), layer)
    raise LayerError(f"no head is known for model family '{loaded.family}' ({loaded.name})")
