"""VEBI on a store: one sequential pass over ``units/energy`` (and the logits, for the predicted labels)
accumulates every target's (G, b) in float64; each target's classes are then solved from those.

With ``units_per_class`` the full data's statistics calibrate μ once (they are accumulated in the
same pass even when the full data is not a target), and every coreset is solved with that μ: the
paper's protocol (the same μ for R and R').

Evaluation (reference §1.3, paper §4.2-4.3): Z per layer is the maps of the class's relevant units
in that layer, strongest weight first; R and R' are depth-equalised per layer by keeping the
highest-weight units, and Φ averages over the layers where both found units. Accuracy ("final
layer") switches the class's units off in the head layer's stored maps; the "all layers" variant
runs the model itself over the class's images with forward hooks zeroing its units in every ReLU call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

import numpy as np

from ..params import Integral, Interval, StrOptions
from ..scheduler import dask_compute
from ..store.reader import ActivationStore, open_store
from .base import (ClassData, EvalContext, Interpreter, Maps, Shapes, Target, make_features, no_progress,
                   read_ahead, register)
from .features import Features
from .vebi import VEBI, accumulate_gram

__all__ = ["VEBIInterpreter", "vebi_stats", "units_by_layer", "unit_maps"]

Stats = tuple[np.ndarray, np.ndarray, int]  # (G, b, n)


def _step(store: ActivationStore, block_rows: int | None) -> int:
    """Rows per read of the pass: whole chunks, about 64 MB of float64 rows."""
    energy = store.energy_array()
    chunk, p = energy.chunks[0], energy.shape[1]
    return block_rows or max(chunk, (64 * 2**20) // (8 * p) // chunk * chunk)


def vebi_stats(store: ActivationStore, targets: list[Target], labels: str = "predicted",
               block_rows: int | None = None, scheduler: str | None = None,
               progress: Callable[..., None] = no_progress) -> tuple[list[Stats], dict[str, Any]]:
    """One pass over ``units/energy`` (and logits): per target (G, b, n) in float64.

    Without ``scheduler`` the pass is one sequential stream with read-ahead: each partial Gram is
    P x P (0.12 GB for ResNet18, 4 GB for ResNet50), and a reduction tree would hold several. With
    a scheduler, row ranges of whole chunks become Dask tasks whose partial sums are added in a tree.
    """
    energy = store.energy_array()
    n = energy.shape[0]
    rows = [np.sort(t.rows(store)) if t is not None else None for t in targets]
    step = _step(store, block_rows)
    if scheduler is None:
        return _stats_range(store, rows, labels, step, 0, n, progress)
    chunk = energy.chunks[0]
    per_task = chunk * max(1, -(-n // chunk) // 16)  # about 16 tasks of whole chunks

    def within(lo: int, hi: int) -> list[np.ndarray | None]:  # each task carries only its own rows
        return [None if r is None else r[np.searchsorted(r, lo):np.searchsorted(r, hi)] for r in rows]

    calls = [(str(store.path), within(lo, min(n, lo + per_task)), labels, step, lo, min(n, lo + per_task))
             for lo in range(0, n, per_task)]
    out = dask_compute(_stats_range, calls, scheduler, combine=_add_stats)[0]
    progress(steps=-(-n // step))
    return out


def _add_stats(a: tuple[list[Any], dict[str, Any]], b: tuple[list[Any], dict[str, Any]]
               ) -> tuple[list[Any], dict[str, Any]]:
    """Two partial VEBI passes added (the Dask reduction); the first one's arrays are reused."""
    acc = [(Ga + Gb, ba + bb, na + nb) for (Ga, ba, na), (Gb, bb, nb) in zip(a[0], b[0], strict=True)]
    stats = {k: (a[1][k] + b[1][k] if k != "target_seconds" else
                 [x + y for x, y in zip(a[1][k], b[1][k], strict=True)]) for k in a[1]}
    return acc, stats


def _masks(rows: list[np.ndarray | None], lo: int, hi: int) -> list[np.ndarray]:
    out = []
    for r in rows:
        m = np.zeros(hi - lo, bool)
        if r is None:
            m[:] = True
        else:
            m[r[np.searchsorted(r, lo):np.searchsorted(r, hi)] - lo] = True
        out.append(m)
    return out


