"""Evaluation benchmark: prints one JSON object.

Φ (the partial-whitening angular shape metric) between a store's maps X (n = 200 000 rows x
d = 512) and an interpretation of them Y, float64, against the **real netrep**
(``netrep.metrics.LinearMetric(alpha=0.5).fit_score`` on the full float64 matrices, from the wheel
in ``shared/peers``; skipped with the reason when it is not installed) and, labelled as such,
against an in-memory **restatement** of netrep's algorithm (``actstore.testing.netrep_restated``). Ours
streams both from stores with ShapeStats (sufficient statistics, α = 0, 0.5 and 1 from one pass);
netrep reads both whole and fits α = 0.5 only. Each run is a fresh process (its peak RSS is its
own) with the same BLAS thread count (``--threads``); ours and netrep alternate ``--repeats`` times
and the median of the per-round ratios is reported. Two workloads:

- ``phi``: X and Y both read from stores (Y, the interpretation's output, was written beforehand):
  the cost of Φ itself. Ours passes the stored float32 blocks (promoted to float64 in the centring
  pass) and reads the next pair on a background thread while BLAS works (``ShapeStats.update_all``);
  netrep gets both whole, converted to float64.
- ``phi_with_interpretation``: Y computed from X inside the timing on both sides (a fixed non-linear
  map, one 512 x 512 GEMM per row block; the workload of earlier versions of this benchmark), no
  read-ahead on our side.

The accuracy pass (ICE's Z through the model's head, class by class, paper §4.2) runs on stores of
n and 4n rows of demo-resnet-shaped maps (8 x 8 x 64): its peak RSS must stay flat, and its rate is
compared with the bare head over the same rows (no interpretation), in the same process.

Usage: python benchmarks/bench_evaluate.py [--rows 200000] [--d 512] [--accuracy-rows 5000] [--threads 1]
       [--repeats 3] [--skip-accuracy]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from _common import run_child

HERE = Path(__file__).resolve().parent

COMMON = """
import json, sys, time, numpy as np
sys.path.insert(0, {here!r})
from _common import peak_rss_mb
from actstore.store.reader import open_store
import zarr
store = open_store({store!r})
X_arr = store.pooled_array("synthetic")
Y_arr = zarr.open_array({ystore!r}, mode="r")
R = np.random.default_rng(0).standard_normal(({d}, {d})) / np.sqrt({d})
def interpretation(x):  # stands in for an interpreter's Z: a fixed non-linear map of the maps
    return np.maximum(x @ R, 0) + 0.1 * x
def read_y(x, i, j):
    return interpretation(x) if {compute_y} else np.asarray(Y_arr[i:j], np.float64)
"""

OURS = COMMON + """
from actstore.evaluate import ShapeStats
import scipy.linalg.blas  # noqa: F401 - loaded before the timing, as netrep's imports are
t = time.perf_counter()
step = X_arr.chunks[0] * {chunks_per_block}
starts = range(0, X_arr.shape[0], step)
if {compute_y}:  # the interpretation runs here, on the BLAS thread, as netrep's side computes it
    pairs = ((x, interpretation(x)) for x in (np.asarray(X_arr[i:i + step], np.float64) for i in starts))
    stats = ShapeStats().update_all(pairs, read_ahead=False)
elif hasattr(ShapeStats, "update_all"):  # float32 blocks as stored (promoted in the centring pass), read ahead
    stats = ShapeStats().update_all(((X_arr[i:i + step], Y_arr[i:i + step]) for i in starts), read_ahead=True)
else:  # an older actstore (before/after comparisons): one block after the other, converted here
    stats = ShapeStats()
    for i in starts:
        stats.update(np.asarray(X_arr[i:i + step], np.float64), np.asarray(Y_arr[i:i + step], np.float64))
thetas = stats.distances([0.0, 0.5, 1.0])
print(json.dumps({{"seconds": time.perf_counter() - t, "theta": thetas[0.5], "thetas": thetas,
                  "peak_rss_MB": peak_rss_mb()}}))
