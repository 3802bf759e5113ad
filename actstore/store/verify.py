"""Check a store chunk by chunk: ledger complete, schema as recorded, every chunk present, in its place
(its digest is the one the ledger recorded for that block) and decodable, and no NaN/Inf that the
provenance does not record."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from zarr.core.sync import sync

from ..errors import ActstoreError
from ..location import location, zarr_store
from .digests import NONFINITE, chunk_problem, load_digests
from .reader import read_provenance
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


def _expected(attrs: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    n = int(attrs["dataset"]["n_rows"])
    out = {
        "samples/ids": ((n,), "int64"),
        "samples/labels": ((n,), "int32"),
        "samples/class_offsets": ((len(attrs["classes"]) + 1,), "int64"),
        "samples/logits": ((n, int(attrs["n_logits"])), "float32"),
    }
    for name, shape in attrs.get("layers", {}).items():
        out[f"layers/{name}/maps"] = ((n, *shape), attrs["dtype"])
        out[f"layers/{name}/pooled"] = ((n, shape[-1]), "float32")
    if attrs.get("units"):
        out["units/energy"] = ((n, int(attrs["units"]["n_units"])), "float32")
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
    except ActstoreError as exc:
        report.problems.append(str(exc))
        return report
    group = zarr.open_group(zarr_store(target) if target == path else str(target), mode="r")
    if attrs.get("status") != "complete":
        report.problems.append(f"status is '{attrs.get('status')}', not 'complete'")
    try:
        done = np.asarray(group["progress/done"][:], dtype=bool)
    except Exception as exc:  # noqa: BLE001
        report.problems.append(f"progress/done: unreadable ledger ({exc})")
        return report
    if not done.all():
        report.problems.append(f"progress/done: {int((~done).sum())} of {done.size} blocks not written")

    try:
        digests = load_digests(group)
    except ActstoreError as exc:
        report.problems.append(str(exc))
        digests = {}
    if not digests and not report.problems:
        report.notes.append("no per-block digests (a store written before they existed): chunk positions unchecked")
    recorded = _recorded_nonfinite(attrs, group, done)
    for name, (shape, dtype) in _expected(attrs).items():
        try:
            arr = group[name]
        except KeyError:
            report.problems.append(f"{name}: missing array")
            continue
        if tuple(arr.shape) != tuple(shape) or str(arr.dtype) != dtype:
            report.problems.append(
                f"{name}: shape {tuple(arr.shape)} dtype {arr.dtype}, schema says {tuple(shape)} {dtype}")
            continue
        bad = _check_chunks(arr, done if name.startswith(_LEDGER_PREFIXES) else None, digests.get(name), report)
        _judge_nonfinite(name, bad, recorded.get(name, 0), report)
    return report


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
