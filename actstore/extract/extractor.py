"""Extract a model's activations over a dataset into an activation store, resumably."""

from __future__ import annotations

import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..catalog import Catalog, open_catalog
from ..config import home
from ..device import resolve_device
from ..errors import DatasetError, NonFiniteError, NotOursError, StoreError, StoreExistsError
from ..location import Location, exists, is_url, location, upload
from ..names import check_name, path_under, slug
from ..ownership import describe, require_store, root_attrs, store_key
from ..store.reader import ActivationStore, open_store
from ..store.rebase import block_input_digests
from ..store.schema import SCHEMA_VERSION, LayerSpec, StoreSpec, choose_block_rows, provenance_key
from ..store.writer import StoreWriter
from .datasets import FINGERPRINT_MODES, DatasetSource, collate_rows, dataset_source
from .models import LoadedModel, load_model
from .probe import _LOGITS, Probe

# On a CPU the forward pass runs in slices of this many images: measured on 2 cores at 224 px, ResNet18 runs
# 1.3x and ResNet50 1.6x faster per image in passes of 8 than of 64 (the activations stay in cache), and each
# row's outputs are the same bit for bit. A GPU takes the whole batch.
CPU_FORWARD_ROWS = 8

__all__ = ["extract", "ExtractResult", "resolve_device", "package_versions"]


@dataclass
class ExtractResult:
    path: Location  # a local Path, or the URL the store was uploaded to
    name: str
    reused: bool
    resumed_blocks: int
    written_blocks: int
    loop_seconds: float = 0.0  # the forward-and-write loop alone (images/s = rows / loop_seconds)
    note: str | None = None  # e.g. that --out was not written because an existing store was reused

    @property
    def store(self) -> ActivationStore:
        return open_store(self.path)


@dataclass
class ExtractPlan:
    """Everything decided before the first forward pass: what is computed, and where it goes."""

    source: DatasetSource
    loaded: LoadedModel
    probe: Probe
    spec: StoreSpec
    provenance: dict[str, Any]
    store_name: str
    target: Location  # where the finished store lives (a path or URL)
    path: Path  # where it is written: ``target``, or a local staging folder for a URL
    requested: Location | None  # the --out the user gave
    options: dict[str, Any] = field(default_factory=dict)  # batch_size, device, workers, overwrite...

    @property
    def key(self) -> str:
        return str(self.provenance["key"])


def package_versions() -> dict[str, str]:
    import dask
    import numpy
    import torchvision
    import zarr

    from .. import __version__

    return {"actstore": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "zarr": zarr.__version__, "numpy": numpy.__version__, "dask": dask.__version__}


