"""Evaluation benchmark: prints one JSON object.

Φ (the partial-whitening angular shape metric) between a store's maps X (n = 200 000 rows x
d = 512) and an interpretation of them Y (computed block by block), streamed with ShapeStats
(float64 sufficient statistics, several α from one pass), against an in-memory float64
implementation of netrep's algorithm (centre, whiten, SVD, on the full matrices), each in a fresh
process so peak RSS is its own.

The accuracy pass (ICE's Z through the model's head, class by class, paper §4.2) runs on stores of
n and 4n rows of demo-resnet-shaped maps (8 x 8 x 64): its peak RSS must stay flat, and its rate is
compared with the bare head over the same rows (no interpretation), in the same process.

Usage: python benchmarks/bench_evaluate.py [--rows 200000] [--d 512] [--accuracy-rows 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from _common import run_child

HERE = Path(__file__).resolve().parent

COMMON = """
import json, sys, time, numpy as np
sys.path.insert(0, {here!r})
from _common import peak_rss_mb
from actstore.store.reader import open_store
store = open_store({store!r})
X_arr = store.array("layers/synthetic/pooled")
R = np.random.default_rng(0).standard_normal(({d}, {d})) / np.sqrt({d})
def interpretation(x):  # stands in for an interpreter's Z: a fixed non-linear map of the maps
    return np.maximum(x @ R, 0) + 0.1 * x
"""

OURS = COMMON + """
from actstore.evaluate import ShapeStats
t = time.perf_counter()
stats = ShapeStats()
step = X_arr.chunks[0]
for i in range(0, X_arr.shape[0], step):
    x = np.asarray(X_arr[i:i + step], np.float64)
    stats.update(x, interpretation(x))
thetas = stats.distances([0.0, 0.5, 1.0])
print(json.dumps({{"seconds": time.perf_counter() - t, "theta": thetas[0.5], "thetas": thetas,
                  "peak_rss_MB": peak_rss_mb()}}))
"""

NETREP = COMMON + """
sys.path.insert(0, {tests!r})
from test_shape_metric import netrep_restated
t = time.perf_counter()
X = np.asarray(X_arr[:], np.float64)
Y = interpretation(X)
theta = netrep_restated(X, Y, 0.5)
print(json.dumps({{"seconds": time.perf_counter() - t, "theta": theta, "peak_rss_MB": peak_rss_mb()}}))
"""


ACCURACY = """
import json, sys, time, numpy as np
sys.path.insert(0, {here!r})
from _common import peak_rss_mb
from actstore import load_model, model_head
from actstore.store.reader import open_store
from actstore.interpret.features import Features
from actstore.evaluate.protocol import class_accuracy
store = open_store({store!r})
head = model_head(load_model("demo-resnet", "random", num_classes=len(store.classes)), "layer3")
comps = np.random.default_rng(0).random((len(store.classes), 10, 64)).astype(np.float32)
ice = Features("ice", {{"n_components": 10, "max_iter": 20, "tol": 1e-4}}, {{"components": comps}},
               store.key, str(store.path), store.fingerprint, None, "synthetic")
arr = store.array("layers/synthetic/maps")
t = time.perf_counter()
bare = [float((head.logits(np.asarray(arr[store.class_rows(c)], np.float32)).argmax(1) == c).mean())
        for c in range(len(store.classes))]
bare_s = time.perf_counter() - t
t = time.perf_counter()
accs = [class_accuracy(ice, store, c, head, "synthetic") for c in range(len(store.classes))]
print(json.dumps({{"seconds": time.perf_counter() - t, "bare_seconds": bare_s, "rows": store.n_rows,
                  "peak_rss_MB": peak_rss_mb()}}))
"""


def accuracy_pass(tmp: Path, rows: int) -> dict:
    """Peak RSS of the accuracy pass at n and 4n rows (same class size), and its rate vs the bare head."""
    from actstore.extract.synthetic import write_synthetic_store

    out = {}
    for scale in (1, 4):
        store = write_synthetic_store(tmp / f"acc{scale}.zarr", classes=10 * scale, rows_per_class=rows // 10,
                                      channels=64, height=8, width=8)
        out[scale] = run_child(ACCURACY.format(here=str(HERE), store=str(store)))
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
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    try:
        print(json.dumps({"benchmark": "evaluate", **phi_vs_netrep(tmp, args.rows, args.d),
                          "accuracy_pass": accuracy_pass(tmp, args.accuracy_rows)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def phi_vs_netrep(tmp: Path, rows: int, d: int) -> dict:
    """Φ streamed from a store of ``rows`` x ``d`` against netrep's algorithm in memory, each in its own process."""
    from actstore.extract.synthetic import write_synthetic_store

    store = write_synthetic_store(tmp / "z.zarr", classes=100, rows_per_class=rows // 100, channels=d)
    fill = {"here": str(HERE), "store": str(store), "d": d, "tests": str(HERE.parent / "tests")}
    ours = run_child(OURS.format(**fill))
    ref = run_child(NETREP.format(**fill))
    return {"rows": rows, "d": d, "alpha": 0.5,
            "ours_seconds_3_alphas": round(ours["seconds"], 2), "ours_peak_rss_MB": round(ours["peak_rss_MB"], 1),
            "netrep_inmemory_seconds_1_alpha": round(ref["seconds"], 2),
            "netrep_inmemory_peak_rss_MB": round(ref["peak_rss_MB"], 1),
            "speedup": round(ref["seconds"] / ours["seconds"], 2),
            "theta_ours": ours["theta"], "theta_netrep": ref["theta"],
            "abs_difference": abs(ours["theta"] - ref["theta"]), "thetas_ours": ours["thetas"]}


if __name__ == "__main__":
    os.environ.setdefault("ACTSTORE_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    main()
