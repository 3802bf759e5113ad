"""ICE on a store: per class, NMF of the maps of the class's rows (all, or a coreset's), read once per
class for every target, several classes at once on the local cores when ``memory_limit`` holds that many
of the largest class; a class larger than ``memory_limit`` is fitted from streamed row blocks.

Z is the class's maps projected on its own components (codes by NNLS, then back); the accuracy
evaluation puts Z through the head (reference §2.3). Deterministic where the initialisation's SVD
is exact (D <= ``EXACT_SVD_MAX_D``, 1024); above, the randomised SVD draws from ``random_state``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any, ClassVar

import numpy as np

from ..errors import InterpretError
from ..params import Integral, Interval
from ..scheduler import dask_compute, local_cores, map_one_thread_each
from ..store.convert import as_float32
from ..store.reader import ActivationStore, open_store
from .base import (ClassData, EvalContext, Interpreter, Maps, Shapes, Target, make_features, no_progress, register,
                   rows_of, spatial_maps)
from .features import Features
from .ice import EXACT_SVD_MAX_D, ICE

NNLS_ITERATIONS = 30  # typical iterations of its transform

__all__ = ["ICEInterpreter"]


def _class_blocks(arr: Any, rows: np.ndarray, d: int, rows_per_block: int) -> Any:
    """A function starting a pass over ``arr[rows]`` as (rows·H·W, D) float32 blocks."""
    def blocks() -> Iterator[np.ndarray]:
        for i in range(0, len(rows), rows_per_block):
            yield as_float32(arr.oindex[rows[i:i + rows_per_block]]).reshape(-1, d)
    return blocks


def _workers(arr: Any, offsets: np.ndarray, memory_limit: int) -> int:
    """How many classes to fit at once (see :func:`_workers_for`)."""
    _, h, w, d = arr.shape
    return _workers_for(int(np.diff(offsets).max(initial=1)) * h * w * d * 4, len(offsets) - 1, memory_limit)


def _workers_for(largest: int, n_classes: int, memory_limit: int) -> int:
    """One class per local core, as long as that many of the largest class (``largest`` bytes of float32
    maps) fit in ``memory_limit`` together: each class then takes the path it would take alone."""
    return max(1, min(local_cores(), n_classes, memory_limit // max(largest, 1)))


class _Serialised:
    """``progress`` callable from several threads, and silenced by ``stop()``: after an error, fits still
    running in the background must not print below the error line."""

    def __init__(self, progress: Callable[..., None]) -> None:
        self.progress, self.lock, self.stopped = progress, threading.Lock(), False

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        with self.lock:
            if not self.stopped:
                self.progress(*args, **kwargs)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True


def _fit_one(store: ActivationStore, arr: Any, c: int, rows: np.ndarray, shared: np.ndarray | None,
             union: np.ndarray, ice_params: dict[str, Any]) -> dict[str, Any]:
    _, h, w, d = arr.shape
    if rows.size * h * w < ice_params["n_components"]:
        raise InterpretError(f"class '{store.classes[c]}' has {rows.size} rows ({rows.size * h * w} positions) in "
                             f"this selection, fewer than n_components={ice_params['n_components']}")
    model = ICE(**ice_params)
    f0 = time.perf_counter()
    if shared is not None:
        model.fit(shared[np.searchsorted(union, rows)])
    else:
        per_block = max(1, (64 * 2**20) // (h * w * d * 4))
        model.fit_blocks(_class_blocks(arr, rows, d, per_block), rows.size * h * w, d)
    if not np.isfinite(model.components_).all() or not np.any(model.components_):
        raise InterpretError(f"ICE on class '{store.classes[c]}' is undefined: its maps in this selection are all "
                             "zero (no concept to factorise); drop the class or use another layer")
    return {"components": model.components_, "err": model.reconstruction_err_, "n_iter": model.n_iter_,
            "converged": bool(model.converged_),
            "seconds": time.perf_counter() - f0, "rows": int(rows.size)}


def _fit_class(store: ActivationStore, arr: Any, c: int, per_target: list[np.ndarray], ice_params: dict[str, Any],
               memory_limit: int, progress: Callable[..., None] = no_progress) -> list[dict[str, Any] | None]:
    """Class ``c``'s ICE fit for each target's rows (None where a target has none); the union of the
    rows is read once when it fits in ``memory_limit``, else each fit streams its rows."""
    _, h, w, d = arr.shape
    union = np.unique(np.concatenate(per_target)) if per_target else np.empty(0, np.int64)
    if union.size == 0:
        return [None for _ in per_target]
    shared = as_float32(arr.oindex[union]) if union.size * h * w * d * 4 <= memory_limit else None
    out = []
    for rows in per_target:
        out.append(_fit_one(store, arr, c, rows, shared, union, ice_params) if rows.size else None)
        progress()
    return out


def _fit_classes(path: str, layer: str, c0: int, c1: int, per_class: list[list[np.ndarray]],
                 ice_params: dict[str, Any], memory_limit: int) -> list[tuple[int, list[dict[str, Any] | None]]]:
    """One Dask task: ICE for classes ``c0 <= c < c1`` of the store at ``path``."""
    st = open_store(path)
    arr = st.maps_array(layer)
    return [(c, _fit_class(st, arr, c, per_class[c - c0], ice_params, memory_limit)) for c in range(c0, c1)]


@register
class ICEInterpreter(Interpreter):
    name = "ice"
    label = "ICE"
    accuracy_protocol = ("the head classifies Z, each validation map projected on the concepts of its own class (the reference"
                         " protocol: the class is given, so the accuracy is that of a class-specific reconstruction)")
    estimator = ICE
    options: ClassVar[dict[str, tuple[list[Any], Any]]] = {
        "memory_limit": ([Interval(Integral, 1, None, closed="left")], 2**30)}  # bytes of a class read at once

    def recorded(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**super().recorded(params), "solver": "hals"}

    def deterministic(self, channels: int, params: dict[str, Any]) -> bool:
        return channels <= EXACT_SVD_MAX_D

    def group(self, target: Target) -> Hashable:
        """A selector run's rates share each class's read."""
        return "full" if target is None else (target.method, target.seed, target.store_key)

    def work(self, store: ActivationStore, targets: list[Target], params: dict[str, Any]) -> tuple[int, str]:
        return len(store.classes) * len(targets), "class fits"

    def fit(self, store: ActivationStore, targets: list[Target], *, layer: str | None, scheduler: str | None,
            params: dict[str, Any], progress: Callable[..., None] = no_progress) -> list[Features]:
        """Per class and target; a class's maps are read once for all targets. Classes are fitted in
        parallel on the local cores (or, with ``scheduler``, as Dask tasks of class groups)."""
        layer, arr = spatial_maps(store, layer, "ICE")
        ice_params = self.estimator_params(params)
        n_classes = len(store.classes)
        per_class = [[rows_of(store, t, c) for t in targets] for c in range(n_classes)]
        t0 = time.perf_counter()
        if scheduler is None:  # classes in parallel on the local cores, as many as memory_limit holds at once
            workers = _workers(arr, store.class_offsets, params["memory_limit"])
            tick = _Serialised(progress)
            calls = [(store, arr, c, per_class[c], ice_params, params["memory_limit"] // workers, tick)
                     for c in range(n_classes)]
            try:
                results = list(enumerate(map_one_thread_each(_fit_class, calls, workers)))
            finally:
                tick.stop()
        else:
            from ..coresets.select import class_groups

            calls = [(str(store.path), layer, c0, c1, per_class[c0:c1], ice_params, params["memory_limit"])
                     for c0, c1 in class_groups(store.class_offsets, arr)]
            results = [item for part in dask_compute(_fit_classes, calls, scheduler) for item in part]
            progress(steps=n_classes * len(targets))
        return [self._features(store, params, t, i, layer, results, time.perf_counter() - t0)
                for i, t in enumerate(targets)]

    def _features(self, store: ActivationStore, params: dict[str, Any], target: Target, i: int, layer: str,
                  results: list[tuple[int, list[dict[str, Any] | None]]], seconds: float) -> Features:
        arr = store.maps_array(layer)
        n_classes, (_, h, w, d) = len(store.classes), arr.shape
        comps = np.zeros((n_classes, params["n_components"], d), np.float32)
        errs, iters, conv = np.full(n_classes, np.nan), np.zeros(n_classes, np.int64), np.zeros(n_classes, bool)
        spent, n_rows = 0.0, 0
        for c, fitted in results:
            fit = fitted[i]
            if fit is None:
                continue
            comps[c], errs[c], iters[c], conv[c] = fit["components"], fit["err"], fit["n_iter"], fit["converged"]
            spent += fit["seconds"]
            n_rows += fit["rows"]
        cost = {"fit_seconds": spent, "bytes_read": n_rows * h * w * d * arr.dtype.itemsize}
        return make_features(store, self, params, target, layer,
                             {"components": comps, "reconstruction_err": errs, "n_iter": iters, "converged": conv},
                             {"seconds": seconds, "memory_limit": params["memory_limit"], "cost": cost})

    def _model(self, features: Features, c: int) -> ICE:
        ice = ICE(**{k: features.params[k] for k in ("n_components", "max_iter", "tol")})
        ice.components_ = features.arrays["components"][c]
        return ice

    def interpretation(self, features: Features, data: ClassData) -> Maps:
        """Z: the maps projected on the class's components (codes by NNLS, then back)."""
        return {str(features.layer): self._model(features, data.c).reconstruct(data.A)}

    def head_input(self, features: Features, data: ClassData, z: Maps, ctx: EvalContext) -> np.ndarray:
        return z[str(features.layer)]

    def units(self, features: Features, c: int) -> int:
        return int(np.count_nonzero(np.abs(features.arrays["components"][c]).sum(axis=1)))

    def fit_record(self, features: Features, c: int) -> tuple[int, bool]:
        return int(features.arrays["n_iter"][c]), bool(features.arrays["converged"][c])

    def fit_cost(self, shapes: Shapes, targets: list[list[int]], params: dict[str, Any], costs: dict[str, float]
                 ) -> tuple[float, float, float]:
        """``max_iter`` HALS iterations x (rows · H · W) x D x k per class and target, the classes shared among
        the workers ``fit`` would use; each holds one class's maps and a target's copy. ``max_iter`` is a
        bound: a fit that converges sooner costs less (on ImageNet-shaped maps most run to it)."""
        hw, d, k = shapes.height * shapes.width, shapes.channels, params["n_components"]
        largest = 4 * max(shapes.class_rows) * hw * d
        workers = _workers_for(largest, len(shapes.class_rows), params["memory_limit"])
        seconds = sum(params["max_iter"] * costs["ice_s_per_elem_iter"] * n * hw * d * k for rows in targets for n in rows)
        peak = workers * 2 * min(largest, params["memory_limit"]) / 2**20  # the class's maps and a target's copy
        seconds /= workers
        return seconds, peak, len(targets) * 4 * k * d * len(shapes.class_rows) / 2**20

    def eval_cost(self, shapes: Shapes, val_rows: list[int], n_targets: int, params: dict[str, Any],
                  costs: dict[str, float], all_layers: bool) -> float:
        """Z by ICE's NNLS transform of every class's validation maps, per target."""
        hw, d, k = shapes.height * shapes.width, shapes.channels, params["n_components"]
        return NNLS_ITERATIONS * costs["nnls_s_per_elem_iter"] * sum(val_rows) * hw * d * k * n_targets
