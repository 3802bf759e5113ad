"""Resumable, single-writer creation of an activation store.

A store is built in ``PATH.partial`` and renamed to ``PATH`` only when every ledger block is
written, so ``PATH`` is never half-written. Progress lives in the ``progress/done`` ledger, set
for a block only after all of its arrays and their digests are on disk; a killed run resumes from
the ledger and produces the same arrays as an uninterrupted one. The writer lock is ``PATH.lock``
(see :mod:`actstore.store.lock`). Only actstore's own stores and partials are ever cleared or
replaced (:mod:`actstore.ownership`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..atomic import os_error
from ..errors import (ActstoreError, NonFiniteError, OutputNotWritableError, StoreExistsError,
                      StoreIncompleteError)
from ..ownership import check_partial, require_store, root_attrs
from .consolidated import consolidate
from .coords import coordinates_attr, label_attrs, write_coordinates
from .digests import DIGESTS, NONFINITE, block_arrays, recording_store
from .lock import WriterLock
from .rebase import INPUTS, can_rebase, rebase
from .schema import DIMS, SCHEMA_VERSION, StoreSpec, codecs_for

__all__ = ["StoreWriter", "partial_path"]

_NO_EMPTY_SKIP = {"write_empty_chunks": True}  # every done block has a chunk file: verify can count them
_LEDGER_CHUNK = 1024  # blocks per chunk of the digest and non-finite tables (readers load them whole)
_COMMENT = ("an actstore activation store: open it with xarray.open_datatree(PATH, engine='zarr'), or one group with "
            "xarray.open_zarr(PATH, group='layers/<layer>' | 'samples' | 'units'); actstore.open_datatree and "
            "actstore.open_dataset also check its schema version and add class and layer names")


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class StoreWriter:
    """Create or resume the store at ``path``. Use as a context manager; call :meth:`finalize`."""

    def __init__(self, path: str | os.PathLike[str], spec: StoreSpec, provenance: dict[str, Any], *,
                 overwrite: bool = False, allow_nonfinite: bool = False) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.spec = spec
        self.provenance = provenance
        self.key = provenance["key"]
        self.overwrite = overwrite
        self.allow_nonfinite = allow_nonfinite
        self.resumed_blocks = 0
        self.rebased: tuple[int, int] | None = None  # (blocks kept, blocks that were done) when the dataset changed
        self.columns = block_arrays([s.name for s in spec.layers], bool(spec.unit_layers))
        self._lock: WriterLock | None = None
        self._group: zarr.Group | None = None
        self._recorder: Any = None

    # -- opening -----------------------------------------------------------------
    def lock(self) -> StoreWriter:
        """Take the store's writer lock (once): refused while another process writes this store."""
        if self._lock is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputNotWritableError(f"cannot write the store at {self.path}: {exc.strerror}; "
                                             "choose a writable --out") from None
            self._lock = WriterLock(self.path, f"the store at {self.path}", fix="choose a writable --out").acquire()
        return self

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def check_writable(self) -> None:
        """Fail early, before any work, when the output location cannot be written (takes the lock)."""
        self.lock()

    def __enter__(self) -> StoreWriter:
        self.lock()
        try:
            self._open_or_create()
        except OSError as exc:
            self.release()
            if isinstance(exc, ActstoreError):
                raise
            raise os_error(exc, self.partial, "the store") from None
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _open_group(self, mode: str, **kwargs: Any) -> zarr.Group:
        from zarr.storage import LocalStore

        self._recorder = recording_store(LocalStore(self.partial))
        # never the consolidated copy: a partial store's metadata changes (resize, attributes) until it is finished
        return zarr.open_group(store=self._recorder, mode=mode, use_consolidated=False, **kwargs)

    def _open_or_create(self) -> None:
        check_partial(self.partial)  # never clears what is not an actstore extraction
        attrs = root_attrs(self.partial) or {}
        if attrs.get("key") == self.key and attrs.get("layout_complete") and _has_ledger_tables(self.partial):
            self._group = self._open_group("r+")
            self.resumed_blocks = int(self.done().sum())
            return
        if attrs and attrs.get("key") != self.key and not self.overwrite and self._try_rebase(attrs):
            return
        if attrs and attrs.get("key") != self.key and not self.overwrite:
            raise StoreExistsError(
                f"{self.partial} holds an unfinished extraction with other provenance "
                f"(key {attrs.get('key')} != {self.key}); pass --overwrite to discard it")
        self._group = self._create()

    def _try_rebase(self, attrs: dict[str, Any]) -> bool:
        """Same method, changed dataset (a fixed or removed image): keep the still-valid blocks."""
        group = self._open_group("r+")
        if not can_rebase(attrs, self.provenance, self.spec, group):
            return False
        new = {**self.provenance, "schema_version": SCHEMA_VERSION, "status": "incomplete",
               "layout_complete": True, "block_rows": self.spec.block_rows, "classes": self.spec.class_names}
        self.rebased = rebase(group, self.spec, new, self._recorder.recorded)
        self._group = group
        self.resumed_blocks = int(self.done().sum())
        return True

    def _create(self) -> zarr.Group:
        spec = self.spec
        attrs = {**self.provenance, "schema_version": SCHEMA_VERSION, "status": "incomplete",
                 "layout_complete": False, "block_rows": spec.block_rows, "classes": spec.class_names}
        group = self._open_group("w", attributes={"actstore": attrs, "comment": _COMMENT})
        self._create_arrays(group)
        write_coordinates(group, spec)
        self._create_ledger(group)
        group.attrs["actstore"] = {**attrs, "layout_complete": True}
        return group

    def _create_arrays(self, group: zarr.Group) -> None:
        """The data arrays (schema 2): per-row ones chunked by ledger block, dimensions named, labelled."""
        spec = self.spec
        n, b = spec.n_rows, spec.block_rows

        def array(path: str, shape: tuple[int, ...], dtype: str, dims: str, **attributes: Any) -> zarr.Array:
            chunks = (b, *shape[1:]) if dims != "class_offsets" else shape
            return group.create_array(path, shape=shape, dtype=dtype, chunks=chunks, dimension_names=DIMS[dims],
                                      attributes=attributes or None, config=_NO_EMPTY_SKIP, **codecs_for(dtype))

        per_sample = coordinates_attr("samples")
        array("samples/ids", (n,), "int64", "ids", **per_sample)[:] = spec.sample_ids
        array("samples/labels", (n,), "int32", "ids", **per_sample, **label_attrs(spec.class_names))[:] = spec.labels
        offsets = spec.class_offsets()
        array("samples/class_offsets", offsets.shape, "int64", "class_offsets")[:] = offsets
        array("samples/logits", (n, spec.n_logits), "float32", "logits", **per_sample)
        for layer in spec.layers:
            labelled = coordinates_attr(f"layers/{layer.name}")
            array(f"layers/{layer.name}/maps", (n, *layer.shape), spec.maps_dtype, "maps", **labelled)
            array(f"layers/{layer.name}/pooled", (n, layer.channels), "float32", "pooled", **labelled)
        if spec.unit_layers:
            array("units/energy", (n, spec.n_units), "float32", "energy", **coordinates_attr("units"))

    def _create_ledger(self, group: zarr.Group) -> None:
        """``progress/done``, and the per-block digest and non-finite tables (columns: :attr:`columns`)."""
        nb, cols = self.spec.n_blocks, len(self.columns)
        group.create_array("progress/done", shape=(nb,), dtype="bool", chunks=(1,), fill_value=False,
                           dimension_names=("block",), config=_NO_EMPTY_SKIP)
        rows = (min(nb, _LEDGER_CHUNK), cols)
        digests = group.create_array(DIGESTS, shape=(nb, cols), dtype="uint32", chunks=rows, fill_value=0,
                                     dimension_names=("block", "array"), attributes={"arrays": self.columns})
        group.create_array(NONFINITE, shape=(nb, cols), dtype="int64", chunks=rows, fill_value=0,
                           dimension_names=("block", "array"), attributes={"arrays": self.columns})
        if self.spec.inputs is not None:
            group.create_array(INPUTS, shape=(nb,), dtype="uint64", chunks=(min(nb, 64 * _LEDGER_CHUNK),),
                               fill_value=0, dimension_names=("block",))[:] = self.spec.inputs
        recorded = self._recorder.recorded
        digests[:, :2] = np.array([[recorded.pop((name, i)) for name in self.columns[:2]] for i in range(nb)],
                                  dtype=np.uint32)

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

    def write_block(self, block: int, *, logits: np.ndarray, maps: dict[str, np.ndarray],
                    pooled: dict[str, np.ndarray], energy: np.ndarray | None = None) -> None:
        """Write one block's rows of every array, their digests, then mark it done in the ledger."""
        arrays: dict[str, np.ndarray] = {"samples/logits": logits}
        for layer in self.spec.layers:
            arrays[f"layers/{layer.name}/maps"] = maps[layer.name]
            arrays[f"layers/{layer.name}/pooled"] = pooled[layer.name]
        if self.spec.unit_layers:
            assert energy is not None, "this store holds unit features: pass energy"
            arrays["units/energy"] = energy
        rows = self.block_slice(block)
        counts = self._count_nonfinite(block, rows, arrays)
        try:
            g = self.group
            for name, data in arrays.items():  # config is not stored: a reopened array would skip zero chunks
                g[name].with_config(_NO_EMPTY_SKIP)[rows] = data
            recorded = self._recorder.recorded
            g[DIGESTS][block, 2:] = np.array([recorded.pop((name, block)) for name in self.columns[2:]], np.uint32)
            g[NONFINITE][block, :] = counts
            g["progress/done"][block] = True
        except OSError as exc:
            try:
                done: int | str = int(self.done().sum())
            except Exception:  # noqa: BLE001 - only for the message
                done = "some"
            raise os_error(exc, self.partial, "the store", hint=f"free space (or fix the location) and rerun the "
                           f"same command: it resumes from the ledger ({done} of {self.spec.n_blocks} blocks "
                           "are done)") from None

    def _count_nonfinite(self, block: int, rows: slice, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """NaN/Inf counts per column; refused (nothing of the block written) unless allowed."""
        counts = np.zeros(len(self.columns), np.int64)
        for name, data in arrays.items():
            bad = int(np.count_nonzero(~np.isfinite(data)))
            counts[self.columns.index(name)] = bad
            if bad and not self.allow_nonfinite:
                raise NonFiniteError(
                    f"{self.path}: {name} has {bad} NaN/Inf value(s) in rows {rows.start}-{rows.stop - 1} "
                    f"(block {block}): the model produced non-finite activations; check the weights and inputs, "
                    "or pass --allow-nonfinite to keep them (counted in the provenance)")
        return counts

    def nonfinite(self) -> dict[str, int]:
        """NaN/Inf count per float array over the written blocks."""
        table = np.asarray(self.group[NONFINITE][:], dtype=np.int64)
        done = self.done()
        return {name: int(table[done, i].sum()) for i, name in enumerate(self.columns)
                if name not in ("samples/ids", "samples/labels")}

    def finalize(self, extra: dict[str, Any] | None = None) -> Path:
        """Mark complete and move ``PATH.partial`` to ``PATH`` (replacing an old *store* only now)."""
        missing = self.pending_blocks()
        if missing:
            raise StoreIncompleteError(f"cannot finalize {self.path}: {len(missing)} blocks not written; "
                                       "rerun the same command to write them")
        try:
            attrs = dict(self.group.attrs["actstore"])
            attrs.update(extra or {}, status="complete", nonfinite=self.nonfinite(),
                         allow_nonfinite=self.allow_nonfinite)
            self.group.attrs["actstore"] = attrs
            for stray in self.partial.rglob("*.partial"):  # zarr's temp files of writes killed mid-way
                stray.unlink()
            consolidate(self._recorder)  # last metadata write: the store is complete and never changes again
            self._publish()
        except OSError as exc:
            if isinstance(exc, ActstoreError):
                raise
            raise os_error(exc, self.partial, "the store", hint="every block is written: rerun the same command "
                           "to finish it") from None
        return self.path

    def _publish(self) -> None:
        """Rename the partial into place; an old store at ``PATH`` (only a store) goes once the new one is there."""
        old = None
        if self.path.exists() or self.path.is_symlink():
            require_store(self.path, "replaces")
            old = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.actstore-old")
            os.replace(self.path, old)
        os.replace(self.partial, self.path)
        self.release()
        (self.path / ".lock").unlink(missing_ok=True)  # left inside by versions that locked there
        if old is not None:
            shutil.rmtree(old)


def _has_ledger_tables(partial: Path) -> bool:
    """Partials begun before digests existed lack the tables: they are started afresh (same key)."""
    return (partial / DIGESTS / "zarr.json").is_file() and (partial / NONFINITE / "zarr.json").is_file()