class _BlockBatches(Sampler[list[int]]):
    """Batches that never straddle a ledger block, over the pending blocks only.

    Every block is cut into the same batches whether or not the run was resumed, so the
    numbers written are identical either way.
    """

    def __init__(self, blocks: list[int], block_rows: int, n_rows: int, batch_size: int) -> None:
        self.blocks, self.block_rows, self.n_rows, self.batch_size = blocks, block_rows, n_rows, batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for b in self.blocks:
            start, stop = b * self.block_rows, min((b + 1) * self.block_rows, self.n_rows)
            for s in range(start, stop, self.batch_size):
                yield list(range(s, min(s + self.batch_size, stop)))

    def __len__(self) -> int:
        return sum(-(-(min((b + 1) * self.block_rows, self.n_rows) - b * self.block_rows) // self.batch_size)
                   for b in self.blocks)


def _resolve_source(dataset: str, catalog: Catalog, fingerprint: str = "stat") -> DatasetSource:
    """The dataset by catalog name or spec; checked before any model is built or trained."""
    source = dataset_source(dataset, catalog, fingerprint=fingerprint)
    if source.n == 0:
        raise DatasetError(f"dataset '{dataset}' has no samples")
    return source


def _apply_transform(source: DatasetSource, loaded: LoadedModel, transform: Any,
                     preprocessing: dict[str, Any] | None) -> None:
    """Images are decoded with the given transform, else the weights' own (recorded in provenance)."""
    if not source.needs_transform:
        return
    if transform is None:
        source.transform, source.preprocessing = loaded.transform, loaded.preprocessing
    else:
        source.transform = transform
        source.preprocessing = preprocessing or {"transform": " ".join(repr(transform).split())}


def extract(
    model: str,
    dataset: str,
    out: str | os.PathLike[str] | None = None,
    *,
    layers: list[str] | None = None,
    units: bool = False,
    weights: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    dtype: str = "float16",
    workers: int | None = None,
    overwrite: bool = False,
    catalog: str | os.PathLike[str] | Catalog | None = None,
    block_rows: int | None = None,
    transform: Any = None,
    preprocessing: dict[str, Any] | None = None,
    name: str | None = None,
    progress: bool = True,
    fingerprint: str = "stat",
    allow_nonfinite: bool = False,
) -> ExtractResult:
    """Extract ``model``'s activations over ``dataset`` into a store, and register it in the catalog.

    A finished store with the same provenance is reused (and said so); an interrupted one is
    resumed from its ledger. ``layers`` default to the model's last conv block; ``units`` adds
    VEBI's unit features over every ReLU call. ``fingerprint`` is how an image folder is recognised
    (``stat``: names, labels, sizes and modification times; ``content``: also a hash of every file).
    A block with NaN/Inf is refused unless ``allow_nonfinite``. Returns where the store is and what
    was done.
    """
    _check_options(dtype, batch_size, workers, fingerprint, name)
    options = {"batch_size": batch_size, "device": resolve_device(device), "workers": workers,
               "overwrite": overwrite, "allow_nonfinite": allow_nonfinite}
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    plan = plan_extraction(model, dataset, out, cat, layers=layers, units=units, weights=weights, dtype=dtype,
                           block_rows=block_rows, transform=transform, preprocessing=preprocessing, name=name,
                           fingerprint=fingerprint, options=options)
    say = _Say(progress)
    found = find_reusable(plan, cat)
    if found is not None:
        return _reuse(plan, found, cat, say)
    writer = StoreWriter(plan.path, plan.spec, plan.provenance, overwrite=overwrite,
                         allow_nonfinite=allow_nonfinite).lock()
    try:
        found = find_reusable(plan, cat)  # again under the lock: another writer may have just finished it
        if found is not None:
            return _reuse(plan, found, cat, say)
        loop_seconds, written = execute_extraction(plan, writer, say)
    finally:
        writer.release()
    return publish_store(plan, cat, say, writer.resumed_blocks, written, loop_seconds)


def _check_options(dtype: str, batch_size: int, workers: int | None, fingerprint: str, name: str | None) -> None:
    """Refuse bad options before any work (nothing is built, trained or written yet)."""
    if dtype not in ("float16", "float32"):
        raise StoreError(f"--dtype must be float16 or float32, not '{dtype}'")
    if batch_size < 1:
        raise StoreError(f"--batch-size must be >= 1, not {batch_size}")
    if workers is not None and workers < 0:
        raise StoreError(f"--workers must be >= 0 (0 loads images in this process), not {workers}")
    if fingerprint not in FINGERPRINT_MODES:
        raise StoreError(f"--fingerprint must be one of {', '.join(FINGERPRINT_MODES)}, not '{fingerprint}'")
    if name is not None:
        check_name(name, "--name")


def plan_extraction(model: str, dataset: str, out: str | os.PathLike[str] | None, cat: Catalog, *,
                    layers: list[str] | None, units: bool, weights: str | None, dtype: str, block_rows: int | None,
                    transform: Any, preprocessing: dict[str, Any] | None, name: str | None,
                    fingerprint: str = "stat", options: dict[str, Any] | None = None) -> ExtractPlan:
    """Resolve the dataset (first: a bad spec fails before any model is built), the model and its
    layers; lay out the store; decide its provenance key and where it goes."""
    source = _resolve_source(dataset, cat, fingerprint)
    loaded = load_model(model, weights, catalog=cat)
    _apply_transform(source, loaded, transform, preprocessing)
    layers = list(dict.fromkeys(layers or [loaded.default_layer]))
    probe = Probe(loaded, layers, units)
    spec = _layout(source, probe, layers, dtype, block_rows)
    options = options or {}
    provenance = _provenance(source, loaded, spec, dataset, dtype, units, fingerprint)
    provenance["batch_size"] = options.get("batch_size", 64)  # a resumed run batches as the first one did
    key = provenance["key"]
    store_name = name or slug(f"{loaded.name}_{source.spec.replace('imagefolder:', '')}")
    requested = location(out) if out is not None else None
    target = requested if requested is not None else path_under(home() / "stores", f"{store_name}-{key}", ".zarr")
    # a remote store is written locally (resumable, locked) and uploaded once complete
    path = target if isinstance(target, Path) else path_under(home() / "staging", f"{store_name}-{key}", ".zarr")
    return ExtractPlan(source, loaded, probe, spec, provenance, store_name, target, path, requested, options)


def _layout(source: DatasetSource, probe: Probe, layers: list[str], dtype: str, block_rows: int | None) -> StoreSpec:
    """The store's layout: class-contiguous rows (ids ascending within a class), shapes from one probe."""
    order = np.argsort(source.labels, kind="stable")
    shapes = probe.describe(source.load(int(order[0]))[None])
    layer_specs = [LayerSpec(n, *shapes[n]) for n in layers]
    spec = StoreSpec(sample_ids=order.astype(np.int64), labels=source.labels[order].astype(np.int32),
                     class_names=source.classes, n_logits=shapes[_LOGITS][0], layers=layer_specs,
                     unit_layers=list(probe.unit_layers), maps_dtype=dtype)
    widest = max([np.dtype(dtype).itemsize * int(np.prod(s.shape)) for s in layer_specs] + [4 * spec.n_units])
    spec.block_rows = choose_block_rows(widest, spec.n_rows, block_rows)
    if source.item_keys is not None:
        spec.inputs = block_input_digests(source.item_keys, spec)
    return spec


def _provenance(source: DatasetSource, loaded: LoadedModel, spec: StoreSpec, dataset: str, dtype: str,
                units: bool, fingerprint: str) -> dict[str, Any]:
    """What the store records about itself; ``key`` hashes only what determines its numbers."""
    content = {
        "schema_version": SCHEMA_VERSION,
        "model": {k: v for k, v in loaded.provenance().items() if k != "name"},
        "layers": {s.name: list(s.shape) for s in spec.layers},
        "units": bool(units),
        "preprocessing": {**source.preprocessing},
        "dataset": source.fingerprint,
        "dtype": dtype,
    }
    return {
        "key": provenance_key(content),
        "method_key": provenance_key({k: v for k, v in content.items() if k != "dataset"}),
        "model": loaded.provenance(),
        "layers": content["layers"],
        "n_logits": spec.n_logits,
        "units": {"n_units": spec.n_units, "scope": "features" if loaded.family == "vgg" else "model",
                  "feature": "channel energy / layer energy, per ReLU call",
                  "layers": [[n, c] for n, c in spec.unit_layers]} if units else None,
        "preprocessing": source.preprocessing,
        "dataset": {"spec": source.spec, "name": dataset, "fingerprint": source.fingerprint,
                    "fingerprint_mode": fingerprint, "n_rows": spec.n_rows, "classes": len(source.classes)},
        "dtype": dtype,
        "versions": package_versions(),
    }


def find_reusable(plan: ExtractPlan, cat: Catalog) -> Location | None:
    """A finished store with the plan's key: at the target, else where the catalog says one is.

    Something else at the target is refused: another store unless ``overwrite`` (then replaced once
    the new one is complete), and anything that is not an actstore store always (never deleted)."""
    target, key, overwrite = plan.target, plan.key, plan.options.get("overwrite", False)
    if exists(target):
        found = store_key(target)
        if found == key and (root_attrs(target) or {}).get("status") == "complete":
            return _usable(plan, target)
        if found is None:
            raise NotOursError(f"{target} holds {describe(target)}, not an actstore store; actstore never replaces "
                               "what it did not make (not even with --overwrite): choose another --out or move it away")
        if not overwrite:
            old = (root_attrs(target) or {}).get("schema_version")
            what = (f"a store of schema version {old}, older than this actstore's {SCHEMA_VERSION}"
                    if isinstance(old, int) and old < SCHEMA_VERSION else "a store with other provenance")
            raise StoreExistsError(f"{target} already holds {what} (key {found}); pass --overwrite to replace it "
                                   "(the old one is kept until the new one is complete)")
        require_store(target, "replaces")
        return None
    name = cat.find("stores", key=key)
    if name is None or overwrite:
        return None
    where = cat.resolve(cat.get("stores", name))
    attrs = root_attrs(where) if exists(where) else None
    if attrs and attrs.get("key") == key and attrs.get("status") == "complete":
        return _usable(plan, where)
    return None


def _usable(plan: ExtractPlan, where: Location) -> Location:
    """A reusable store, unless it holds NaN/Inf that this run did not allow."""
    counts = (root_attrs(where) or {}).get("nonfinite") or {}
    bad = sum(int(v) for v in counts.values()) if isinstance(counts, dict) else 0
    if bad and not plan.options.get("allow_nonfinite", False):
        raise NonFiniteError(f"the finished store {where} with this provenance holds {bad} NaN/Inf value(s) "
                             "(extracted with --allow-nonfinite); pass --allow-nonfinite to use it")
    return where


def _reuse(plan: ExtractPlan, found: Location, cat: Catalog, say: _Say) -> ExtractResult:
    say(f"reusing the finished store {found} (same provenance, key {plan.key}); nothing to compute")
    note = None
    if plan.requested is not None and str(found) != str(plan.requested):
        note = (f"note: --out {plan.requested} was not written: the existing store at {found} has the same "
                "provenance and was reused (pass --overwrite to extract into --out anyway)")
        say(note)
    name = _register(cat, plan.store_name, found, plan.provenance)
    return ExtractResult(found, name, True, 0, 0, note=note)


def execute_extraction(plan: ExtractPlan, writer: StoreWriter, say: _Say) -> tuple[float, int]:
    """Run the forward passes over the pending blocks and finalize the store (the lock is held).
    Returns the loop's seconds and the number of blocks written."""
    spec, opts = plan.spec, plan.options
    say(f"store: {plan.path}  rows: {spec.n_rows}  classes: {len(spec.class_names)}  layers: "
        + ", ".join(f"{s.name} {s.height}x{s.width}x{s.channels}" for s in spec.layers)
        + (f"  units: {spec.n_units}" if spec.unit_layers else ""))
    estimate = spec.n_rows * spec.row_bytes()
    free = shutil.disk_usage(_existing_parent(plan.path)).free
    say(f"disk: up to {estimate / 1e6:,.1f} MB before compression ({free / 1e9:,.1f} GB free)")
    if estimate > free:
        say("warning: the store may not fit on this disk uncompressed")
    dev = opts["device"]
    with writer:
        pending = writer.pending_blocks()
        batch_size = opts["batch_size"]
        if writer.rebased is not None:
            say(f"the dataset changed since this extraction began: {writer.rebased[0]} of the "
                f"{writer.rebased[1]} finished blocks hold unchanged images and are kept")
        if writer.resumed_blocks:
            batch_size = int(writer.group.attrs["actstore"].get("batch_size", batch_size))
            say(f"resuming: {writer.resumed_blocks} of {spec.n_blocks} blocks already written")
        started = time.perf_counter()
        _run(writer, plan.probe.to(dev), plan.source, spec, pending, batch_size, dev, opts["workers"], say)
        loop_seconds = time.perf_counter() - started
        writer.finalize({"store_path": str(plan.target)})
    return loop_seconds, len(pending)


def publish_store(plan: ExtractPlan, cat: Catalog, say: _Say, resumed: int, written: int,
                  loop_seconds: float) -> ExtractResult:
    """Upload a staged store to its URL (root metadata last), then register it in the catalog."""
    if is_url(plan.target):
        say(f"uploading to {plan.target}")
        upload(plan.path, str(plan.target))
        shutil.rmtree(plan.path)  # the staging copy: ours, just finished
    say(f"done: {plan.target}")
    name = _register(cat, plan.store_name, plan.target, plan.provenance)
    return ExtractResult(plan.target, name, False, resumed, written, loop_seconds)


def _existing_parent(path: Path) -> Path:
    p = path.resolve()
    while not p.exists():
        p = p.parent
    return p


def _register(cat: Catalog, name: str, path: Location, provenance: dict[str, Any]) -> str:
    """Register the store under ``name`` (suffixed with its key when the name is taken by another store);
    an unwritable catalog is an error that says where the finished store is."""
    existing = cat.entries("stores").get(name)
    if existing and existing.get("key") != provenance["key"]:
        name = f"{name}-{provenance['key'][:6]}"
    summary = {k: provenance[k] for k in ("model", "layers", "dataset", "dtype")}
    summary["units"] = bool(provenance["units"])
    cat.add("stores", name, {"path": str(path), "fingerprint": provenance["dataset"]["fingerprint"],
                             "key": provenance["key"], "provenance": summary})
    return name


class _Say:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)


