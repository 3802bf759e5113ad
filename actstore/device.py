"""Where torch work runs: ``auto`` is CUDA when torch sees a GPU, else the CPU; host arrays go to a
GPU through pinned memory with non-blocking copies."""

from __future__ import annotations

import numpy as np
import torch

from .errors import ActstoreError

__all__ = ["resolve_device", "to_device"]


def resolve_device(device: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; asking for CUDA without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ActstoreError(f"device '{device}' asked for, but torch sees no CUDA device; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ActstoreError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N") from None


def to_device(array: np.ndarray, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``array`` as a tensor on ``device``: a pinned host copy and a non-blocking transfer for CUDA."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    if dtype is not None:
        t = t.to(dtype)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t