"""

NETREP = COMMON + """
from netrep.metrics import LinearMetric
t = time.perf_counter()
X = np.asarray(X_arr[:], np.float64)
Y = read_y(X, 0, X.shape[0])
theta = float(LinearMetric(alpha=0.5).fit_score(X, Y))
print(json.dumps({{"seconds": time.perf_counter() - t, "theta": theta, "peak_rss_MB": peak_rss_mb()}}))
"""

RESTATED = COMMON + """
from actstore.testing import netrep_restated
t = time.perf_counter()
X = np.asarray(X_arr[:], np.float64)
Y = read_y(X, 0, X.shape[0])
theta = netrep_restated(X, Y, 0.5)
print(json.dumps({{"seconds": time.perf_counter() - t, "theta": theta, "peak_rss_MB": peak_rss_mb()}}))
"""


def _netrep_missing() -> str | None:
    try:
        import netrep.metrics  # noqa: F401
    except ImportError as exc:
        return f"netrep is not installed ({exc}); pip install ../shared/peers/netrep-0.0.2-py3-none-any.whl"
    return None


ACCURACY = """
import json, sys, time, numpy as np
sys.path.insert(0, {here!r})
from _common import peak_rss_mb
from actstore import load_model, model_head
from actstore.store.reader import open_store
from actstore.interpret.features import Features
from actstore.evaluate.protocol import class_accuracy
from actstore.interpret import EvalContext, get_interpreter
store = open_store({store!r})
head = model_head(load_model("demo-resnet", "random", num_classes=len(store.classes)), "layer3")
comps = np.random.default_rng(0).random((len(store.classes), 10, 64)).astype(np.float32)
ice = Features("ice", {{"n_components": 10, "max_iter": 20, "tol": 1e-4}}, {{"components": comps}},
               store.key, str(store.path), store.fingerprint, None, "synthetic")
arr = store.maps_array("synthetic")
interp = get_interpreter("ice")
ctx = EvalContext(val=store, loaded=None, head=head, layer="synthetic", unit_layer="synthetic", dataset=lambda: None,
                  all_layers=False)
t = time.perf_counter()
bare = [float((head.logits(np.asarray(arr[store.class_rows(c)], np.float32)).argmax(1) == c).mean())
        for c in range(len(store.classes))]
bare_s = time.perf_counter() - t
t = time.perf_counter()
accs = []
for c in range(len(store.classes)):
    data = interp.class_data(ctx, c, [ice])
    accs.append(class_accuracy(interp, ice, data, ctx, interp.interpretation(ice, data)))
print(json.dumps({{"seconds": time.perf_counter() - t, "bare_seconds": bare_s, "rows": store.n_rows,
                  "peak_rss_MB": peak_rss_mb()}}))
