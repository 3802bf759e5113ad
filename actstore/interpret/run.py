"""Store-level interpretation: run a registered interpreter on all of a store's rows or a coreset's.

Several coresets in one call share the reads: VEBI accumulates every coreset's (G, b) in the same
pass over ``units/energy``; ICE reads each class's maps once for the union of the coresets' rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..catalog import Catalog, open_catalog
from ..config import home
from ..names import path_under, slug
from ..coresets.artifact import Coreset
from ..progress import progress_bar
from ..resources import measured
from ..scheduler import check_scheduler
from ..store.reader import ActivationStore, open_store
from .base import Target, get_interpreter
from .features import Features

__all__ = ["interpret", "save_features", "default_params"]


def default_params(method: str) -> dict[str, Any]:
    """Every parameter ``interpret(store, method, ...)`` takes, with its default."""
    return get_interpreter(method).defaults()


def interpret(store: ActivationStore | str | os.PathLike[str], method: str,
              coresets: list[Coreset | str | os.PathLike[str]] | None = None, full: bool | None = None,
              layer: str | None = None, scheduler: str | None = None, progress: bool | Callable[..., None] = False,
              **params: Any) -> list[Features]:
    """Run ``method`` (a registered interpreter: "ice", "vebi", "topic") on ``store``: on each coreset's rows,
    and on all rows when ``full`` (the default when no coreset is given). Returns one Features per target,
    coresets first, in order. Parameters are checked before any work (:func:`default_params` lists them).
    ``scheduler``: where ICE's classes and VEBI's pass run as Dask tasks (:mod:`actstore.scheduler`).
    ``progress``: True for a bar (or plain lines) on stderr, or a callback advanced per unit of work.
    Each Features records its cost in ``meta["cost"]``: its own fit time and the bytes its rows take,
    and the call's peak memory and wall time (shared: targets of one call share one pass over the store)."""
    scheduler = check_scheduler(scheduler)
    interp = get_interpreter(method)
    merged = interp.check(params)
    st = store if isinstance(store, ActivationStore) else open_store(store)
    loaded = [c if isinstance(c, Coreset) else Coreset.load(c) for c in (coresets or [])]
    targets: list[Target] = [*loaded, *([None] if (full if full is not None else not loaded) else [])]
    for cs in loaded:
        cs.rows(st)  # a coreset of another dataset fails here, before any work
    total, unit = interp.work(st, targets, merged)
    with measured() as call, progress_bar(progress is True, total, f"{method}", unit) as bar:
        out = interp.fit(st, targets, layer=layer, scheduler=scheduler, params=merged,
                         progress=progress if callable(progress) else bar)
    for f in out:
        f.meta["cost"] = {**f.meta.get("cost", {}), "peak_rss_MB": call["peak_rss_MB"],
                          "call_seconds": call["seconds"], "call_targets": len(out)}
    return out


def save_features(features: Features, catalog: Catalog | str | os.PathLike[str] | None = None,
                  out_dir: str | os.PathLike[str] | None = None, name: str | None = None) -> tuple[str, Path]:
    """Save atomically under ``out_dir`` (default ``ACTSTORE_HOME/features``) and register in the catalog."""
    cat = catalog if isinstance(catalog, Catalog) else open_catalog(catalog)
    store_name = cat.find("stores", key=features.store_key) or Path(features.store_path).stem
    what = "full" if features.coreset is None else (
        f"{features.meta.get('coreset_method')}.r{features.meta.get('coreset_rate'):g}")
    name = name or slug(f"{store_name}.{features.method}.{what}.{features.key[:6]}")
    folder = Path(out_dir) if out_dir is not None else home() / "features"
    path = features.save(path_under(folder, name, ".zarr", "features name"))
    cat.add("features", name, {"path": str(path), "fingerprint": features.fingerprint, "key": features.key,
                               "provenance": {"method": features.method, "params": features.params,
                                              "coreset": features.coreset, "layer": features.layer,
                                              "store": store_name}})
    return name, path