def _run(writer: StoreWriter, probe: Probe, source: DatasetSource, spec: StoreSpec, pending: list[int],
         batch_size: int, dev: torch.device, workers: int | None, say: _Say) -> None:
    if not pending:
        return
    if workers is None:
        workers = min(4, max(1, (os.cpu_count() or 2) - 1)) if source.needs_transform else 0
    loader = DataLoader(source.torch_dataset(spec.sample_ids),
                        batch_sampler=_BlockBatches(pending, spec.block_rows, spec.n_rows, batch_size),
                        num_workers=workers, pin_memory=dev.type == "cuda", collate_fn=collate_rows,
                        persistent_workers=False)
    buffers = _BlockBuffer(spec)
    bar = _progress(say.enabled, sum(writer.block_slice(b).stop - writer.block_slice(b).start for b in pending))
    with bar, _BackgroundWrites(writer) as background:
        task = bar.add_task("extract", total=bar.total_rows)
        for images, rows, errors in loader:
            bad = [e for e in errors if e]
            if bad:
                raise DatasetError(bad[0] if "sample id" in bad[0] else
                                   f"cannot load sample id {int(spec.sample_ids[int(rows[0])])}: {bad[0]}")
            rows = [int(r) for r in rows]
            block = rows[0] // spec.block_rows
            at = rows[0] - block * spec.block_rows
            for part in forward_slices(images, dev):
                buffers.add(at, *probe(part.to(dev, non_blocking=True)))
                at += len(part)
            stop = writer.block_slice(block).stop
            if rows[-1] + 1 == stop:
                background.put(block, buffers.take(stop - block * spec.block_rows))
                buffers = _BlockBuffer(spec)  # the writer thread owns the filled one
            bar.update(task, advance=len(rows))


