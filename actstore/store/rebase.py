"""Keep the finished blocks of an interrupted extraction whose dataset changed meanwhile.

The documented recovery from a corrupt image is "fix or remove the file and rerun". Either changes
the dataset's fingerprint and with it the store's key, so the partial store would be "other
provenance". But every block records a digest of its inputs (``progress/inputs``: the sample ids,
labels and what each sample's file is: name, size, mtime), and the provenance records a
``method_key`` hashing everything else that determines the numbers (model, weights, layers,
preprocessing, dtype). When the method is the same, a finished block whose input digest is unchanged
holds exactly the numbers a fresh run would write at that position: it is kept; every other block
is marked not done and recomputed. A crash while rebasing leaves the layout marked incomplete, and
the next run starts that store afresh (it never trusts a half-rebased ledger).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import zarr

from .coords import write_coordinates
from .digests import DIGESTS, NONFINITE
from .schema import StoreSpec

__all__ = ["INPUTS", "block_input_digests", "can_rebase", "rebase"]

INPUTS = "progress/inputs"


def block_input_digests(item_keys: list[str], spec: StoreSpec) -> np.ndarray:
    """(n_blocks,) uint64: a digest of each block's rows (sample id, label, and what the sample is)."""
    out = np.zeros(spec.n_blocks, np.uint64)
    ids, labels, b = spec.sample_ids, spec.labels, spec.block_rows
    for block in range(spec.n_blocks):
        h = hashlib.blake2b(digest_size=8)
        for row in range(block * b, min((block + 1) * b, spec.n_rows)):
            h.update(f"{int(ids[row])}\t{int(labels[row])}\t{item_keys[int(ids[row])]}\n".encode())
        out[block] = int.from_bytes(h.digest(), "little")
    return out


def can_rebase(attrs: dict[str, Any], provenance: dict[str, Any], spec: StoreSpec, group: zarr.Group) -> bool:
    """Same method (model, weights, layers, preprocessing, dtype), same blocks and classes, inputs recorded."""
    return (spec.inputs is not None and attrs.get("layout_complete") is True
            and attrs.get("method_key") is not None and attrs.get("method_key") == provenance.get("method_key")
            and attrs.get("block_rows") == spec.block_rows and attrs.get("classes") == spec.class_names
            and INPUTS in group and DIGESTS in group and NONFINITE in group)


def rebase(group: zarr.Group, spec: StoreSpec, attrs: dict[str, Any], recorded: dict[tuple[str, int], int]
           ) -> tuple[int, int]:
    """Relayout the partial store ``group`` for ``spec``, keeping the finished blocks whose inputs did not
    change; ``attrs`` are the new attributes (layout complete). Returns (blocks kept, blocks that were done)."""
    assert spec.inputs is not None
    old = dict(group.attrs["actstore"])
    done = np.asarray(group["progress/done"][:], dtype=bool)
    old_inputs = np.asarray(group[INPUTS][:], dtype=np.uint64)
    nb, m = spec.n_blocks, min(spec.n_blocks, done.size)
    keep = np.zeros(nb, dtype=bool)
    keep[:m] = done[:m] & (old_inputs[:m] == spec.inputs[:m])
    group.attrs["actstore"] = {**old, "layout_complete": False}  # from here on, a crash starts afresh
    n = spec.n_rows
    for name, node in group.members(max_depth=None):
        if isinstance(node, zarr.Array) and (name.startswith(("layers/", "units/energy")) or name in
                                             ("samples/ids", "samples/labels", "samples/logits")):
            node.resize((n, *node.shape[1:]))
    every_chunk = {"write_empty_chunks": True}  # not stored in the metadata: zero chunks would be skipped
    group["samples/ids"].with_config(every_chunk)[:] = spec.sample_ids
    group["samples/labels"].with_config(every_chunk)[:] = spec.labels
    group["samples/class_offsets"].with_config(every_chunk)[:] = spec.class_offsets()
    write_coordinates(group, spec)  # each group's copies of the ids and labels (schema 2)
    group["progress/done"].resize((nb,))
    group["progress/done"][:] = keep
    for table in (DIGESTS, NONFINITE):
        group[table].resize((nb, group[table].shape[1]))
    columns = list(group[DIGESTS].attrs["arrays"])
    group[DIGESTS][:, :2] = np.array([[recorded.pop((c, i)) for c in columns[:2]] for i in range(nb)], np.uint32)
    group[INPUTS].resize((nb,))
    group[INPUTS][:] = spec.inputs
    group.attrs["actstore"] = {**attrs, "batch_size": old.get("batch_size", attrs.get("batch_size"))}
    return int(keep.sum()), int(done.sum())
