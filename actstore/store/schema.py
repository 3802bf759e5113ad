"""The activation store's layout: array paths, dtypes, chunking and codecs (see DESIGN.md).

Every per-row data array is chunked along the sample axis only, with the same ``block_rows`` rows per
chunk, so one ledger block is exactly one chunk of every per-row array and has a single writer.

Schema versions (``schema_version`` in the provenance):

1. the first layout: dimensions ``row``/``height``/``width``; ``units/table/layer`` a string array.
2. every array holds numbers, so every zarr v3 reader reads it (tensorstore has no string type):
   ``units/table/layer`` is an int32 code into the names in its ``names`` attribute. Dimensions are
   named ``sample``, ``y``, ``x``, ``channel``, ``unit``, ``logit``, and each group with per-sample data
   holds its own coordinates (:mod:`actstore.store.coords`), so xarray labels it. Consolidated metadata
   is written once, when the store is finished.

:func:`actstore.open_store` reads both; the xarray entry points (:mod:`actstore.store.labelled`)
need version 2.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import StoreSchemaError

__all__ = [
    "SCHEMA_VERSION",
    "OLDEST_READABLE",
    "DIMS",
    "sample_groups",
    "check_schema",
    "StoreSpec",
    "LayerSpec",
    "provenance_key",
    "choose_block_rows",
    "codecs_for",
]

SCHEMA_VERSION = 2
OLDEST_READABLE = 1  # the oldest layout open_store still reads
# dimension names, by axis: what xarray (and any reader of zarr v3 ``dimension_names``) labels the axes with
DIMS = {"ids": ("sample",), "logits": ("sample", "logit"), "maps": ("sample", "y", "x", "channel"),
        "pooled": ("sample", "channel"), "energy": ("sample", "unit"), "unit": ("unit",),
        "class_offsets": ("class_edge",)}
TARGET_CHUNK_BYTES = 8 * 2**20  # ~8 MB of the widest per-row array; DESIGN asks for 1-64 MB


@dataclass(frozen=True)
class LayerSpec:
    """One extracted layer: spatial maps (H, W, D) channels-last, and their pooled (D,) vector."""

    name: str
    height: int
    width: int
    channels: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


@dataclass
class StoreSpec:
    """Everything needed to lay out a store before any activation is computed."""

    sample_ids: np.ndarray  # (N,) int64, rows in class-contiguous order
    labels: np.ndarray  # (N,) int32
    class_names: list[str]
    n_logits: int
    layers: list[LayerSpec]
    unit_layers: list[tuple[str, int]] = field(default_factory=list)  # (relu call name, channels)
    maps_dtype: str = "float16"
    block_rows: int = 64
    inputs: np.ndarray | None = None  # (n_blocks,) uint64 digest of each block's inputs (see store.rebase)

    @property
    def n_rows(self) -> int:
        return int(self.sample_ids.shape[0])

    @property
    def n_blocks(self) -> int:
        return -(-self.n_rows // self.block_rows)

    @property
    def n_units(self) -> int:
        return sum(c for _, c in self.unit_layers)

    def class_offsets(self) -> np.ndarray:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def row_bytes(self) -> int:
        """Uncompressed bytes one row takes across all arrays."""
        item = np.dtype(self.maps_dtype).itemsize
        total = 8 + 4 + 4 * self.n_logits + 4 * self.n_units
        for layer in self.layers:
            total += item * layer.height * layer.width * layer.channels + 4 * layer.channels
        return total


def choose_block_rows(spec_row_bytes: int, n_rows: int, requested: int | None = None) -> int:
    """Rows per chunk: ~``TARGET_CHUNK_BYTES`` of the widest array, at least 16, at most 4096."""
    if requested is not None:
        return max(1, int(requested))
    rows = TARGET_CHUNK_BYTES // max(1, spec_row_bytes)
    return int(np.clip(rows, 16, 4096))


def codecs_for(dtype: str) -> dict[str, Any]:
    """Compression for an array of ``dtype``.

    Blosc-zstd with bit-shuffle reads ~2.7x faster than zarr's default zstd on float16 ReLU maps
    at a slightly lower ratio (benchmarks/bench_extract.py records the figures); crc32c makes a
    corrupted chunk fail loudly instead of decoding to wrong numbers.
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    shuffle = "bitshuffle" if np.dtype(dtype).itemsize <= 2 else "shuffle"
    return {
        "compressors": [BloscCodec(cname="zstd", clevel=1, shuffle=shuffle), Crc32cCodec()],
    }


def provenance_key(fields: dict[str, Any]) -> str:
    """A short content hash of what determines a store's numbers (not where or when it was made)."""
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sample_groups(layers: list[str], units: bool) -> list[str]:
    """The groups holding per-sample data (each carries its own ``sample`` and ``label`` coordinates)."""
    return ["samples", *[f"layers/{name}" for name in layers], *(["units"] if units else [])]


def check_schema(attrs: dict[str, Any], where: str, oldest: int = OLDEST_READABLE, need: str = "") -> int:
    """The store's schema version, if this reader takes it (``oldest``..SCHEMA_VERSION); else a one-line
    :class:`StoreSchemaError` naming the version and the fix (``need``: why an older one is not enough)."""
    version = attrs.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StoreSchemaError(f"{where}: the store records no valid schema version ({version!r}); "
                               "re-extract it with this actstore (actstore extract ... --overwrite)")
    if version > SCHEMA_VERSION:
        reads = f"versions {oldest}-{SCHEMA_VERSION}" if oldest < SCHEMA_VERSION else f"version {SCHEMA_VERSION}"
        raise StoreSchemaError(f"{where}: store schema version {version} was written by a newer actstore (this "
                               f"one reads {reads}); upgrade actstore to read it")
    if version < oldest:
        why = f" ({need})" if need else ""
        raise StoreSchemaError(f"{where}: store schema version {version} is older than version {oldest}{why}; "
                               "re-extract it with this actstore (actstore extract ... --overwrite)")
    return version