def _stats_range(store: ActivationStore | str, rows: list[np.ndarray | None], labels: str, step: int,
                 lo: int, hi: int, progress: Callable[..., None] = no_progress) -> tuple[list[Stats], dict[str, Any]]:
    """(G, b, n) per target over store rows ``lo <= i < hi``; ``rows``: each target's sorted rows (None: all)."""
    from ..errors import InterpretError

    st = store if isinstance(store, ActivationStore) else open_store(store)
    energy, logits = st.energy_array(), st.logits_array()
    p, k = energy.shape[1], logits.shape[1] if labels == "predicted" else len(st.classes)
    masks = _masks(rows, lo, hi)
    acc: list[Stats] = [(np.zeros((p, p)), np.zeros((p, k)), 0) for _ in rows]
    t0, gemm, nbytes = time.perf_counter(), 0.0, 0
    per_target_seconds = [0.0] * len(rows)
    for start, (e, lg) in read_ahead([energy, logits], step, hi, lo):
        if not np.isfinite(e).all():
            raise InterpretError(f"{st.path}: units/energy holds NaN or Inf near row {start}")
        nbytes += e.nbytes + lg.nbytes
        y = lg.argmax(axis=1) if labels == "predicted" else st.labels[start:start + len(e)]
        for i, m in enumerate(masks):
            sel = m[start - lo:start - lo + len(e)]
            if not sel.any():
                continue
            X, ys = (e, y) if sel.all() else (e[sel], y[sel])
            g0 = time.perf_counter()
            G, b, cnt = acc[i]
            accumulate_gram(G, b, X, ys)
            gemm += time.perf_counter() - g0
            per_target_seconds[i] += time.perf_counter() - g0
            acc[i] = (G, b, cnt + len(X))
        progress()
    return acc, {"seconds": time.perf_counter() - t0, "gemm_seconds": gemm, "bytes_read": nbytes,
                 "target_seconds": per_target_seconds}


