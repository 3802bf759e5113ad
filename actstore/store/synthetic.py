"""Write a synthetic activation store of any size, straight through the store writer (no model).

For benchmarks and scale tests: class-structured, ReLU-sparse activations with the real layout,
ledger and provenance, generated block by block so memory stays flat however large the store.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .schema import SCHEMA_VERSION, LayerSpec, StoreSpec, choose_block_rows, provenance_key
from .writer import StoreWriter

__all__ = ["write_synthetic_store"]


def write_synthetic_store(
    path: str | os.PathLike[str],
    *,
    classes: int,
    rows_per_class: int,
    channels: int = 512,
    height: int = 1,
    width: int = 1,
    sparsity: float = 0.5,
    n_logits: int | None = None,
    seed: int = 0,
    block_rows: int | None = None,
    dtype: str = "float16",
) -> Path:
    """A finished store at ``path`` with one layer ``synthetic`` of (height, width, channels) maps.

    Each class has its own non-negative mean pattern; rows are that pattern plus noise, passed
    through a ReLU shifted so that about ``sparsity`` of the values are zero.
    """
    n = classes * rows_per_class
    labels = np.repeat(np.arange(classes, dtype=np.int32), rows_per_class)
    layer = LayerSpec("synthetic", height, width, channels)
    k = n_logits or classes
    spec = StoreSpec(sample_ids=np.arange(n, dtype=np.int64), labels=labels,
                     class_names=[f"c{i}" for i in range(classes)], n_logits=k, layers=[layer], maps_dtype=dtype)
    spec.block_rows = choose_block_rows(np.dtype(dtype).itemsize * height * width * channels, n, block_rows)
    fingerprint = hashlib.sha256(f"synthetic-store:{classes}:{rows_per_class}:{seed}".encode()).hexdigest()[:16]
    content = {"schema_version": SCHEMA_VERSION, "synthetic": [classes, rows_per_class, channels, height, width,
                                                                sparsity, seed], "dtype": dtype}
    provenance = {
        "key": provenance_key(content), "model": {"name": "synthetic", "builder": "none", "random_init": True},
        "layers": {layer.name: list(layer.shape)}, "n_logits": k, "units": None,
        "preprocessing": {"synthetic": content["synthetic"]},
        "dataset": {"spec": f"synthetic-store:{classes}x{rows_per_class}", "name": "synthetic",
                    "fingerprint": fingerprint, "n_rows": n, "classes": classes},
        "dtype": dtype, "batch_size": spec.block_rows, "versions": {},
    }
    means = np.random.default_rng(seed).gamma(2.0, 1.0, size=(classes, channels)).astype(np.float32)
    shift = float(np.quantile(np.random.default_rng(seed + 1).standard_normal(10_000), sparsity))
    with StoreWriter(path, spec, provenance) as writer:
        for block in writer.pending_blocks():
            rows = writer.block_slice(block)
            rng = np.random.default_rng([seed, block])
            m = rows.stop - rows.start
            noise = rng.standard_normal((m, height, width, channels), dtype=np.float32)
            maps = np.maximum(means[labels[rows]][:, None, None, :] * (0.3 * noise + 1.0) + noise - shift - 1.0, 0)
            logits = rng.standard_normal((m, k), dtype=np.float32)
            logits[np.arange(m), labels[rows] % k] += 3.0
            maps16 = maps.astype(dtype)
            writer.write_block(block, logits=logits, maps={layer.name: maps16},
                               pooled={layer.name: maps16.astype(np.float32).mean(axis=(1, 2))})
        writer.finalize()
    return Path(path)
