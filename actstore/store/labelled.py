"""Open a store with xarray, after checking that it is a finished store of the current schema.

Plain ``xarray.open_datatree(PATH, engine="zarr")`` and ``xarray.open_zarr(PATH, group=...)`` already give
labelled arrays for a schema 2 store (dimension names, the ``sample`` index, ``label``, the units'
``layer`` and ``channel``), but xarray cannot know an actstore store's layout version. These entry points
check it first (an older store is a :class:`~actstore.errors.StoreSchemaError` naming its version and
saying to re-extract) and decode the names: a ``class_name`` coordinate from ``label``, a
``layer_name`` one from the units' ``layer``, both indexed so ``.sel(class_name="cat")`` works.

Reads through xarray go straight to zarr: each chunk's crc32c is checked by its codec, but not its
per-block digest (``actstore verify`` checks those; :func:`actstore.open_store` reads with them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import StoreError, StoreIncompleteError
from ..location import Location, location
from .reader import read_provenance
from .schema import SCHEMA_VERSION, check_schema, sample_groups

__all__ = ["open_datatree", "open_dataset"]

_NEED = ("labelled xarray access needs its dimension names, coordinates and consolidated metadata, "
         f"written since version {SCHEMA_VERSION}")


def _checked(path: str | os.PathLike[str]) -> tuple[Location, dict[str, Any]]:
    """The store's location and provenance: a finished store of the current schema version, else an error."""
    loc = location(path)
    attrs = read_provenance(loc)
    if attrs.get("status") != "complete":
        raise StoreIncompleteError(f"{loc}: store status is '{attrs.get('status')}', not 'complete'; rerun the "
                                   "extract command that made it to finish it")
    check_schema(attrs, str(loc), oldest=SCHEMA_VERSION, need=_NEED)
    return loc, attrs


def _named(ds: Any) -> Any:
    """``ds`` with the names its integer codes stand for: ``class_name`` (from ``label``) and ``layer_name``
    (from the units' ``layer``), each with an index for ``.sel``."""
    for code, name in (("label", "class_name"), ("layer", "layer_name")):
        if code in ds.coords and "names" in ds[code].attrs and name not in ds.coords:
            names = np.asarray([str(n) for n in ds[code].attrs["names"]])
            values = names[np.asarray(ds[code].values, dtype=np.int64)] if len(names) else np.zeros(0, str)
            ds = ds.assign_coords({name: (ds[code].dims, values)}).set_xindex(name)
    return ds


def _xarray() -> Any:
    try:
        import xarray as xr
    except ImportError:
        raise StoreError("reading a store with xarray needs xarray: python -m pip install 'actstore[xarray]' "
                         "(actstore.open_store reads it without)") from None
    return xr


def open_datatree(path: str | os.PathLike[str], *, chunks: Any = None) -> Any:
    """The whole store as an ``xarray.DataTree`` (lazy: dask arrays over the zarr chunks; ``chunks`` as for
    ``xarray.open_datatree``, default one dask chunk per zarr chunk), names decoded."""
    xr = _xarray()

    loc, _ = _checked(path)
    tree = xr.open_datatree(str(loc), engine="zarr", consolidated=True, zarr_format=3,
                            chunks={} if chunks is None else chunks)
    nodes = {node.path: _named(node.to_dataset(inherit=False)) for node in tree.subtree}
    named = xr.DataTree.from_dict(nodes)
    named.attrs = tree.attrs
    return named


def open_dataset(path: str | os.PathLike[str], group: str | None = None, *, chunks: Any = None) -> Any:
    """One group of the store as a labelled ``xarray.Dataset``: ``layers/<layer>`` (the default: the last
    layer), ``samples`` or ``units``; lazy, names decoded (see :func:`open_datatree`)."""
    xr = _xarray()

    loc, attrs = _checked(path)
    layers = list(attrs.get("layers") or {})
    groups = sample_groups(layers, bool(attrs.get("units")))
    if group is None:
        group = f"layers/{layers[-1]}" if layers else "samples"
    group = group.strip("/")
    if group not in groups:
        raise StoreError(f"{loc}: no group '{group}' with per-sample data; this store has {', '.join(groups)}")
    ds = xr.open_zarr(str(loc), group=group, consolidated=True, zarr_format=3, chunks={} if chunks is None else chunks)
    return _named(ds)
