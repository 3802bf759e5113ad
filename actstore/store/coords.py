"""The store's labels: coordinate arrays that make every group a labelled xarray Dataset (schema 2).

xarray labels a group's arrays only from arrays in the *same* group: an array named like a dimension
is that dimension's index (``sample``: the dataset sample ids), and the names in an array's
``coordinates`` attribute are non-index coordinates (``label``; the units' ``layer`` and ``channel``).
So each group with per-sample data (``samples``, ``layers/<name>``, ``units``) holds its own small
copies of the sample ids and labels, and ``units`` a copy of the unit table. They are 1-D, in one
chunk (up to :data:`COORD_MAX_ROWS` rows: xarray loads an index whole, and one read beats thousands),
written with the layout and never changed; ``verify`` checks them against ``samples/ids``,
``samples/labels`` and ``units/table``, which stay the sources actstore reads.

Every array holds numbers, so every zarr v3 reader (tensorstore too) reads every array: names are
integer codes into the ``names`` attribute of the code's array (``label``: the class names;
``layer``: the ReLU call names).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from .schema import DIMS, StoreSpec, codecs_for, sample_groups

__all__ = ["COORD_MAX_ROWS", "coordinate_arrays", "write_coordinates", "coordinates_attr", "unit_codes",
           "label_attrs", "layer_attrs", "coordinate_problems"]

COORD_MAX_ROWS = 1 << 22  # rows per chunk of a coordinate array: 32 MB of int64 at most
_EVERY_CHUNK = {"write_empty_chunks": True}  # all-zero labels too: every chunk of a finished store exists
Coordinate = tuple[np.ndarray, tuple[str, ...], dict[str, Any]]


def label_attrs(classes: list[str]) -> dict[str, Any]:
    return {"long_name": "class index (the class is names[label])", "names": list(classes)}


def layer_attrs(names: list[str]) -> dict[str, Any]:
    return {"long_name": "ReLU call of the unit (the call is names[layer])", "names": list(names)}


def coordinates_attr(group: str) -> dict[str, str]:
    """The CF ``coordinates`` attribute of a per-sample data array in ``group``."""
    return {"coordinates": "label layer channel" if group == "units" else "label"}


def unit_codes(unit_layers: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(layer code, channel) of each unit, and the layer names the codes index."""
    counts = [int(c) for _, c in unit_layers]
    codes = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    channels = np.concatenate([np.arange(c, dtype=np.int32) for c in counts]) if counts else np.zeros(0, np.int32)
    return codes, channels, [name for name, _ in unit_layers]


def coordinate_arrays(spec: StoreSpec) -> dict[str, Coordinate]:
    """Path -> (values, dimension names, attributes) of every coordinate array of ``spec``'s layout,
    the canonical unit table ``units/table/{layer,channel}`` included."""
    out: dict[str, Coordinate] = {}
    for group in sample_groups([s.name for s in spec.layers], bool(spec.unit_layers)):
        out[f"{group}/sample"] = (spec.sample_ids, DIMS["ids"], {"long_name": "dataset sample id"})
        out[f"{group}/label"] = (spec.labels, DIMS["ids"], label_attrs(spec.class_names))
    if spec.unit_layers:
        codes, channels, names = unit_codes(spec.unit_layers)
        for prefix in ("units/table", "units"):
            out[f"{prefix}/layer"] = (codes, DIMS["unit"], layer_attrs(names))
            out[f"{prefix}/channel"] = (channels, DIMS["unit"], {"long_name": "channel within its ReLU call"})
    return out


def write_coordinates(group: zarr.Group, spec: StoreSpec) -> None:
    """Create (or, for a relaid-out partial store, rewrite) every coordinate array of ``spec``."""
    for path, (values, dims, attrs) in coordinate_arrays(spec).items():
        values = np.ascontiguousarray(values)
        chunks = (max(1, min(values.shape[0], COORD_MAX_ROWS)),)
        if path in group and (group[path].shape != values.shape or group[path].chunks != chunks):
            del group[path]  # made anew, so a relaid-out store is identical to a fresh one, metadata included
        if path in group:
            arr = group[path]
        else:
            arr = group.create_array(path, shape=values.shape, dtype=values.dtype, chunks=chunks, dimension_names=dims,
                                     attributes=attrs, config=_EVERY_CHUNK, **codecs_for(str(values.dtype)))
        arr.with_config(_EVERY_CHUNK)[:] = values


def coordinate_problems(group: zarr.Group, attrs: dict[str, Any]) -> list[str]:
    """What differs between the coordinate copies and the arrays actstore reads (schema 2 stores)."""
    classes = list(attrs.get("classes") or [])
    units = attrs.get("units") or {}
    sources = {"sample": np.asarray(group["samples/ids"][:]), "label": np.asarray(group["samples/labels"][:])}
    problems = []
    for g in sample_groups(list(attrs.get("layers") or {}), bool(units)):
        problems += _differs(group, f"{g}/sample", sources["sample"], "samples/ids")
        problems += _differs(group, f"{g}/label", sources["label"], "samples/labels")
        if _names(group, f"{g}/label") not in (None, classes):
            problems.append(f"{g}/label: its names attribute is not the store's classes")
    if units:
        names = [str(n) for n, _ in units.get("layers") or []]
        for name in ("layer", "channel"):
            problems += _differs(group, f"units/{name}", _read(group, f"units/table/{name}"), f"units/table/{name}")
        for path in ("units/table/layer", "units/layer"):
            if _names(group, path) not in (None, names):
                problems.append(f"{path}: its names attribute is not the store's unit layers")
    return problems


def _read(group: zarr.Group, path: str) -> np.ndarray | None:
    try:
        return np.asarray(group[path][:])
    except Exception:  # noqa: BLE001 - a missing or unreadable array is reported where it is checked
        return None


def _names(group: zarr.Group, path: str) -> list[str] | None:
    try:
        return [str(n) for n in group[path].attrs.get("names", [])]
    except KeyError:
        return None


def _differs(group: zarr.Group, path: str, expected: np.ndarray | None, source: str) -> list[str]:
    found = _read(group, path)
    if found is None or expected is None:
        return [f"{path}: missing or unreadable coordinate"] if found is None else []
    if found.shape != expected.shape or not np.array_equal(found, expected):
        return [f"{path}: differs from {source}, which it copies for xarray"]
    return []
