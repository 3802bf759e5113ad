"""Store-level selection: read ``pooled`` class by class, select for every rate in one pass."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import Catalog, open_catalog
from ..config import home
from ..errors import StoreError
from ..names import MAX_NAME, path_under, slug
from ..progress import progress_bar
from ..scheduler import check_scheduler, dask_compute
from ..store.reader import ActivationStore, open_store
from .artifact import Coreset
from .base import PAPER_RATES, SelectionError, check_params, check_rate, class_budget, get_selector

__all__ = ["select", "select_many", "coreset_keys", "save_coreset", "load_scores", "PAPER_RATES"]

def _as_store(store: ActivationStore | str | os.PathLike[str]) -> ActivationStore:
    return store if isinstance(store, ActivationStore) else open_store(store)


def load_scores(store: ActivationStore, scores: Any) -> np.ndarray:
    """Per-row scores for d2pruning: an (N,) array in row order, a ``.npy`` file in row order, or
    a ``.csv`` of ``id,score`` lines (dataset sample ids, mapped to this store's rows)."""
    if isinstance(scores, (str, os.PathLike)):
        path = Path(scores)
        if not path.is_file():
            raise SelectionError(f"scores file {path} does not exist")
        if path.suffix == ".csv":
            try:
                table = np.loadtxt(path, delimiter=",", ndmin=2, comments="#")
            except ValueError as exc:
                raise SelectionError(f"{path}: not an id,score CSV ({exc})") from None
            if table.shape[1] != 2:
                raise SelectionError(f"{path}: expected 2 columns (id,score), got {table.shape[1]}")
            out = np.full(store.n_rows, np.nan)
            out[store.rows_for_ids(table[:, 0].astype(np.int64))] = table[:, 1]
            if np.isnan(out).any():
                raise SelectionError(f"{path}: no score for {int(np.isnan(out).sum())} rows of {store.path}")
            return out
        try:
            scores = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise SelectionError(f"{path}: not a .npy array of scores ({exc})") from None
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != (store.n_rows,):
        raise SelectionError(f"scores must have one value per row of the store ({store.n_rows}), got {arr.shape}")
    return arr


def _scores_for(st: ActivationStore, method: str, needs: bool, scores_arg: Any) -> np.ndarray | None:
    if needs:
        if scores_arg is None:
            raise SelectionError(f"'{method}' needs per-sample scores: pass scores=FILE (.npy rows or id,score .csv)")
        return load_scores(st, scores_arg)
    if scores_arg is not None:
        raise SelectionError(f"'{method}' takes no scores")
    return None


def _pooled(st: ActivationStore, layer: str | None) -> tuple[str, Any]:
    """(layer, its pooled array): the layer the selector reads (default: the store's last)."""
    used = layer or st.layers[-1]
    if used not in st.layers:
        raise StoreError(f"{st.path}: no layer '{used}'; this store has {', '.join(st.layers)}")
    try:
        return used, st.pooled_array(used)
    except StoreError:
        raise StoreError(f"{st.path}: layer '{used}' has no pooled array to select on") from None


def _stream(st: ActivationStore, method: str, pooled: Any, run: Any, n_jobs: int | None, progress: bool
            ) -> dict[int, list[np.ndarray]]:
    """``run(c, X)`` for every class on up to ``n_jobs`` threads, a bounded number in flight, in class order."""
    workers = n_jobs or os.cpu_count() or 1
    results: dict[int, list[np.ndarray]] = {}
    with progress_bar(progress, len(st.classes), f"select {method}", "classes") as advance, \
            ThreadPoolExecutor(workers) as pool:
        in_flight: dict[int, Any] = {}
        for c, X in iter_classes(pooled, st.class_offsets):
            in_flight[c] = pool.submit(run, c, X)
            while len(in_flight) > 2 * workers:  # bounded: memory holds a few classes, never the layer
                done = min(in_flight)
                results[done] = in_flight.pop(done).result()
                advance()
        for c in sorted(in_flight):
            results[c] = in_flight.pop(c).result()
            advance()
    return results


def coreset_keys(store_key: str, layers: list[str], method: str, rates: list[float] | tuple[float, ...], seed: int = 0,
                 layer: str | None = None, **params: Any) -> list[str]:
    """The keys :func:`select_many` would give its coresets on a store with ``store_key`` and ``layers``,
    without reading it (selectors with per-sample scores excluded: their key names the scores' source)."""
    selector = get_selector(method)
    used = check_params(selector, params)
    used_layer = (layer or layers[-1]) if selector.needs_features else None
    return [Coreset.key_of(method, used, check_rate(r), seed, used_layer, store_key) for r in rates]


def select_many(
    store: ActivationStore | str | os.PathLike[str],
    method: str,
    rates: list[float] | tuple[float, ...],
    *,
    layer: str | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
    progress: bool = False,
    scheduler: str | None = None,
    **params: Any,
) -> list[Coreset]:
    """One coreset per rate from a single pass over the store, class by class.

    Reads ``layer``'s pooled activations (default: the store's last layer) one class at a time, on up
    to ``n_jobs`` threads (default: CPU count), so memory holds a few classes, never the layer.
    With ``scheduler`` (see :mod:`actstore.scheduler`) the classes are split into Dask tasks instead.
    """
    scheduler = check_scheduler(scheduler)
    if n_jobs is not None and (isinstance(n_jobs, bool) or int(n_jobs) != n_jobs or n_jobs < 1):
        raise SelectionError(f"n_jobs must be a whole number >= 1 (classes selected at once), got {n_jobs}")
    st = _as_store(store)
    selector = get_selector(method)
    scores_arg = params.pop("scores", None)
    params = check_params(selector, params)
    rates = [check_rate(r) for r in rates]
    if not rates:
        raise SelectionError("give at least one rate")
    scores = _scores_for(st, method, selector.needs_scores, scores_arg)
    used_layer, pooled = _pooled(st, layer) if selector.needs_features else (None, None)
    if scheduler is None:
        results = _stream(st, method, pooled, lambda c, X: _select_class(st, method, c, X, rates, seed, scores,
                                                                          params, used_layer), n_jobs, progress)
    else:
        calls = [(str(st.path), method, c0, c1, rates, seed,
                  None if scores is None else scores[st.class_offsets[c0]:st.class_offsets[c1]], params, used_layer)
                 for c0, c1 in class_groups(st.class_offsets, pooled)]
        results = {c: ids for part in dask_compute(_select_classes, calls, scheduler) for c, ids in part.items()}
    used_params = {k: (str(v) if isinstance(v, (np.ndarray, Path)) else v) for k, v in params.items()}
    if scores_arg is not None:
        used_params["scores"] = str(scores_arg) if isinstance(scores_arg, (str, os.PathLike)) else "array"
    return [Coreset(ids_by_class={c: np.sort(results[c][i]) for c in range(len(st.classes))}, method=method,
                    params=used_params, rate=rate, seed=seed, layer=used_layer, fingerprint=st.fingerprint,
                    store_key=st.key, store_path=str(st.path), classes=st.classes)
            for i, rate in enumerate(rates)]


def _select_class(st: ActivationStore, method: str, c: int, X: np.ndarray | None, rates: list[float], seed: int,
                  scores: np.ndarray | None, params: dict[str, Any], layer: str | None,
                  offset: int | None = None) -> list[np.ndarray]:
    """Class ``c``'s kept sample ids for each rate. ``scores``: per row of the store, or of the rows
    from ``offset`` on."""
    rows = st.class_rows(c)
    n = rows.stop - rows.start
    if n == 0:
        return [np.empty(0, np.int64) for _ in rates]
    if X is None:
        X = np.empty((n, 0))
    elif not np.isfinite(X).all():
        bad = rows.start + int(np.argwhere(~np.isfinite(X))[0][0])
        raise SelectionError(f"{st.path}: layers/{layer}/pooled holds NaN or Inf (class "
                             f"'{st.classes[c]}', row {bad}); re-extract the store")
    shift = offset or 0
    extra = {"scores": scores[rows.start - shift:rows.stop - shift]} if scores is not None else {}
    budgets = [class_budget(n, r) for r in rates]
    local = get_selector(method).per_class(X, budgets, rates=list(rates), seed=seed, label=c, **extra, **params)
    return [st.sample_ids[rows][idx] for idx in local]


def _select_classes(path: str, method: str, c0: int, c1: int, rates: list[float], seed: int,
                    scores: np.ndarray | None, params: dict[str, Any], layer: str | None) -> dict[int, list[np.ndarray]]:
    """One Dask task: classes ``c0 <= c < c1``, their rows read in one slice of the store at ``path``."""
    st = open_store(path)
    lo, hi = int(st.class_offsets[c0]), int(st.class_offsets[c1])
    block = np.asarray(st.pooled_array(layer)[lo:hi]) if layer is not None else None
    out = {}
    for c in range(c0, c1):
        a, b = int(st.class_offsets[c]) - lo, int(st.class_offsets[c + 1]) - lo
        out[c] = _select_class(st, method, c, None if block is None else block[a:b], rates, seed, scores, params,
                               layer, offset=lo)
    return out


def class_groups(offsets: np.ndarray, array: Any, max_bytes: int = 64 * 2**20, min_tasks: int = 16
                 ) -> list[tuple[int, int]]:
    """Contiguous class ranges ``[c0, c1)`` for Dask tasks: about ``max_bytes`` of ``array`` rows each
    (fewer when that leaves under ``min_tasks`` tasks), never splitting a class."""
    n_classes = len(offsets) - 1
    row_bytes = 8 if array is None else max(1, int(np.prod(array.shape[1:])) * array.dtype.itemsize)
    total = int(offsets[-1]) * row_bytes
    target = max(1, min(max_bytes, total // min_tasks))
    groups, c0 = [], 0
    for c in range(n_classes):
        if (int(offsets[c + 1]) - int(offsets[c0])) * row_bytes >= target or c == n_classes - 1:
            groups.append((c0, c + 1))
            c0 = c + 1
    return groups


def iter_classes(array: Any, offsets: np.ndarray, min_bytes: int = 16 * 2**20) -> Any:
    """Yield ``(class, rows of that class)`` reading ``array`` once, sequentially, in chunk-aligned
    blocks (a class is not re-read from a chunk it shares with its neighbours). ``array=None``
    yields ``(class, None)`` for every class."""
    n_classes = len(offsets) - 1
    if array is None:
        yield from ((c, None) for c in range(n_classes))
        return
    n = array.shape[0]
    row_bytes = max(1, int(np.prod(array.shape[1:])) * array.dtype.itemsize)
    chunk = array.chunks[0]
    step = chunk * max(1, min_bytes // (chunk * row_bytes))
    pending, pending_start, c = None, 0, 0
    for start in range(0, n, step):
        block = np.asarray(array[start:min(n, start + step)])
        pending = block if pending is None else np.concatenate([pending, block])
        stop = start + block.shape[0]
        first_unused = pending_start
        while c < n_classes and offsets[c + 1] <= stop:
            lo, hi = int(offsets[c]) - pending_start, int(offsets[c + 1]) - pending_start
            yield c, pending[lo:hi].copy()
            first_unused = int(offsets[c + 1])
            c += 1
        pending = pending[first_unused - pending_start:]
        pending_start = first_unused
    while c < n_classes:  # trailing empty classes
        yield c, pending[:0].copy()
        c += 1


def select(store: ActivationStore | str | os.PathLike[str], method: str, rate: float, layer: str | None = None,
           seed: int = 0, scheduler: str | None = None, **params: Any) -> Coreset:
    """The coreset ``method`` keeps at ``rate`` on ``store`` (see :func:`select_many`)."""
    return select_many(store, method, [rate], layer=layer, seed=seed, scheduler=scheduler, **params)[0]


def save_coreset(coreset: Coreset, catalog: Catalog | str | os.PathLike[str] | None = None,
                 out_dir: str | os.PathLike[str] | None = None, name: str | None = None) -> tuple[str, Path]:
    """Save ``coreset`` atomically and register it in the catalog; returns (catalog name, path).
    The name becomes the file name only through :func:`actstore.names.path_under`."""
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    store_name = cat.find("stores", key=coreset.store_key) or Path(coreset.store_path).stem
    name = name or slug(f"{store_name}.{coreset.method}.r{coreset.rate:g}.s{coreset.seed}", MAX_NAME - 7)
    existing = cat.entries("coresets").get(name)
    if existing and existing.get("key") != coreset.key:
        name = f"{name}-{coreset.key[:6]}"
    folder = Path(out_dir) if out_dir is not None else home() / "coresets"
    path = coreset.save(path_under(folder, name, ".json", "coreset name"))
    cat.add("coresets", name, {
        "path": str(path), "fingerprint": coreset.fingerprint, "key": coreset.key,
        "provenance": {"method": coreset.method, "params": coreset.params, "rate": coreset.rate,
                       "seed": coreset.seed, "layer": coreset.layer, "store": store_name, "n": coreset.n},
    })
    return name, path