def units_by_layer(features: Features, c: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Class ``c``'s relevant units grouped by layer: {layer: (channels, weights)}, weight-sorted."""
    w = features.arrays["coef"][c]
    layers, channels = features.arrays["unit_layer"], features.arrays["unit_channel"]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i in np.flatnonzero(w > 0):
        ch, wt = out.get(str(layers[i]), (np.empty(0, np.int64), np.empty(0)))
        out[str(layers[i])] = (np.append(ch, channels[i]), np.append(wt, w[i]))
    return {k: (ch[np.argsort(-wt, kind="stable")], np.sort(wt)[::-1]) for k, (ch, wt) in out.items()}


UnitMaps = dict[str, tuple[np.ndarray, np.ndarray]]  # layer -> (sorted channels, maps of those channels)


def unit_maps(store: ActivationStore, c: int, channels: dict[str, np.ndarray]) -> UnitMaps:
    """Class ``c``'s maps of only the given channels per layer, read from ``store`` chunk by chunk
    (the whole layer is never held: VEBI needs a few units per class)."""
    out: UnitMaps = {}
    rows = store.class_rows(c)
    for layer, ch in channels.items():
        ch = np.unique(np.asarray(ch, np.int64))
        sel = store.maps_array(layer).get_orthogonal_selection((rows, slice(None), slice(None), ch))
        out[layer] = (ch, np.asarray(sel, np.float32))
    return out


def _channels_of(maps: UnitMaps, layer: str, wanted: np.ndarray) -> np.ndarray:
    from ..errors import EvaluationError

    ch, A = maps[layer]
    pos = np.searchsorted(ch, wanted)
    if np.any(pos >= len(ch)) or np.any(ch[np.minimum(pos, len(ch) - 1)] != wanted):
        raise EvaluationError(f"the maps of {layer} lack channels {sorted(set(wanted) - set(ch))}")
    return A[..., pos]


@register
class VEBIInterpreter(Interpreter):
    name = "vebi"
    label = "VEBI"
    accuracy_protocol = ("the class's relevant units are switched off in the head's layer before the head classifies; a drop "
                         "against the unmodified model and against as many random units shows the units matter")
    estimator = VEBI
    options: ClassVar[dict[str, tuple[list[Any], Any]]] = {
        "labels": ([StrOptions({"predicted", "true"})], "predicted"),  # the model's predicted class, or ground truth
        "block_rows": ([Interval(Integral, 1, None, closed="left"), None], None),  # rows per read of the pass
    }
    spatial = False
    needs_unit_maps = True

    def recorded(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**super().recorded(params), "labels": params["labels"]}

    def check_combination(self, params: dict[str, Any]) -> None:
        VEBI(**self.estimator_params(params))._check()

    def group(self, target: Target) -> Hashable:
        """One pass over the store serves every target."""
        return "pass"

    def work(self, store: ActivationStore, targets: list[Target], params: dict[str, Any]) -> tuple[int, str]:
        return -(-store.n_rows // _step(store, params["block_rows"])) + len(targets), "blocks and solves"

    def fit(self, store: ActivationStore, targets: list[Target], *, layer: str | None, scheduler: str | None,
            params: dict[str, Any], progress: Callable[..., None] = no_progress) -> list[Features]:
        """VEBI R for each target from one pass over the store."""
        from ..errors import InterpretError

        calibrate = params["units_per_class"] is not None
        passed = targets if not calibrate or None in targets else [*targets, None]
        accs, stats = vebi_stats(store, passed, params["labels"], params["block_rows"], scheduler, progress)
        table = store.unit_table
        mu = None
        if calibrate:
            G, b, n = accs[passed.index(None)]
            mu = VEBI(units_per_class=params["units_per_class"]).fit_gram(G, b, n).mu_
        row_bytes = 4 * (store.energy_array().shape[1] + store.logits_array().shape[1])
        out = []
        for i, target in enumerate(targets):
            G, b, n = accs[i]
            if n == 0:
                raise InterpretError("a coreset selects no rows of this store")
            t0 = time.perf_counter()
            model = VEBI(mu=mu if calibrate else params["mu"], positive=params["positive"]).fit_gram(G, b, n)
            meta = {"n_rows": int(n), "mu": model.mu_, "mu_calibrated": calibrate,
                    "units_per_class": [int(len(r)) for r in model.relevant_units_],
                    "n_iter": model.n_iter_.tolist(), "converged": model.converged_.tolist(),
                    "pass": {k: v for k, v in stats.items() if k != "target_seconds"},
                    "solve_seconds": time.perf_counter() - t0,
                    "cost": {"fit_seconds": stats["target_seconds"][i] + time.perf_counter() - t0,
                             "bytes_read": int(n) * row_bytes}}
            arrays = {"coef": model.coef_, "unit_layer": np.array([u[0] for u in table]),
                      "unit_channel": np.array([u[1] for u in table], np.int32)}
            out.append(make_features(store, self, params, target, None, arrays, meta))
            progress()
        return out

    # -- evaluation -----------------------------------------------------------------------------------
    def class_data(self, ctx: EvalContext, c: int, feats: list[Features]) -> ClassData:
        """The head layer's maps, every target's units' maps (stored, or by forward hooks for layers the
        validation store lacks) and, for the all-layers ablation, the class's images."""
        from ..extract.hooks import hooked_maps, store_images

        data = super().class_data(ctx, c, feats)
        needed: dict[str, np.ndarray] = {}  # only the units some interpretation uses
        for f in feats:
            for name, (ch, _) in units_by_layer(f, c).items():
                needed[name] = np.union1d(needed.get(name, ch), ch)
        maps = unit_maps(ctx.val, c, {k: v for k, v in needed.items() if k in ctx.val.layers})
        missing = {k: v for k, v in needed.items() if k not in ctx.val.layers}
        images: list[Any] = []
        if ctx.all_layers or missing:
            rows = np.arange(ctx.val.class_rows(c).start, ctx.val.class_rows(c).stop)
            images = list(store_images(ctx.val, ctx.loaded, rows, source=ctx.dataset()))
        if missing:
            maps.update({name: (np.unique(needed[name]), m) for name, m in hooked_maps(ctx.loaded, images,
                                                                                      missing).items()})
        data.extra.update(unit_maps=maps, images=images)
        return data

    def interpretation(self, features: Features, data: ClassData) -> Maps:
        maps = data.extra["unit_maps"]
        return {name: _channels_of(maps, name, ch) for name, (ch, _) in units_by_layer(features, data.c).items()
                if name in maps}

    def pairs(self, z_full: Maps, z_sub: Maps) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per shared layer, R and R' equalised in depth by keeping their highest-weight units (paper §4.3)."""
        out = []
        for name in z_full:
            if name in z_sub:
                m = min(z_full[name].shape[-1], z_sub[name].shape[-1])
                out.append((z_full[name][..., :m], z_sub[name][..., :m]))
        return out

    def head_input(self, features: Features, data: ClassData, z: Maps, ctx: EvalContext) -> np.ndarray:
        """The "final layer" ablation: the class's units in the head's layer switched off."""
        Z = data.A.copy()
        units = units_by_layer(features, data.c).get(ctx.unit_layer)
        if units is not None:
            Z[..., units[0]] = 0.0
        return Z

    def accuracy_all_layers(self, features: Features, data: ClassData, ctx: EvalContext) -> float:
        from ..extract.hooks import hooked_accuracy

        if not ctx.all_layers:
            return float("nan")
        units = {name: ch for name, (ch, _) in units_by_layer(features, data.c).items()}
        return hooked_accuracy(ctx.loaded, data.extra["images"], data.c, units)

    def baselines(self, full: Features, data: ClassData, ctx: EvalContext, rng: np.random.Generator
                  ) -> dict[str, tuple[float, float]]:
        """Paper §4.2: the unmodified model, and as many random units switched off as VEBI found for the
        class, per layer (seeded). All layers is NaN unless the context runs the model over images."""
        from ..extract.hooks import hooked_accuracy

        found = units_by_layer(full, data.c)
        width = dict(ctx.val.provenance["units"]["layers"])
        random_units = {name: rng.choice(width[name], size=len(ch), replace=False) for name, (ch, _) in found.items()}
        Z = data.A.copy()
        Z[..., random_units.get(ctx.unit_layer, [])] = 0.0
        images, c = data.extra["images"], data.c
        return {"unmodified": (float((ctx.head.logits(data.A).argmax(1) == c).mean()),
                               hooked_accuracy(ctx.loaded, images, c) if ctx.all_layers else float("nan")),
                "random-units": (float((ctx.head.logits(Z).argmax(1) == c).mean()),
                                 hooked_accuracy(ctx.loaded, images, c, random_units) if ctx.all_layers
                                 else float("nan"))}

    def heatmap_maps(self, features: Features, data: ClassData, z: Maps) -> np.ndarray:
        """The class's units of the layer holding most of them (heatmaps upsample any layer's maps)."""
        if not z:
            return np.zeros((*data.A.shape[:3], 1), np.float32)
        return max(z.values(), key=lambda m: m.shape[-1])

    def units(self, features: Features, c: int) -> int:
        return int(np.count_nonzero(features.arrays["coef"][c] > 0))

    def fit_record(self, features: Features, c: int) -> tuple[int, bool]:
        return int(features.meta["n_iter"][c]), bool(features.meta["converged"][c])

    def fit_cost(self, shapes: Shapes, targets: list[list[int]], params: dict[str, Any], costs: dict[str, float]
                 ) -> tuple[float, float, float]:
        """One read of the unit features; rows · P² (one triangle) per target; a screened solve per class and target."""
        p = shapes.units
        gemm = sum(sum(rows) for rows in targets) * p * p / (costs["gemm_gflops"] * 1e9)
        solves = len(targets) * len(shapes.class_rows) * costs["vebi_solve_s_per_unit"] * p
        read = shapes.n_rows * 4 * p / 2**20 / costs["read_MBps"] if targets else 0.0
        return gemm + solves + read, 8 * p * p * (len(targets) + 1) / 2**20, len(targets) * 8 * p * 1000 / 2**20

    def z_width(self, shapes: Shapes, params: dict[str, Any]) -> int:
        """Z keeps a class's relevant units: its unit budget, or about one at the default μ (measured)."""
        return int(params["units_per_class"] or 1)

    def eval_cost(self, shapes: Shapes, val_rows: list[int], n_targets: int, params: dict[str, Any],
                  costs: dict[str, float], all_layers: bool) -> float:
        """The all-layers ablation: the model over every class's images per target, and the two baselines."""
        return sum(val_rows) * (n_targets + 2) / costs["images_per_s"] if all_layers else 0.0

    def tables(self, model: str, labelled: list[tuple[str, Target]], feats: list[Features]
               ) -> dict[str, list[dict[str, Any]]]:
        """Paper Fig. 3: units identified per layer (over all classes) and their intersection coverage
        with the full data's: |(class, unit) pairs found by both| / |pairs found on the full data|."""
        def pairs(f: Features) -> dict[str, set[tuple[int, int]]]:
            layers = f.arrays["unit_layer"]
            out: dict[str, set[tuple[int, int]]] = {}
            for cc, j in zip(*np.nonzero(f.arrays["coef"] > 0), strict=True):
                out.setdefault(str(layers[j]), set()).add((int(cc), int(j)))
            return out

        full = pairs(feats[0])
        order = list(dict.fromkeys(str(x) for x in feats[0].arrays["unit_layer"]))  # forward order
        rows = []
        for (label, cs), f in zip(labelled, feats, strict=True):
            mine = pairs(f)
            for position, layer in enumerate(order):
                found, ref = mine.get(layer, set()), full.get(layer, set())
                rows.append({"model": model, "selector": label, "rate": 1.0 if cs is None else cs.rate,
                             "seed": 0 if cs is None else cs.seed, "layer": layer, "position": position,
                             "units": len(found), "coverage": len(found & ref) / len(ref) if ref else float("nan")})
        return {"vebi_units": rows}