def forward_slices(images: torch.Tensor, dev: torch.device) -> tuple[torch.Tensor, ...]:
    """The slices of a batch the forward pass takes on ``dev`` (see ``CPU_FORWARD_ROWS``)."""
    return tuple(images.split(CPU_FORWARD_ROWS)) if dev.type == "cpu" else (images,)


class _BackgroundWrites:
    """Compress and write finished blocks on a thread while the next ones are computed.

    Compression releases the GIL, so this overlaps storage with the forward pass; at most two
    blocks wait, which keeps memory flat. A failed write is raised in the caller.
    """

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer
        self.queue: queue.Queue[tuple[int, dict[str, Any]] | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="actstore-writer", daemon=True)

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.writer.write_block(item[0], **item[1])
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                    self.error = exc

    def put(self, block: int, arrays: dict[str, Any]) -> None:
        self._raise()
        self.queue.put((block, arrays))

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def __enter__(self) -> _BackgroundWrites:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.put(None)
        self.thread.join()
        if exc[0] is None:
            self._raise()


class _BlockBuffer:
    """Collects one block's rows on the host, channels-last, in the store's dtypes."""

    def __init__(self, spec: StoreSpec) -> None:
        b = spec.block_rows
        self.logits = np.zeros((b, spec.n_logits), np.float32)
        self.maps = {s.name: np.zeros((b, *s.shape), spec.maps_dtype) for s in spec.layers}
        self.pooled = {s.name: np.zeros((b, s.channels), np.float32) for s in spec.layers}
        self.energy = np.zeros((b, spec.n_units), np.float32) if spec.unit_layers else None
        self.dtype = getattr(torch, spec.maps_dtype)

    def add(self, at: int, logits: torch.Tensor, maps: dict[str, torch.Tensor], energy: torch.Tensor | None) -> None:
        n = logits.shape[0]
        self.logits[at:at + n] = logits.float().cpu().numpy()
        for name, m in maps.items():
            self.pooled[name][at:at + n] = m.float().mean(dim=(2, 3)).cpu().numpy()
            self.maps[name][at:at + n] = m.permute(0, 2, 3, 1).to(self.dtype).cpu().numpy()
        if self.energy is not None and energy is not None:
            self.energy[at:at + n] = energy.cpu().numpy()

    def take(self, n: int) -> dict[str, Any]:
        return {"logits": self.logits[:n], "maps": {k: v[:n] for k, v in self.maps.items()},
                "pooled": {k: v[:n] for k, v in self.pooled.items()},
                "energy": None if self.energy is None else self.energy[:n]}


def _progress(enabled: bool, total_rows: int) -> Any:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    class _Rate(TextColumn):
        def render(self, task: Any) -> Any:  # images/s
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} img/s" if speed else "… img/s")

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   _Rate(""), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   console=Console(stderr=True), disable=not enabled, transient=False)
    bar.total_rows = total_rows  # type: ignore[attr-defined]
    return bar
