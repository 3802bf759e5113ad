"""The topic model on a store: minibatches streamed from a layer's maps through a shuffle buffer, the
head rebuilt from the store's provenance (weights checked by sha256), one fit per target.

``training="steps"`` gives every target as many optimiser steps as the full data gets in ``epochs``
epochs (``steps`` left unset: derived from the store, recorded in the features' meta). Z is the
topic maps (cosine of each position with each kept topic); the accuracy evaluation puts g(v(A))
through the head (completeness accuracy, reference §3.3).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..config import home
from ..errors import InterpretError
from ..params import Integral, Interval
from ..resources import fastest
from ..store.convert import as_float32
from ..store.reader import ActivationStore
from ..store.schema import choose_block_rows, codecs_for
from .base import (ClassData, EvalContext, Interpreter, Maps, Shapes, Target, make_features, no_progress, register,
                   spatial_maps, store_model_head)
from .features import Features
from .topic import TopicModel, reconstruct, topic_maps

__all__ = ["TopicInterpreter", "shuffled_batches", "COMPACT_RATIO"]


COMPACT_RATIO = 2  # a selection whose chunks hold this many times its rows is copied once (see _Compact)


class _Compact:
    """A sparse selection's rows, copied as stored into an unlinked temporary file under the actstore home
    (on the stores' disk, not a RAM-backed /tmp) on their first read: later passes read them back instead
    of decompressing every chunk they touch again (a 5 % coreset of a store decompresses twenty rows for
    each one it keeps). Positional writes and reads (no memory map: a full disk is an OSError, not a
    SIGBUS, and the pages stay out of the process's RSS)."""

    def __init__(self, folder: Path, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        import tempfile

        self.folder, self.row_shape, self.dtype = folder, row_shape, np.dtype(dtype)
        self.row_bytes = self.dtype.itemsize * int(np.prod(row_shape))
        self.file = tempfile.TemporaryFile(prefix="actstore-topic-rows-", dir=folder)  # unlinked: nothing left
        weakref.finalize(self, self.file.close)  # closed with the last pass that can read it
        self.where: dict[int, int] = {}  # chunk -> its first row in the file
        self.rows = 0

    def add(self, key: int, x: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(x, self.dtype)).cast("B")
        try:
            written = os.pwrite(self.file.fileno(), data, self.rows * self.row_bytes)
        except OSError as exc:
            written, why = -1, exc.strerror
        if written != data.nbytes:
            why = why if written < 0 else f"{written} of {data.nbytes} bytes written"
            raise InterpretError(f"cannot copy the selection's rows to a temporary file in {self.folder} ({why}): "
                                 "free space there or set ACTSTORE_HOME to a folder with room")
        self.where[key] = self.rows
        self.rows += len(x)

    def read(self, key: int, n: int, out: np.ndarray) -> None:
        raw = np.empty((n, *self.row_shape), self.dtype)
        got = os.preadv(self.file.fileno(), [memoryview(raw).cast("B")], self.where[key] * self.row_bytes)
        if got != raw.nbytes:
            raise InterpretError(f"the temporary copy of the selection's rows was cut short ({got} of {raw.nbytes} "
                                 "bytes read back)")
        as_float32(raw, out)


def _compact_for(arr: Any, by_chunk: dict[int, np.ndarray], n: int, buffer_rows: int) -> _Compact | None:
    """A compact copy when the selection overflows the buffer, its chunks hold ``COMPACT_RATIO`` times its
    rows, and the actstore home has room for it twice over; else None (the chunks are read every pass)."""
    import shutil

    chunk = arr.chunks[0]
    decompressed = sum(min(chunk, arr.shape[0] - c * chunk) for c in by_chunk)
    need = n * arr.dtype.itemsize * int(np.prod(arr.shape[1:]))
    if n <= buffer_rows or decompressed < COMPACT_RATIO * n or not hasattr(os, "preadv"):
        return None
    try:
        folder = home()
        folder.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(folder).free < 2 * need:
            return None
        return _Compact(folder, tuple(arr.shape[1:]), arr.dtype)
    except OSError:  # no room or no rights there: read the chunks every pass
        return None


def shuffled_batches(arr: Any, rows: np.ndarray, labels: np.ndarray, batch_size: int, buffer_rows: int,
                     seed: int, stats: dict[str, float] | None = None) -> Callable[[int], Iterator[Any]]:
    """Minibatches of ``arr[rows]`` through a shuffle buffer: each epoch reads the chunks holding
    ``rows`` once, in a seeded random order, and shuffles ``buffer_rows`` rows at a time. A selection
    that fits in the buffer is read once and kept (as stored): later epochs shuffle it again without
    reading; a sparse one that does not is copied once to a temporary file (:class:`_Compact`). An epoch
    allocates its buffer once and refills it, so memory stays flat and pages are not faulted in again at
    every refill."""
    chunk = arr.chunks[0]
    by_chunk = {int(c): rows[rows // chunk == c] for c in np.unique(rows // chunk)}
    kept: dict[int, np.ndarray] | None = {} if len(rows) <= buffer_rows else None
    compact = _compact_for(arr, by_chunk, len(rows), buffer_rows)
    room = min(len(rows), buffer_rows + max((len(p) for p in by_chunk.values()), default=0))

    def read(part: np.ndarray, out: np.ndarray) -> None:
        key = int(part[0] // chunk)
        if kept is not None and key in kept:
            as_float32(kept[key], out)
            return
        if compact is not None and key in compact.where:
            compact.read(key, len(part), out)
            return
        t0 = time.perf_counter()
        contiguous = part[-1] - part[0] + 1 == part.size
        x = arr[int(part[0]):int(part[-1]) + 1] if contiguous else arr.oindex[part]
        as_float32(x, out)
        if not np.isfinite(out).all():
            raise InterpretError(f"maps hold NaN or Inf in rows {int(part[0])}..{int(part[-1])}")
        if stats is not None:
            stats["read_seconds"] = stats.get("read_seconds", 0.0) + time.perf_counter() - t0
            stats["bytes_read"] = stats.get("bytes_read", 0.0) + x.size * arr.dtype.itemsize
        if kept is not None:
            kept[key] = x
        if compact is not None:
            compact.add(key, x)
            if stats is not None:
                stats["compacted_bytes"] = stats.get("compacted_bytes", 0.0) + x.size * arr.dtype.itemsize

    def batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([seed, epoch])
        buf = np.empty((room, *arr.shape[1:]), np.float32)  # refilled within the epoch, one per pass
        filled, buf_y = 0, []
        order = rng.permutation(list(by_chunk))
        for pos, c in enumerate(order):
            part = by_chunk[int(c)]
            read(part, buf[filled:filled + len(part)])
            filled += len(part)
            buf_y.append(labels[part])
            if filled >= buffer_rows or pos == len(order) - 1:
                perm = rng.permutation(filled)
                Y = np.concatenate(buf_y)[perm]
                for i in range(0, filled, batch_size):
                    yield buf[perm[i:i + batch_size]], Y[i:i + batch_size]
                filled, buf_y = 0, []

    return batches


def epoch_steps(n: int, batch_size: int, buffer_rows: int) -> int:
    """Optimiser steps of one epoch over ``n`` rows, at most: each refill of the shuffle buffer (all but the
    last hold at least ``buffer_rows``) ends with its own, possibly short, batch."""
    return -(-n // batch_size) + max(0, -(-n // buffer_rows) - 1)


def _stream_cost(shape: tuple[int, ...], batch: int, buffer_rows: int) -> tuple[float, float]:
    """Seconds per stored MB of an epoch of ``shuffled_batches`` over float16 ReLU maps of ``shape`` in a
    temporary zarr array laid out as a store lays out its maps (64 MB, or 4 batches if more): reading every
    chunk, and rereading a sparse selection's compact copy (every third row)."""
    import tempfile

    import zarr

    row_bytes = 2 * int(np.prod(shape))
    rows = max(4 * batch, 64 * 2**20 // row_bytes)
    chunk = choose_block_rows(row_bytes, rows)
    data = np.random.default_rng(0).standard_normal((rows, *shape), np.float32)
    data = np.maximum(data, 0, out=data).astype(np.float16)
    with tempfile.TemporaryDirectory() as tmp:
        arr = zarr.create_array(f"{tmp}/maps.zarr", shape=data.shape, chunks=(chunk, *shape), dtype="float16",
                                **codecs_for("float16"))
        arr[:] = data
        labels = np.zeros(rows, np.int64)
        dense = shuffled_batches(arr, np.arange(rows), labels, batch, min(buffer_rows, rows // 2), 0)
        stream = fastest(lambda: sum(1 for _ in dense(0))) / (data.nbytes / 1e6)
        third = np.arange(0, rows, 3)
        sparse = shuffled_batches(arr, third, labels, batch, min(buffer_rows, len(third) // 2), 0)
        sum(1 for _ in sparse(0))  # the first pass copies the rows
        reread = fastest(lambda: sum(1 for _ in sparse(1))) / (len(third) * row_bytes / 1e6)
        return stream, reread


@register
class TopicInterpreter(Interpreter):
    name = "topic"
    label = "topic model"
    accuracy_protocol = ("the head classifies g(v(A)), the maps rebuilt from their topic scores (the completeness accuracy)")
    estimator = TopicModel
    options: ClassVar[dict[str, tuple[list[Any], Any]]] = {
        "buffer_rows": ([Interval(Integral, 1, None, closed="left")], 4096)}  # rows shuffled together
    excluded = ("head",)  # rebuilt from the store's provenance
    unrecorded = ("device",)

    def deterministic(self, channels: int, params: dict[str, Any]) -> bool:
        return False

    def _steps(self, store: ActivationStore, params: dict[str, Any]) -> int | None:
        """The steps every target gets with training="steps": what the full data gets in ``epochs`` epochs."""
        if params["training"] == "steps" and params["steps"] is None:
            return int(params["epochs"] * -(-store.n_rows // params["batch_size"]))
        return params["steps"]

    def work(self, store: ActivationStore, targets: list[Target], params: dict[str, Any]) -> tuple[int, str]:
        steps = self._steps(store, params)
        if params["training"] == "steps":
            return int(steps or 0) * len(targets), "optimiser steps"
        rows = [store.n_rows if t is None else t.n for t in targets]
        return (sum(params["epochs"] * epoch_steps(n, params["batch_size"], params["buffer_rows"]) for n in rows),
                "optimiser steps")

    def fit(self, store: ActivationStore, targets: list[Target], *, layer: str | None, scheduler: str | None,
            params: dict[str, Any], progress: Callable[..., None] = no_progress) -> list[Features]:
        """One fit per target, on minibatches streamed from the store's maps (``scheduler`` is not used:
        SGD runs in this process)."""
        layer, arr = spatial_maps(store, layer, "the topic model")
        head = store_model_head(store, layer)
        steps = self._steps(store, params)
        out = []
        for target in targets:
            rows = target.rows(store) if target is not None else np.arange(store.n_rows)
            model = TopicModel(head=head, **{**self.estimator_params(params), "steps": steps})
            stats: dict[str, float] = {}
            t0 = time.perf_counter()
            model.fit_batches(shuffled_batches(arr, rows, store.labels, model.batch_size, params["buffer_rows"],
                                               model.random_state, stats), arr.shape[-1], progress)
            planned = self.work(store, [target], params)[0]
            if planned > model.n_iter_:  # the plan counts a short batch at every buffer refill: at most
                progress(steps=planned - model.n_iter_)
            w1, w2 = model.g_
            seconds = time.perf_counter() - t0
            meta = {"history": model.history_, "seconds": seconds, **stats, "n_iter": model.n_iter_,
                    "converged": model.converged_, "steps": steps,
                    "cost": {"fit_seconds": seconds, "bytes_read": int(stats.get("bytes_read", 0))}}
            out.append(make_features(store, self, params, target, layer,
                                     {"topics": model.topics_, "w1": w1, "w2": w2, "kept": model.kept_}, meta))
        return out

    def interpretation(self, features: Features, data: ClassData) -> Maps:
        return {str(features.layer): topic_maps(data.A, features.arrays["topics"])}

    def head_input(self, features: Features, data: ClassData, z: Maps, ctx: EvalContext) -> np.ndarray:
        """g(v(A)): the maps reconstructed from their topic scores."""
        a = features.arrays
        return reconstruct(data.A, a["topics"], a["w1"], a["w2"], float(features.params["threshold"]))

    def units(self, features: Features, c: int) -> int:
        return int(features.arrays["topics"].shape[1])

    def fit_record(self, features: Features, c: int) -> tuple[int, bool]:
        return int(features.meta["n_iter"]), bool(features.meta["converged"])

    def z_width(self, shapes: Shapes, params: dict[str, Any]) -> int:
        return int(params["n_topics"])

    def eval_cost(self, shapes: Shapes, val_rows: list[int], n_targets: int, params: dict[str, Any],
                  costs: dict[str, float], all_layers: bool) -> float:
        """Topic scores and the maps rebuilt from them, per target: about one optimiser step's work per row."""
        return sum(val_rows) * n_targets * costs["topic_step_s"] / params["batch_size"]

    cost_params = ("batch_size", "n_topics", "hidden", "top_k", "buffer_rows", "device")

    def measure_costs(self, head: Any, shape: tuple[int, ...], n_classes: int, params: dict[str, Any]
                      ) -> dict[str, float]:
        """One optimiser step's seconds at the run's batch, topics and hidden width (maps in memory), and the
        seconds per stored MB of streaming float16 maps from a zarr array through the shuffle buffer."""
        rng = np.random.default_rng(0)
        batch = params["batch_size"]
        maps = np.abs(rng.standard_normal((batch, *shape))).astype(np.float32)
        labels = rng.integers(0, n_classes, batch)

        def fit(steps: int) -> float:
            model = TopicModel(head=head, **{**self.estimator_params(params), "training": "steps", "steps": steps})
            return fastest(lambda: model.fit(maps, labels))

        fit(1)  # warm up
        step = max(1e-6, (fit(6) - fit(2)) / 4)
        stream, reread = _stream_cost(shape, batch, params["buffer_rows"])
        return {"topic_step_s": step, "topic_stream_s_per_MB": stream, "topic_reread_s_per_MB": reread}

    def fit_cost(self, shapes: Shapes, targets: list[list[int]], params: dict[str, Any], costs: dict[str, float]
                 ) -> tuple[float, float, float]:
        """Per target: optimiser steps x one step's measured cost, plus streaming its maps: a pass over a
        selection decompresses every chunk it touches (once in all when the selection fits the shuffle
        buffer; once, then rereads of its compact copy, when it is sparse); the buffer of float32 maps and,
        for a kept selection, its stored chunks in memory."""
        row_bytes = 2 * shapes.height * shapes.width * shapes.channels  # float16 maps
        chunk = choose_block_rows(max(row_bytes, 4 * shapes.units), shapes.n_rows)
        n_chunks = -(-shapes.n_rows // chunk)
        batch, buffer_rows, seconds = params["batch_size"], params["buffer_rows"], 0.0
        for rows in targets:
            n = max(1, sum(rows))
            if params["training"] == "steps":
                steps = int(params["steps"] or params["epochs"] * -(-shapes.n_rows // batch))
            else:
                steps = params["epochs"] * epoch_steps(n, batch, buffer_rows)
            touched = min(shapes.n_rows, n_chunks * chunk * (1 - (1 - n / shapes.n_rows) ** chunk))
            passes = 1.0 if n <= buffer_rows else steps * batch / n
            if n > buffer_rows and touched >= COMPACT_RATIO * n:  # read once, then from the compact copy
                streamed, reread = min(1.0, passes) * touched, max(0.0, passes - 1) * n
            else:
                streamed, reread = passes * touched, 0.0
            seconds += steps * costs["topic_step_s"] + row_bytes / 1e6 * (
                streamed * costs["topic_stream_s_per_MB"] + reread * costs["topic_reread_s_per_MB"])
        largest = max((sum(rows) for rows in targets), default=0)
        peak = (4 * (buffer_rows + chunk) + (2 if largest <= buffer_rows else 0) * largest) * row_bytes / 2 / 2**20
        return seconds, peak, len(targets) * 4 * shapes.channels * params["n_topics"] / 2**20

