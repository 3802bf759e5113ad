"""Check a store chunk by chunk: ledger complete, schema as recorded, every chunk present, in its place
(its digest is the one the ledger recorded for that block) and decodable, and no NaN/Inf that the
provenance does not record; for a schema 2 store also its coordinates (equal to the arrays they copy)
and its consolidated metadata (present, and equal to every node's own)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from zarr.core.sync import sync

from ..errors import ActstoreError
from ..location import location, zarr_store
from .consolidated import consolidated_problems
from .coords import coordinate_problems
from .digests import NONFINITE, chunk_problem, load_digests
from .reader import read_provenance
from .schema import DIMS, SCHEMA_VERSION, check_schema, sample_groups
from .writer import partial_path

__all__ = ["VerifyReport", "verify_store"]


@dataclass
class VerifyReport:
    path: str
    chunks_checked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


_LEDGER_PREFIXES = ("samples/logits", "layers/", "units/energy")
Expected = dict[str, tuple[tuple[int, ...], str, tuple[str, ...] | None]]


def _expected(attrs: dict, version: int) -> Expected:
    """Path -> (shape, dtype, dimension names: None where version 1 did not fix them) of every array."""
    n = int(attrs["dataset"]["n_rows"])
    named = version >= 2

    def dims(key: str) -> tuple[str, ...] | None:
        return DIMS[key] if named else None

    out: Expected = {
        "samples/ids": ((n,), "int64", dims("ids")),
        "samples/labels": ((n,), "int32", dims("ids")),
        "samples/class_offsets": ((len(attrs["classes"]) + 1,), "int64", dims("class_offsets")),
        "samples/logits": ((n, int(attrs["n_logits"])), "float32", dims("logits")),
    }
    for name, shape in attrs.get("layers", {}).items():
        out[f"layers/{name}/maps"] = ((n, *shape), attrs["dtype"], dims("maps"))
        out[f"layers/{name}/pooled"] = ((n, shape[-1]), "float32", dims("pooled"))
    units = attrs.get("units")
    if units:
        out["units/energy"] = ((n, int(units["n_units"])), "float32", dims("energy"))
    if named:
        for group in sample_groups(list(attrs.get("layers", {})), bool(units)):
            out[f"{group}/sample"] = ((n,), "int64", DIMS["ids"])
            out[f"{group}/label"] = ((n,), "int32", DIMS["ids"])
        for path in (["units/table/layer", "units/table/channel", "units/layer", "units/channel"] if units else []):
            out[path] = ((int(units["n_units"]),), "int32", DIMS["unit"])
    return out


def verify_store(path: str | os.PathLike[str]) -> VerifyReport:
    """Verify the store at ``path`` (a finished store, or an unfinished ``PATH.partial``)."""
    path = location(path)
    target = path
    if isinstance(path, Path) and not (path / "zarr.json").exists() and partial_path(path).exists():
        target = partial_path(path)
    report = VerifyReport(str(target))
    try:
        attrs = read_provenance(target) if target == path else dict(
            zarr.open_group(str(target), mode="r").attrs["actstore"])
        version = _version(attrs, str(target), report)
    except ActstoreError as exc:
        report.problems.append(str(exc))
        return report
    store = zarr_store(target) if target == path else str(target)
    group = zarr.open_group(store, mode="r", use_consolidated=False)  # what is on disk, not a copy of it
    if attrs.get("status") != "complete":
        report.problems.append(f"status is '{attrs.get('status')}', not 'complete'")
    try:
        done = np.asarray(group["progress/done"][:], dtype=bool)
    except Exception as exc:  # noqa: BLE001
        report.problems.append(f"progress/done: unreadable ledger ({exc})")
        return report
    if not done.all():
        report.problems.append(f"progress/done: {int((~done).sum())} of {done.size} blocks not written")
    _check_arrays(group, attrs, version, done, report)
    if version >= 2:
        report.problems += coordinate_problems(group, attrs)
        if attrs.get("status") == "complete":
            report.problems += consolidated_problems(store)
    return report


def _version(attrs: dict, where: str, report: VerifyReport) -> int:
    """The store's schema version (a newer one, or none, is an error); an older one readable is a note."""
    version = check_schema(attrs, where)
    if version < SCHEMA_VERSION:
        report.notes.append(f"schema version {version}: actstore reads it, but labelled xarray access (dimension "
                            f"names, coordinates, consolidated metadata) needs version {SCHEMA_VERSION}: re-extract "
                            "the store to get it")
    return version


