"""Store-level interpretation: feed an estimator a store's row blocks, on all rows or a coreset's.

Several coresets in one call share the reads: VEBI accumulates every coreset's (G, b) in the same
pass over ``units/energy``; ICE reads each class's maps once for the union of the coresets' rows.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Catalog, open_catalog
from ..config import home
from ..coresets.artifact import Coreset
from ..resources import measured
from ..scheduler import check_scheduler, dask_compute
from ..store.reader import ActivationStore, open_store
from .features import Features
from .ice import ICE
from .topic import TOPIC_DEFAULTS, TopicModel
from .vebi import DEFAULT_MU, VEBI, InterpretError, accumulate_gram

__all__ = ["interpret", "vebi_stats", "fit_vebi", "fit_ice", "fit_topic", "save_features", "shuffled_batches",
           "store_model_head", "store_model", "METHODS"]

METHODS = ("ice", "vebi", "topic")
_PARAMS: dict[str, dict[str, Any]] = {
    "vebi": {"mu": DEFAULT_MU, "labels": "predicted", "block_rows": None},
    "ice": {"n_components": 10, "max_iter": 200, "tol": 1e-4, "random_state": 0, "memory_limit": 2**30},
    "topic": {**TOPIC_DEFAULTS, "buffer_rows": 4096, "device": "auto"},
}

Target = Coreset | None  # None: the full data


def _read_ahead(arrays: list[Any], step: int, n: int, first: int = 0) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yield (start, [array[start:min(n, start+step)] for each]) for start from ``first`` up to ``n``,
    sequentially, reading one block ahead.
    If the consumer stops early (an error), the reader thread is told to stop and is not left blocked."""
    q: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def reader() -> None:
        try:
            for start in range(first, n, step):
                if stop.is_set():
                    return
                put((start, [np.asarray(a[start:min(n, start + step)]) for a in arrays]))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            put(exc)
        put(None)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def vebi_stats(store: ActivationStore, targets: list[Target], labels: str = "predicted",
               block_rows: int | None = None, scheduler: str | None = None
               ) -> tuple[list[tuple[np.ndarray, np.ndarray, int]], dict[str, Any]]:
    """One pass over ``units/energy`` (and logits): per target (G, b, n) in float64.

    Without ``scheduler`` the pass is one sequential stream with read-ahead: each partial Gram is
    P x P (0.12 GB for ResNet18, 4 GB for ResNet50), and a reduction tree would hold several. With
    a scheduler, row ranges of whole chunks become Dask tasks whose partial sums are added in a tree.
    """
    if labels not in ("predicted", "true"):
        raise InterpretError(f"labels must be 'predicted' or 'true', not '{labels}'")
    energy = store.array("units/energy")
    n, p = energy.shape
    rows = [np.sort(t.rows(store)) if t is not None else None for t in targets]
    step = block_rows or max(energy.chunks[0], (64 * 2**20) // (8 * p) // energy.chunks[0] * energy.chunks[0])
    if scheduler is None:
        return _vebi_range(store, rows, labels, step, 0, n)
    chunk = energy.chunks[0]
    per_task = chunk * max(1, -(-n // chunk) // 16)  # about 16 tasks of whole chunks
    def within(lo: int, hi: int) -> list[np.ndarray | None]:  # each task carries only its own rows
        return [None if r is None else r[np.searchsorted(r, lo):np.searchsorted(r, hi)] for r in rows]

    calls = [(str(store.path), within(lo, min(n, lo + per_task)), labels, step, lo, min(n, lo + per_task))
             for lo in range(0, n, per_task)]
    return dask_compute(_vebi_range, calls, scheduler, combine=_add_stats)[0]


def _add_stats(a: tuple[list[Any], dict[str, Any]], b: tuple[list[Any], dict[str, Any]]
               ) -> tuple[list[Any], dict[str, Any]]:
    """Two partial VEBI passes added (the Dask reduction); the first one's arrays are reused."""
    acc = [(Ga + Gb, ba + bb, na + nb) for (Ga, ba, na), (Gb, bb, nb) in zip(a[0], b[0], strict=True)]
    stats = {k: (a[1][k] + b[1][k] if k != "target_seconds" else
                 [x + y for x, y in zip(a[1][k], b[1][k], strict=True)]) for k in a[1]}
    return acc, stats


def _vebi_range(store: ActivationStore | str, rows: list[np.ndarray | None], labels: str, step: int,
                lo: int, hi: int) -> tuple[list[tuple[np.ndarray, np.ndarray, int]], dict[str, Any]]:
    """(G, b, n) per target over store rows ``lo <= i < hi``; ``rows``: each target's sorted rows (None: all)."""
    st = store if isinstance(store, ActivationStore) else open_store(store)
    energy = st.array("units/energy")
    logits = st.array("samples/logits")
    p = energy.shape[1]
    k = logits.shape[1] if labels == "predicted" else len(st.classes)
    masks = []
    for r in rows:
        m = np.zeros(hi - lo, bool)
        if r is None:
            m[:] = True
        else:
            m[r[np.searchsorted(r, lo):np.searchsorted(r, hi)] - lo] = True
        masks.append(m)
    acc = [(np.zeros((p, p)), np.zeros((p, k)), 0) for _ in rows]
    t0, gemm = time.perf_counter(), 0.0
    nbytes = 0
    per_target_seconds = [0.0] * len(rows)
    for start, (e, lg) in _read_ahead([energy, logits], step, hi, lo):
        if not np.isfinite(e).all():
            raise InterpretError(f"{st.path}: units/energy holds NaN or Inf near row {start}")
        nbytes += e.nbytes + lg.nbytes
        y = lg.argmax(axis=1) if labels == "predicted" else st.labels[start:start + len(e)]
        for i, m in enumerate(masks):
            sel = m[start - lo:start - lo + len(e)]
            if not sel.any():
                continue
            X = e if sel.all() else e[sel]
            ys = y[sel]
            g0 = time.perf_counter()
            G, b, cnt = acc[i]
            accumulate_gram(G, b, X, ys)
            gemm += time.perf_counter() - g0
            per_target_seconds[i] += time.perf_counter() - g0
            acc[i] = (G, b, cnt + len(X))
    stats = {"seconds": time.perf_counter() - t0, "gemm_seconds": gemm, "bytes_read": nbytes,
             "target_seconds": per_target_seconds}
    return acc, stats


def fit_vebi(store: ActivationStore, targets: list[Target], mu: float = DEFAULT_MU, labels: str = "predicted",
             block_rows: int | None = None, scheduler: str | None = None) -> list[Features]:
    """VEBI R for each target from one pass over the store."""
    if not np.isfinite(mu) or mu <= 0:
        raise InterpretError(f"mu must be > 0, got {mu}")
    accs, stats = vebi_stats(store, targets, labels, block_rows, scheduler)
    table = store.unit_table
    row_bytes = 4 * (store.array("units/energy").shape[1] + store.array("samples/logits").shape[1])
    out = []
    for i, (target, (G, b, n)) in enumerate(zip(targets, accs, strict=True)):
        if n == 0:
            raise InterpretError("a coreset selects no rows of this store")
        t0 = time.perf_counter()
        model = VEBI(mu=mu).fit_gram(G, b, n, unit_table=table)
        out.append(_features(store, "vebi", recorded_params("vebi", {"mu": mu, "labels": labels}), target, None,
                             {"coef": model.coef_, "unit_layer": np.array([u[0] for u in table]),
                              "unit_channel": np.array([u[1] for u in table], np.int32)},
                             {"n_rows": int(n), "units_per_class": [int(len(r)) for r in model.relevant_units_],
                              "pass": {k: v for k, v in stats.items() if k != "target_seconds"},
                              "solve_seconds": time.perf_counter() - t0,
                              "cost": {"fit_seconds": stats["target_seconds"][i] + time.perf_counter() - t0,
                                       "bytes_read": int(n) * row_bytes}}))
    return out


def _class_blocks(arr: Any, rows: np.ndarray, d: int, rows_per_block: int) -> Any:
    """A function starting a pass over ``arr[rows]`` as (rows·H·W, D) float32 blocks."""
    def blocks() -> Iterator[np.ndarray]:
        for i in range(0, len(rows), rows_per_block):
            sel = rows[i:i + rows_per_block]
            yield np.asarray(arr.oindex[sel], np.float32).reshape(-1, d)
    return blocks


def recorded_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters a Features artifact records (and its key hashes), from ``params`` merged
    over the defaults: what changes R, not how it is read (block sizes, memory limit, device)."""
    if method == "vebi":
        return {"mu": float(params["mu"]), "labels": params["labels"]}
    if method == "ice":
        return {**{k: params[k] for k in ("n_components", "max_iter", "tol", "random_state")},
                "init": "nndsvda", "solver": "hals"}
    return {k: params[k] for k in TOPIC_DEFAULTS}


def _spatial_maps(store: ActivationStore, layer: str | None, who: str) -> tuple[str, Any]:
    """(layer, its maps array): the store's last layer by default; an error unless (N, H, W, D)."""
    layer = layer or store.layers[-1]
    if layer not in store.layers:
        raise InterpretError(f"{store.path}: no layer '{layer}'; this store has {', '.join(store.layers)}")
    arr = store.array(f"layers/{layer}/maps")
    if arr.ndim != 4:
        raise InterpretError(f"{who} needs spatial maps (N, H, W, D); '{layer}' has shape {arr.shape}")
    return layer, arr


def fit_ice(store: ActivationStore, targets: list[Target], layer: str | None = None, scheduler: str | None = None,
            **params: Any) -> list[Features]:
    """ICE R (per class components) for each target; a class's maps are read once for all targets.
    With ``scheduler``, groups of classes are Dask tasks."""
    layer, arr = _spatial_maps(store, layer, "ICE")
    memory_limit = int(params.pop("memory_limit"))
    ice_params = {k: params[k] for k in ("n_components", "max_iter", "tol", "random_state")}
    _, h, w, d = arr.shape
    n_classes = len(store.classes)
    comps = [np.zeros((n_classes, ice_params["n_components"], d), np.float32) for _ in targets]
    errs = [np.full(n_classes, np.nan) for _ in targets]
    iters = [np.zeros(n_classes, np.int64) for _ in targets]
    spent = [0.0] * len(targets)
    n_rows = [0] * len(targets)
    t0 = time.perf_counter()
    per_class = [[t.class_rows(store, c) if t is not None else np.arange(store.class_rows(c).start,
                                                                       store.class_rows(c).stop)
                  for t in targets] for c in range(n_classes)]
    if scheduler is None:
        results = [(c, _ice_class(store, arr, c, per_class[c], ice_params, memory_limit)) for c in range(n_classes)]
    else:
        from ..coresets.select import class_groups

        calls = [(str(store.path), layer, c0, c1, per_class[c0:c1], ice_params, memory_limit)
                 for c0, c1 in class_groups(store.class_offsets, arr)]
        results = [item for part in dask_compute(_ice_classes, calls, scheduler) for item in part]
    for c, fitted in results:
        for i, fit in enumerate(fitted):
            if fit is None:
                continue
            comps[i][c], errs[i][c], iters[i][c] = fit["components"], fit["err"], fit["n_iter"]
            spent[i] += fit["seconds"]
            n_rows[i] += fit["rows"]
    seconds = time.perf_counter() - t0
    return [_features(store, "ice", recorded_params("ice", ice_params), t, layer,
                      {"components": comps[i], "reconstruction_err": errs[i], "n_iter": iters[i]},
                      {"seconds": seconds, "memory_limit": memory_limit,
                       "cost": {"fit_seconds": spent[i], "bytes_read": n_rows[i] * h * w * d * arr.dtype.itemsize}})
            for i, t in enumerate(targets)]


def _ice_class(store: ActivationStore, arr: Any, c: int, per_target: list[np.ndarray], ice_params: dict[str, Any],
               memory_limit: int) -> list[dict[str, Any] | None]:
    """Class ``c``'s ICE fit for each target's rows (None where a target has none); the union of
    the rows is read once when it fits in ``memory_limit``, else each fit streams its rows."""
    _, h, w, d = arr.shape
    row_bytes = h * w * d * 4
    union = np.unique(np.concatenate(per_target)) if per_target else np.empty(0, np.int64)
    if union.size == 0:
        return [None for _ in per_target]
    shared = np.asarray(arr.oindex[union], np.float32) if union.size * row_bytes <= memory_limit else None
    out: list[dict[str, Any] | None] = []
    for rows in per_target:
        if rows.size * h * w < ice_params["n_components"]:
            raise InterpretError(f"class '{store.classes[c]}' has {rows.size} rows ({rows.size * h * w} "
                                 f"positions) in this selection, fewer than n_components="
                                 f"{ice_params['n_components']}")
        model = ICE(**ice_params, memory_limit=memory_limit)
        f0 = time.perf_counter()
        if shared is not None:
            model.fit(shared[np.searchsorted(union, rows)])
        else:
            per_block = max(1, (64 * 2**20) // row_bytes)
            model.fit_blocks(_class_blocks(arr, rows, d, per_block), rows.size * h * w, d)
        out.append({"components": model.components_, "err": model.reconstruction_err_, "n_iter": model.n_iter_,
                    "seconds": time.perf_counter() - f0, "rows": int(rows.size)})
    return out


def _ice_classes(path: str, layer: str, c0: int, c1: int, per_class: list[list[np.ndarray]],
                 ice_params: dict[str, Any], memory_limit: int) -> list[tuple[int, list[dict[str, Any] | None]]]:
    """One Dask task: ICE for classes ``c0 <= c < c1`` of the store at ``path``."""
    st = open_store(path)
    arr = st.array(f"layers/{layer}/maps")
    return [(c, _ice_class(st, arr, c, per_class[c - c0], ice_params, memory_limit)) for c in range(c0, c1)]


def shuffled_batches(arr: Any, rows: np.ndarray, labels: np.ndarray, batch_size: int, buffer_rows: int,
                     seed: int, stats: dict[str, float] | None = None) -> Callable[[int], Iterator[Any]]:
    """Minibatches of ``arr[rows]`` through a shuffle buffer: each epoch reads the chunks holding
    ``rows`` once, in a seeded random order, and shuffles ``buffer_rows`` rows at a time."""
    chunk = arr.chunks[0]
    by_chunk = {int(c): rows[rows // chunk == c] for c in np.unique(rows // chunk)}

    def batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([seed, epoch])
        buf_x: list[np.ndarray] = []
        buf_y: list[np.ndarray] = []
        held = 0
        order = rng.permutation(list(by_chunk))
        for pos, c in enumerate(order):
            t0 = time.perf_counter()
            part = by_chunk[int(c)]
            contiguous = part[-1] - part[0] + 1 == part.size
            x = np.asarray(arr[int(part[0]):int(part[-1]) + 1] if contiguous else arr.oindex[part], np.float32)
            if stats is not None:
                stats["read_seconds"] = stats.get("read_seconds", 0.0) + time.perf_counter() - t0
                stats["bytes_read"] = stats.get("bytes_read", 0.0) + x.size * arr.dtype.itemsize
            buf_x.append(x)
            buf_y.append(labels[part])
            held += len(part)
            if held >= buffer_rows or pos == len(order) - 1:
                X, Y = np.concatenate(buf_x), np.concatenate(buf_y)
                perm = rng.permutation(len(X))
                X, Y = X[perm], Y[perm]
                for i in range(0, len(X), batch_size):
                    yield X[i:i + batch_size], Y[i:i + batch_size]
                buf_x, buf_y, held = [], [], 0

    return batches


def store_model_head(store: ActivationStore, layer: str) -> Any:
    """The frozen head of the model that made ``store``, rebuilt from its provenance (weights checked)."""
    from ..extract.heads import model_head

    return model_head(store_model(store), layer)


def store_model(store: ActivationStore) -> Any:
    """The model that made ``store``, rebuilt from its provenance; refused if its weights changed."""
    from ..extract.models import load_model

    prov = store.provenance["model"]
    weights = prov.get("weights")
    loaded = load_model(prov["builder"], weights, num_classes=prov.get("num_classes"))
    if prov.get("weights_sha256") and loaded.weights_sha256 != prov["weights_sha256"]:
        raise InterpretError(f"{store.path}: the weights of '{prov['name']}' changed since extraction "
                             f"(sha256 {loaded.weights_sha256} != {prov['weights_sha256']}); re-extract the store")
    return loaded


def fit_topic(store: ActivationStore, targets: list[Target], layer: str | None = None, **params: Any
              ) -> list[Features]:
    """Topic R for each target, trained on minibatches streamed from the store's maps."""
    layer, arr = _spatial_maps(store, layer, "the topic model")
    buffer_rows = int(params.pop("buffer_rows"))
    head = store_model_head(store, layer)
    out = []
    for target in targets:
        rows = target.rows(store) if target is not None else np.arange(store.n_rows)
        model = TopicModel(**params)
        stats: dict[str, float] = {}
        t0 = time.perf_counter()
        model.fit(shuffled_batches(arr, rows, store.labels, model.batch_size, buffer_rows, model.seed, stats),
                  head, arr.shape[-1])
        w1, w2 = model.g_
        out.append(_features(store, "topic", recorded_params("topic", model.get_params()), target, layer,
                             {"topics": model.topics_, "w1": w1, "w2": w2, "kept": model.kept_},
                             {"history": model.history_, "seconds": time.perf_counter() - t0, **stats,
                              "cost": {"fit_seconds": time.perf_counter() - t0,
                                       "bytes_read": int(stats.get("bytes_read", 0))}}))
    return out


def _features(store: ActivationStore, method: str, params: dict[str, Any], target: Target, layer: str | None,
              arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Features:
    return Features(method=method, params=params, arrays=arrays, store_key=store.key, store_path=str(store.path),
                    fingerprint=store.fingerprint, coreset=None if target is None else target.key, layer=layer,
                    meta={**meta, "coreset_rate": None if target is None else target.rate,
                          "coreset_method": None if target is None else target.method})


def save_features(features: Features, catalog: Catalog | str | os.PathLike[str] | None = None,
                  out_dir: str | os.PathLike[str] | None = None, name: str | None = None) -> tuple[str, Path]:
    """Save atomically under ``out_dir`` (default ``ACTSTORE_HOME/features``) and register in the catalog."""
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    store_name = cat.find("stores", key=features.store_key) or Path(features.store_path).stem
    what = "full" if features.coreset is None else (
        f"{features.meta.get('coreset_method')}.r{features.meta.get('coreset_rate'):g}")
    name = name or f"{store_name}.{features.method}.{what}.{features.key[:6]}"
    folder = Path(out_dir) if out_dir is not None else home() / "features"
    path = features.save(folder / f"{name}.zarr")
    cat.add("features", name, {"path": str(path), "fingerprint": features.fingerprint, "key": features.key,
                               "provenance": {"method": features.method, "params": features.params,
                                              "coreset": features.coreset, "layer": features.layer,
                                              "store": store_name}})
    return name, path


def interpret(store: ActivationStore | str | os.PathLike[str], method: str,
              coresets: list[Coreset | str | os.PathLike[str]] | None = None, full: bool | None = None,
              layer: str | None = None, scheduler: str | None = None, **params: Any) -> list[Features]:
    """Run ``method`` ("ice", "vebi" or "topic") on ``store``: on each coreset's rows, and on all rows when
    ``full`` (the default when no coreset is given). Returns one Features per target, in order.
    ``scheduler``: where ICE's classes and VEBI's pass run as Dask tasks (:mod:`actstore.scheduler`);
    the topic model trains in this process. Each records its cost in ``meta["cost"]``: its own fit time and the bytes its rows take, and the
    call's peak memory and wall time (shared: targets of one call share one pass over the store)."""
    scheduler = check_scheduler(scheduler)
    st = store if isinstance(store, ActivationStore) else open_store(store)
    if method not in _PARAMS:
        raise InterpretError(f"unknown interpretation method '{method}'; known: {', '.join(METHODS)}")
    unknown = set(params) - set(_PARAMS[method])
    if unknown:
        raise InterpretError(f"unknown parameter(s) {sorted(unknown)} for '{method}'; "
                             f"allowed: {', '.join(_PARAMS[method])}")
    merged = {**_PARAMS[method], **params}
    loaded = [c if isinstance(c, Coreset) else Coreset.load(c) for c in (coresets or [])]
    targets: list[Target] = [*loaded, *([None] if (full if full is not None else not loaded) else [])]
    for cs in loaded:
        cs.rows(st)  # a coreset of another dataset fails here, before any work
    with measured() as call:
        if method == "vebi":
            out = fit_vebi(st, targets, mu=float(merged["mu"]), labels=merged["labels"],
                           block_rows=merged["block_rows"], scheduler=scheduler)
        elif method == "topic":
            out = fit_topic(st, targets, layer, **merged)
        else:
            out = fit_ice(st, targets, layer, scheduler=scheduler, **merged)
    for f in out:  # the call's peak memory and wall time are shared by its targets
        f.meta["cost"] = {**f.meta.get("cost", {}), "peak_rss_MB": call["peak_rss_MB"],
                          "call_seconds": call["seconds"], "call_targets": len(out)}
    return out
