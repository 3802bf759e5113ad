"""Read an activation store lazily: small per-row metadata in memory, activations as dask arrays."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import StoreCorruptError, StoreError, StoreIncompleteError
from ..location import Location, exists, join, location, zarr_store
from .schema import check_schema
from .writer import partial_path

__all__ = ["ActivationStore", "open_store", "read_provenance"]

Rows = slice | np.ndarray | list[int] | None


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``actstore`` attributes of the store at ``path`` (a path or fsspec URL)."""
    loc = location(path)
    if not exists(join(loc, "zarr.json")):
        if isinstance(loc, Path) and (partial_path(loc) / "zarr.json").is_file():
            raise StoreIncompleteError(
                f"{loc}: extraction has not finished (progress is in {partial_path(loc)}); "
                "rerun the same extract command to resume it"
            )
        raise StoreError(f"{loc}: no activation store here (no zarr.json)")
    try:
        group = zarr.open_group(zarr_store(loc), mode="r", use_consolidated=False)
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for bad metadata
        raise StoreCorruptError(f"{loc}: unreadable store metadata ({exc})") from None
    attrs = group.attrs.get("actstore")
    if not isinstance(attrs, dict):
        raise StoreError(f"{loc}: a zarr group, but not an actstore store (no 'actstore' attributes)")
    return dict(attrs)


def _open_checked(loc: Location, attrs: dict[str, Any]) -> zarr.Group:
    """The store's group, every row-block chunk read compared with the digest the ledger recorded for
    its position (stores written before digests existed: checked for damage only), so a bad chunk is
    a :class:`StoreCorruptError` naming it, never a codec's traceback or the wrong rows."""
    from .digests import block_arrays, checking_store, load_digests

    base = zarr_store(loc)
    # the nodes' own metadata, not the consolidated copy in the root (written for xarray): what is on disk
    table = load_digests(zarr.open_group(base, mode="r", use_consolidated=False))
    arrays = block_arrays(list(attrs.get("layers") or {}), bool(attrs.get("units")))
    return zarr.open_group(checking_store(base, table, arrays, str(loc)), mode="r", use_consolidated=False)