def _check_arrays(group: zarr.Group, attrs: dict, version: int, done: np.ndarray, report: VerifyReport) -> None:
    """Every array of the layout: shape, dtype and dimension names as the schema says; every chunk present,
    in place and decodable; NaN/Inf as recorded."""
    try:
        digests = load_digests(group)
    except ActstoreError as exc:
        report.problems.append(str(exc))
        digests = {}
    if not digests and not report.problems:
        report.notes.append("no per-block digests (a store written before they existed): chunk positions unchecked")
    recorded = _recorded_nonfinite(attrs, group, done)
    for name, (shape, dtype, dims) in _expected(attrs, version).items():
        try:
            arr = group[name]
        except KeyError:
            report.problems.append(f"{name}: missing array")
            continue
        if tuple(arr.shape) != tuple(shape) or str(arr.dtype) != dtype:
            report.problems.append(
                f"{name}: shape {tuple(arr.shape)} dtype {arr.dtype}, schema says {tuple(shape)} {dtype}")
            continue
        if dims is not None and tuple(arr.metadata.dimension_names or ()) != dims:
            report.problems.append(f"{name}: dimension names {arr.metadata.dimension_names}, schema says {dims}")
        bad = _check_chunks(arr, done if name.startswith(_LEDGER_PREFIXES) else None, digests.get(name), report)
        _judge_nonfinite(name, bad, recorded.get(name, 0), report)


def _recorded_nonfinite(attrs: dict, group: zarr.Group, done: np.ndarray) -> dict[str, int]:
    """NaN/Inf counts the store records: the provenance's (finished), else the ledger's table (unfinished)."""
    if isinstance(attrs.get("nonfinite"), dict):
        return {k: int(v) for k, v in attrs["nonfinite"].items()}
    try:
        table = group[NONFINITE]
    except KeyError:
        return {}
    counts = np.asarray(table[:], dtype=np.int64)[done[:table.shape[0]]].sum(axis=0)
    return {name: int(c) for name, c in zip(table.attrs.get("arrays", []), counts, strict=False)}


def _judge_nonfinite(name: str, found: int, recorded: int, report: VerifyReport) -> None:
    if found != recorded:
        report.problems.append(f"{name}: {found} NaN/Inf value(s) where the store records {recorded}")
    elif found:
        report.notes.append(f"{name}: {found} NaN/Inf value(s), recorded (extracted with --allow-nonfinite)")


def _check_chunks(arr: zarr.Array, done: np.ndarray | None, digests: np.ndarray | None,
                  report: VerifyReport) -> int:
    """Every chunk exists, matches its recorded digest and decodes; ``done`` given: only blocks the ledger
    says are written. Returns the NaN/Inf count of the chunks read."""
    from zarr.core.buffer import default_buffer_prototype

    step = arr.chunks[0]
    n_chunks = -(-arr.shape[0] // step) if arr.shape[0] else 0
    nonfinite = 0
    for i in range(n_chunks):
        if done is not None and not done[i]:
            continue
        coords = (i,) + (0,) * (arr.ndim - 1)
        key = f"{arr.path}/{arr.metadata.encode_chunk_key(coords)}"
        report.chunks_checked += 1
        if not sync(arr.store.exists(key)):
            report.problems.append(f"{key}: chunk missing")
            continue
        if digests is not None and i < len(digests):
            raw = sync(arr.store.get(key, default_buffer_prototype()))
            problem = chunk_problem(raw.to_bytes(), int(digests[i]), i) if raw is not None else None
            if problem:
                kind = "unreadable chunk" if "damaged" in problem else "misplaced chunk"
                report.problems.append(f"{key}: {kind}: it {problem}")
                continue
        try:
            block = np.asarray(arr[i * step:(i + 1) * step])
        except Exception as exc:  # noqa: BLE001 - any decode failure means a bad chunk
            report.problems.append(f"{key}: unreadable chunk ({type(exc).__name__}: {exc})")
            continue
        if block.dtype.kind == "f":
            nonfinite += int(np.count_nonzero(~np.isfinite(block)))
    return nonfinite
