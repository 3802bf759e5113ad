"""Stored maps to float32, fast: numpy widens float16 one element at a time (about 1 GB/s here), torch's
vectorised copy is about 10x faster, and a preallocated ``out`` spares the page faults of a fresh array."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_float32"]


def as_float32(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 array, written into ``out`` (same shape) when given."""
    if out is None:
        if x.dtype == np.float32 and x.flags.c_contiguous:
            return x
        out = np.empty(x.shape, np.float32)
    if x.dtype == np.float16:
        torch.from_numpy(out).copy_(torch.from_numpy(np.ascontiguousarray(x)))
    else:
        out[...] = x
    return out