class ActivationStore:
    """A finished store, opened by :func:`open_store`. Nothing here loads a whole layer: ``maps``/``pooled``
    return dask arrays. ``path`` is a local Path or an fsspec URL string (``s3://bucket/x.zarr``)."""

    def __init__(self, path: Location, provenance: dict[str, Any], group: zarr.Group) -> None:
        self.path = path
        self.provenance = provenance
        self.group = group

    def __reduce__(self) -> tuple[Any, tuple[str]]:  # pickled by location: a worker opens the store itself
        return open_store, (str(self.path),)

    def __repr__(self) -> str:
        return (f"ActivationStore({str(self.path)!r}, rows={self.n_rows}, classes={len(self.classes)}, "
                f"layers={self.layers})")

    # -- metadata ----------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.provenance["classes"])

    @property
    def layers(self) -> list[str]:
        return list(self.provenance.get("layers", {}))

    @property
    def n_rows(self) -> int:
        return int(self.group["samples/ids"].shape[0])

    @property
    def schema_version(self) -> int:
        """The layout version the store was written with (see :mod:`actstore.store.schema`)."""
        return int(self.provenance["schema_version"])

    @property
    def fingerprint(self) -> str:
        return str(self.provenance["dataset"]["fingerprint"])

    @property
    def key(self) -> str:
        return str(self.provenance["key"])

    @property
    def has_units(self) -> bool:
        return "units" in self.group

    @cached_property
    def class_offsets(self) -> np.ndarray:
        return np.asarray(self.group["samples/class_offsets"][:])

    @cached_property
    def sample_ids(self) -> np.ndarray:
        return np.asarray(self.group["samples/ids"][:])

    @cached_property
    def labels(self) -> np.ndarray:
        return np.asarray(self.group["samples/labels"][:])

    def class_rows(self, c: int) -> slice:
        """The contiguous rows of class ``c``."""
        if not 0 <= c < len(self.classes):
            raise StoreError(f"{self.path}: class {c} out of range 0..{len(self.classes) - 1}")
        return slice(int(self.class_offsets[c]), int(self.class_offsets[c + 1]))

    def rows_for_ids(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """Rows holding the dataset sample ``ids`` (in the order given)."""
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(self.sample_ids, kind="stable")
        sorted_ids = self.sample_ids[order]
        pos = np.searchsorted(sorted_ids, ids)
        pos = np.clip(pos, 0, len(sorted_ids) - 1)
        found = sorted_ids[pos] == ids
        if not found.all():
            missing = ids[~found]
            raise StoreError(
                f"{self.path}: {missing.size} sample id(s) not in this store, e.g. {missing[:5].tolist()}"
            )
        return order[pos]

    @cached_property
    def unit_table(self) -> list[tuple[str, int]]:
        """(relu call name, channel) of each VEBI unit, in ``units/energy`` column order."""
        self._require_units()
        layer = self.array("units/table/layer")
        channels = self.array("units/table/channel")[:]
        if np.dtype(layer.dtype).kind in "iu":  # schema 2: codes into the names attribute
            names = list(layer.attrs["names"])
            return [(str(names[int(k)]), int(c)) for k, c in zip(layer[:], channels, strict=True)]
        return [(str(n), int(c)) for n, c in zip(layer[:], channels, strict=True)]  # schema 1: strings

    # -- activations (lazy) ------------------------------------------------------
    def array(self, path: str) -> zarr.Array:
        """The raw zarr array at ``path`` inside the store."""
        try:
            arr = self.group[path]
        except KeyError:
            raise StoreError(f"{self.path}: no array '{path}' in this store") from None
        assert isinstance(arr, zarr.Array)
        return arr

    def _dask(self, path: str, rows: Rows) -> Any:
        import dask.array as da

        arr = da.from_zarr(self.array(path))
        if rows is None:
            return arr
        if isinstance(rows, slice):
            return arr[rows]
        return arr[np.asarray(rows, dtype=np.int64)]

    def _layer(self, layer: str | None) -> str:
        if layer is None:
            return self.layers[-1]
        if layer not in self.layers:
            raise StoreError(f"{self.path}: no layer '{layer}'; this store has {', '.join(self.layers)}")
        return layer

    def maps(self, layer: str | None = None, rows: Rows = None) -> Any:
        """Spatial maps (rows, H, W, D), channels-last, as a dask array over the zarr chunks."""
        return self._dask(f"layers/{self._layer(layer)}/maps", rows)

    def pooled(self, layer: str | None = None, rows: Rows = None) -> Any:
        """Global average pool (rows, D) float32 of ``layer`` (default: the last one), as dask."""
        return self._dask(f"layers/{self._layer(layer)}/pooled", rows)

    def logits(self, rows: Rows = None) -> Any:
        return self._dask("samples/logits", rows)

    def unit_energy(self, rows: Rows = None) -> Any:
        """VEBI unit features (rows, P): each ReLU call's channel energy share."""
        self._require_units()
        return self._dask("units/energy", rows)

    def _require_units(self) -> None:
        if not self.has_units:
            raise StoreError(f"{self.path}: no unit features; extract with --units")

    # -- the raw zarr arrays, by meaning (the layout's paths are spelled only in store/) -----------------
    def maps_array(self, layer: str | None = None) -> zarr.Array:
        """``layer``'s spatial maps (N, H, W, D) as the zarr array (default: the last layer)."""
        return self.array(f"layers/{self._layer(layer)}/maps")

    def pooled_array(self, layer: str | None = None) -> zarr.Array:
        """``layer``'s pooled activations (N, D) as the zarr array (default: the last layer)."""
        return self.array(f"layers/{self._layer(layer)}/pooled")

    def logits_array(self) -> zarr.Array:
        """The model's logits (N, K) as the zarr array."""
        return self.array("samples/logits")

    def energy_array(self) -> zarr.Array:
        """VEBI's unit features (N, P) as the zarr array."""
        self._require_units()
        return self.array("units/energy")

    def data_arrays(self) -> dict[str, zarr.Array]:
        """The per-row data arrays by path: logits, each layer's maps and pooled, the unit features."""
        paths = ["samples/logits", *[f"layers/{layer}/{k}" for layer in self.layers for k in ("maps", "pooled")],
                 *(["units/energy"] if self.has_units else [])]
        return {p: self.array(p) for p in paths}


def open_store(path: str | os.PathLike[str]) -> ActivationStore:
    """Open a finished activation store for reading (its provenance checked: a store, complete, and of a
    schema version this actstore reads: the current one or the one before it)."""
    loc = location(path)
    provenance = read_provenance(loc)
    status = provenance.get("status")
    if status != "complete":
        raise StoreIncompleteError(f"{loc}: store status is '{status}', not 'complete'")
    check_schema(provenance, str(loc))  # the current layout and the one before it; refused: older or newer
    return ActivationStore(loc, provenance, _open_checked(loc, provenance))
