"""Write a synthetic activation store of any size, straight through the store writer (no model).

For benchmarks and scale tests: class-structured, ReLU-sparse activations with the real layout,
ledger and provenance, generated block by block so memory stays flat however large the store.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..store.schema import SCHEMA_VERSION, LayerSpec, StoreSpec, choose_block_rows, provenance_key
from ..store.writer import StoreWriter

__all__ = ["write_synthetic_store"]


def _layout(classes: int, rows_per_class: int, channels: int, height: int, width: int, n_logits: int | None,
            dtype: str, model: str | None, unit_layers: list[int] | None, block_rows: int | None
            ) -> tuple[StoreSpec, dict[str, Any]]:
    """The store's spec, and the model part of its provenance (``model``: its default layer stands for the maps)."""
    layer_name = "synthetic"
    model_prov: dict[str, Any] = {"name": "synthetic", "builder": "none", "random_init": True}
    if model is not None:
        from .models import load_model

        loaded = load_model(model, "random", num_classes=n_logits or classes)
        layer_name = loaded.default_layer
        model_prov = loaded.provenance()
    n = classes * rows_per_class
    spec = StoreSpec(sample_ids=np.arange(n, dtype=np.int64),
                     labels=np.repeat(np.arange(classes, dtype=np.int32), rows_per_class),
                     class_names=[f"c{i}" for i in range(classes)], n_logits=n_logits or classes,
                     layers=[LayerSpec(layer_name, height, width, channels)], maps_dtype=dtype,
                     unit_layers=[(f"synthetic.relu_{i}", int(c)) for i, c in enumerate(unit_layers or [])])
    widest = max(np.dtype(dtype).itemsize * height * width * channels, 4 * spec.n_units)
    spec.block_rows = choose_block_rows(widest, n, block_rows)
    return spec, model_prov


def _provenance(spec: StoreSpec, model_prov: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    classes, n = len(spec.class_names), spec.n_rows
    rows_per_class = n // max(1, classes)
    layer = spec.layers[0]
    fingerprint = hashlib.sha256(f"synthetic-store:{classes}:{rows_per_class}:{content['synthetic'][6]}".encode()
                                 ).hexdigest()[:16]
    return {
        "key": provenance_key(content), "model": model_prov,
        "layers": {layer.name: list(layer.shape)}, "n_logits": spec.n_logits,
        "units": {"n_units": spec.n_units, "scope": "synthetic", "feature": "channel energy / layer energy",
                  "layers": [[u, c] for u, c in spec.unit_layers]} if spec.unit_layers else None,
        "preprocessing": {"synthetic": content["synthetic"]},
        "dataset": {"spec": f"synthetic-store:{classes}x{rows_per_class}", "name": "synthetic",
                    "fingerprint": fingerprint, "n_rows": n, "classes": classes},
        "dtype": content["dtype"], "batch_size": spec.block_rows, "versions": {},
    }


def _block(spec: StoreSpec, rows: slice, seed: int, block: int, means: np.ndarray, unit_means: np.ndarray,
           shift: float) -> dict[str, Any]:
    """One block's arrays: class pattern x noise through a shifted ReLU; logits favouring the class; energy shares."""
    rng = np.random.default_rng([seed, block])
    m, layer, k = rows.stop - rows.start, spec.layers[0], spec.n_logits
    labels = spec.labels[rows]
    noise = rng.standard_normal((m, *layer.shape), dtype=np.float32)
    maps = np.maximum(means[labels][:, None, None, :] * (0.3 * noise + 1.0) + noise - shift - 1.0, 0)
    logits = rng.standard_normal((m, k), dtype=np.float32)
    logits[np.arange(m), labels % k] += 3.0
    maps16 = maps.astype(spec.maps_dtype)
    energy = None
    if spec.unit_layers:
        energy = unit_means[labels] * rng.gamma(2.0, 0.5, size=(m, spec.n_units)).astype(np.float32)
        bounds = np.cumsum([0, *(c for _, c in spec.unit_layers)])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            energy[:, lo:hi] /= energy[:, lo:hi].sum(axis=1, keepdims=True)
    return {"logits": logits, "maps": {layer.name: maps16},
            "pooled": {layer.name: maps16.astype(np.float32).mean(axis=(1, 2))}, "energy": energy}


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
    model: str | None = None,
    unit_layers: list[int] | None = None,
) -> Path:
    """A finished store at ``path`` with one layer of (height, width, channels) maps.

    Each class has its own non-negative mean pattern; rows are that pattern plus noise, passed
    through a ReLU shifted so that about ``sparsity`` of the values are zero. ``model`` (a registered
    or torchvision model, random init) makes the store look extracted from that model: the layer is its
    default layer (give its shape), so its head (the topic model, accuracy) applies. ``unit_layers``
    (channel counts) adds VEBI unit features: per layer, energy shares that sum to 1, class-dependent.
    """
    spec, model_prov = _layout(classes, rows_per_class, channels, height, width, n_logits, dtype, model,
                               unit_layers, block_rows)
    content = {"schema_version": SCHEMA_VERSION, "synthetic": [classes, rows_per_class, channels, height, width,
                                                                sparsity, seed, model, unit_layers], "dtype": dtype}
    means = np.random.default_rng(seed).gamma(2.0, 1.0, size=(classes, channels)).astype(np.float32)
    unit_means = np.random.default_rng(seed + 2).gamma(1.0, 1.0, size=(classes, spec.n_units)).astype(np.float32)
    shift = float(np.quantile(np.random.default_rng(seed + 1).standard_normal(10_000), sparsity))
    with StoreWriter(path, spec, _provenance(spec, model_prov, content)) as writer:
        for block in writer.pending_blocks():
            writer.write_block(block, **_block(spec, writer.block_slice(block), seed, block, means, unit_means, shift))
        writer.finalize()
    return Path(path)
