"""Resumable, single-writer creation of an activation store.

A store is built in ``PATH.partial`` and renamed to ``PATH`` only when every ledger block is
written, so ``PATH`` is never half-written. Progress lives in the ``progress/done`` ledger, set
for a block only after all of its arrays are on disk; a killed run resumes from the ledger and
produces the same arrays as an uninterrupted one.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import OutputNotWritableError, StoreExistsError, StoreIncompleteError
from .lock import WriterLock
from .schema import SCHEMA_VERSION, StoreSpec, codecs_for

__all__ = ["StoreWriter", "partial_path"]

_NO_EMPTY_SKIP = {"write_empty_chunks": True}  # every done block has a chunk file: verify can count them


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class StoreWriter:
    """Create or resume the store at ``path``. Use as a context manager; call :meth:`finalize`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        spec: StoreSpec,
        provenance: dict[str, Any],
        *,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.spec = spec
        self.provenance = provenance
        self.key = provenance["key"]
        self.overwrite = overwrite
        self.resumed_blocks = 0
        self._lock: WriterLock | None = None
        self._group: zarr.Group | None = None

    # -- opening -----------------------------------------------------------------
    def __enter__(self) -> StoreWriter:
        self._make_partial_dir()
        self._lock = WriterLock(self.partial, f"store {self.path}").acquire()
        try:
            self._open_or_create()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()

    def check_writable(self) -> None:
        """Fail early, before any work, when the output location cannot be written."""
        self._make_partial_dir()

    def _make_partial_dir(self) -> None:
        try:
            self.partial.mkdir(parents=True, exist_ok=True)
            probe = self.partial / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise OutputNotWritableError(
                    f"cannot write the store at {self.path}: {exc.strerror}; choose a writable --out"
                ) from None
            raise

    def _open_or_create(self) -> None:
        meta = self.partial / "zarr.json"
        if meta.exists():
            group = zarr.open_group(str(self.partial), mode="r+")
            attrs = dict(group.attrs.get("actstore", {}))
            if attrs.get("key") == self.key and attrs.get("layout_complete"):
                self._group = group
                self.resumed_blocks = int(self.done().sum())
                return
            if attrs.get("key") != self.key and not self.overwrite:
                raise StoreExistsError(
                    f"{self.partial} holds an unfinished extraction with other provenance "
                    f"(key {attrs.get('key')} != {self.key}); pass --overwrite to discard it"
                )
            self._clear_partial()
        self._group = self._create()

    def _clear_partial(self) -> None:
        for child in self.partial.iterdir():
            if child.name == ".lock":
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()

    def _create(self) -> zarr.Group:
        spec = self.spec
        n, b = spec.n_rows, spec.block_rows
        attrs = {**self.provenance, "schema_version": SCHEMA_VERSION, "status": "incomplete",
                 "layout_complete": False, "block_rows": b, "classes": spec.class_names}
        group = zarr.open_group(str(self.partial), mode="w", attributes={"actstore": attrs})

        def array(path: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...],
                  dims: tuple[str, ...]) -> zarr.Array:
            codecs = codecs_for(dtype) if dtype is not str else {}
            return group.create_array(path, shape=shape, dtype=dtype, chunks=chunks, dimension_names=dims,
                                      config=_NO_EMPTY_SKIP, **codecs)

        array("samples/ids", (n,), "int64", (b,), ("row",))[:] = spec.sample_ids
        array("samples/labels", (n,), "int32", (b,), ("row",))[:] = spec.labels
        offsets = spec.class_offsets()
        array("samples/class_offsets", offsets.shape, "int64", offsets.shape, ("class_edge",))[:] = offsets
        array("samples/logits", (n, spec.n_logits), "float32", (b, spec.n_logits), ("row", "logit"))
        for layer in spec.layers:
            array(f"layers/{layer.name}/maps", (n, *layer.shape), spec.maps_dtype, (b, *layer.shape),
                  ("row", "height", "width", "channel"))
            array(f"layers/{layer.name}/pooled", (n, layer.channels), "float32", (b, layer.channels),
                  ("row", "channel"))
        if spec.unit_layers:
            p = spec.n_units
            array("units/energy", (n, p), "float32", (b, p), ("row", "unit"))
            names = [name for name, c in spec.unit_layers for _ in range(c)]
            channels = np.concatenate([np.arange(c) for _, c in spec.unit_layers]).astype(np.int32)
            array("units/table/layer", (p,), str, (p,), ("unit",))[:] = np.array(names)
            array("units/table/channel", (p,), "int32", (p,), ("unit",))[:] = channels
        group.create_array("progress/done", shape=(spec.n_blocks,), dtype="bool", chunks=(1,),
                           fill_value=False, dimension_names=("block",), config=_NO_EMPTY_SKIP)
        group.attrs["actstore"] = {**attrs, "layout_complete": True}
        return group

    # -- writing -----------------------------------------------------------------
    @property
    def group(self) -> zarr.Group:
        assert self._group is not None, "use StoreWriter as a context manager"
        return self._group

    def done(self) -> np.ndarray:
        """The ledger: True for each block whose arrays are all written."""
        return np.asarray(self.group["progress/done"][:], dtype=bool)

    def pending_blocks(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.done())]

    def block_slice(self, block: int) -> slice:
        start = block * self.spec.block_rows
        return slice(start, min(start + self.spec.block_rows, self.spec.n_rows))

    def write_block(
        self,
        block: int,
        *,
        logits: np.ndarray,
        maps: dict[str, np.ndarray],
        pooled: dict[str, np.ndarray],
        energy: np.ndarray | None = None,
    ) -> None:
        """Write one block's rows of every array, then mark it done in the ledger."""
        rows = self.block_slice(block)
        g = self.group
        g["samples/logits"][rows] = logits
        for layer in self.spec.layers:
            g[f"layers/{layer.name}/maps"][rows] = maps[layer.name]
            g[f"layers/{layer.name}/pooled"][rows] = pooled[layer.name]
        if self.spec.unit_layers:
            assert energy is not None, "this store holds unit features: pass energy"
            g["units/energy"][rows] = energy
        g["progress/done"][block] = True

    def finalize(self, extra: dict[str, Any] | None = None) -> Path:
        """Mark complete and move ``PATH.partial`` to ``PATH`` (replacing an old store only now)."""
        missing = self.pending_blocks()
        if missing:
            raise StoreIncompleteError(f"cannot finalize {self.path}: {len(missing)} blocks not written; "
                                       "rerun the same command to write them")
        attrs = dict(self.group.attrs["actstore"])
        attrs.update(extra or {}, status="complete")
        self.group.attrs["actstore"] = attrs
        for stray in self.partial.rglob("*.partial"):  # temp files of writes killed mid-way
            stray.unlink()
        old = self.path.with_name(self.path.name + ".replaced")
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.partial, self.path)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        (self.path / ".lock").unlink(missing_ok=True)
        if old.exists():
            shutil.rmtree(old)
        return self.path