"""


def accuracy_pass(tmp: Path, rows: int, threads: int | None = None) -> dict:
    """Peak RSS of the accuracy pass at n and 4n rows (same class size), and its rate vs the bare head."""
    from actstore.extract.synthetic import write_synthetic_store

    out = {}
    for scale in (1, 4):
        store = write_synthetic_store(tmp / f"acc{scale}.zarr", classes=10 * scale, rows_per_class=rows // 10,
                                      channels=64, height=8, width=8)
        out[scale] = run_child(ACCURACY.format(here=str(HERE), store=str(store)), threads=threads)
    return {"rows_n": out[1]["rows"], "peak_rss_MB_n": round(out[1]["peak_rss_MB"], 1),
            "peak_rss_MB_4n": round(out[4]["peak_rss_MB"], 1),
            "peak_rss_growth_4x_rows": round(out[4]["peak_rss_MB"] / out[1]["peak_rss_MB"] - 1, 4),
            "ice_accuracy_rows_per_s": round(out[4]["rows"] / out[4]["seconds"], 1),
            "bare_head_rows_per_s": round(out[4]["rows"] / out[4]["bare_seconds"], 1),
            "time_ratio_vs_bare_head": round(out[4]["seconds"] / out[4]["bare_seconds"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--accuracy-rows", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads of every child, the same for both sides")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    try:
        result = {"benchmark": "evaluate", "threads": args.threads,
                  **phi_vs_netrep(tmp, args.rows, args.d, args.repeats, args.threads)}
        if not args.skip_accuracy:
            result["accuracy_pass"] = accuracy_pass(tmp, args.accuracy_rows, args.threads)
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _median_round(rounds: list[tuple[float, dict, dict]]) -> tuple[float, dict, dict]:
    return sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]


def phi_vs_netrep(tmp: Path, rows: int, d: int, repeats: int = 3, threads: int = 1,
                  with_interpretation: bool = True) -> dict:
    """Φ streamed from stores against the real netrep (and a restatement) in memory, fresh processes."""
    import zarr

    from actstore.store.reader import open_store
    from actstore.extract.synthetic import write_synthetic_store

    store = write_synthetic_store(tmp / "z.zarr", classes=100, rows_per_class=rows // 100, channels=d)
    X_arr = open_store(store).pooled_array("synthetic")
    R = np.random.default_rng(0).standard_normal((d, d)) / np.sqrt(d)
    ystore = tmp / "y.zarr"
    Y_arr = zarr.open_array(str(ystore), mode="w", shape=X_arr.shape, chunks=X_arr.chunks, dtype="float32")
    for i in range(0, X_arr.shape[0], X_arr.chunks[0]):  # the interpretation's output, written once
        x = np.asarray(X_arr[i:i + X_arr.chunks[0]], np.float64)
        Y_arr[i:i + len(x)] = (np.maximum(x @ R, 0) + 0.1 * x).astype(np.float32)
    chunks_per_block = max(1, 4096 // X_arr.chunks[0])
    missing = _netrep_missing()
    out: dict = {"rows": rows, "d": d, "alpha_netrep": 0.5, "alphas_ours": [0.0, 0.5, 1.0], "repeats": repeats,
                 "store_chunk_rows": int(X_arr.chunks[0]), "block_rows": int(X_arr.chunks[0] * chunks_per_block)}
    for name, compute_y in (("phi", False), ("phi_with_interpretation", True)):
        if compute_y and not with_interpretation:
            continue
        fill = {"here": str(HERE), "store": str(store), "ystore": str(ystore), "d": d, "compute_y": compute_y,
                "chunks_per_block": chunks_per_block}
        rounds = []
        for _ in range(repeats if missing is None else 1):  # alternate, so both see the same machine
            ours = run_child(OURS.format(**fill), threads=threads)
            ref = run_child(NETREP.format(**fill), threads=threads) if missing is None else None
            rounds.append((ref["seconds"] / ours["seconds"] if ref else 0.0, ours, ref))
        speedup, ours, ref = _median_round(rounds)
        restated = run_child(RESTATED.format(**fill), threads=threads)
        row: dict = {"ours_seconds_3_alphas": round(ours["seconds"], 2), "ours_peak_rss_MB": round(ours["peak_rss_MB"], 1),
                     "thetas_ours": ours["thetas"], "theta_ours": ours["theta"],
                     "restatement_inmemory_seconds_1_alpha": round(restated["seconds"], 2),
                     "restatement_inmemory_peak_rss_MB": round(restated["peak_rss_MB"], 1),
                     "speedup_vs_restatement": round(restated["seconds"] / ours["seconds"], 2),
                     "abs_difference_vs_restatement": abs(ours["theta"] - restated["theta"])}
        if ref is None:
            row["netrep"] = {"skipped": missing}
        else:
            row.update({"netrep_seconds_1_alpha": round(ref["seconds"], 2),
                        "netrep_peak_rss_MB": round(ref["peak_rss_MB"], 1),
                        "speedup_vs_netrep": round(speedup, 2),
                        "speedup_vs_netrep_rounds": [round(r[0], 2) for r in rounds],
                        "theta_netrep": ref["theta"], "abs_difference_vs_netrep": abs(ours["theta"] - ref["theta"]),
                        "equal_to_1e-9": abs(ours["theta"] - ref["theta"]) <= 1e-9})
        out[name] = row
    return out


if __name__ == "__main__":
    os.environ.setdefault("ACTSTORE_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    main()
