"""Coreset selection benchmark: prints one JSON object.

1. One ImageNet-sized class (n=1300, d=2048, float32): dgpruning against its floor (one float64
   GEMM X·Xᵀ) and against a restatement of the reference implementation (sklearn
   pairwise_distances, kneighbors_graph(...).todense(), Python loops over edges and greedy steps
   with the "min - 1" masking; selectors.md §3.2-3.4), with the selections compared.
2. One class of 50 000 x 512 in a fresh process: peak RSS (the reference needs two dense
   50 000² float64 matrices, 40 GB).
3. A synthetic store of C classes x 1300 rows x d=512 pooled: dgpruning (ρ=0.1), moderate and
   random over all classes, against a plain sequential read of the pooled array; peak RSS of a
   selection run with C/4 and C classes (fresh processes).

Each comparison runs in one process with the same BLAS thread count on both sides (``--threads``),
interleaved ``--repeats`` times; the median of the per-round ratios is reported. The one-class floor
ratio is also given on a class with few dead channels (dgpruning drops a class's all-zero columns,
which the floor GEMM does not).

Usage: python benchmarks/bench_select.py [--classes 1000] [--skip-store] [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import limit_threads, peak_rss_mb, run_child  # noqa: E402


def reference_dgpruning(X: np.ndarray, budget: int, k: int = 5, gamma: float = 0.1) -> list[int]:
    """The d2pruning repo's GraphDensitySampler (class mode, sum, weighted), restated from the spec."""
    from sklearn.metrics import pairwise_distances
    from sklearn.neighbors import kneighbors_graph

    X = np.asarray(X, np.float64)
    n = X.shape[0]
    s = np.linalg.norm(X - X.mean(axis=0), axis=1)
    distances = pairwise_distances(X, X)
    connect = kneighbors_graph(X, k, p=2).todense()
    for i, j in zip(*connect.nonzero(), strict=True):
        connect[i, j] = np.exp(-distances[i, j]) * max(s[j], 1e-7)
        connect[j, i] = np.exp(-distances[i, j]) * max(s[i], 1e-7)
    density = np.zeros(n)
    for i in range(n):
        density[i] = connect[i, :].sum() + s[i]
    batch: set[int] = set()
    while len(batch) < budget:
        u = int(np.argmax(density))
        neighbours = (connect[u, :] > 0).nonzero()[1]
        density[neighbours] -= np.exp(-gamma * distances[u, neighbours]) * density[u]
        batch.add(u)
        density[list(batch)] = min(density) - 1
    return sorted(batch)


def _best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def class_rows(n: int = 1300, d: int = 2048, shift: float = 1.5, seed: int = 0) -> np.ndarray:
    """One ImageNet-sized class of pooled features (float32, non-negative). ``shift`` sets how many
    channels are dead for the whole class (about 18 % at 1.5, 3 % at 0.5)."""
    rng = np.random.default_rng(seed)
    return np.maximum(rng.gamma(2.0, 1.0, d) * (0.3 * rng.standard_normal((n, d)) + 1) - shift, 0).astype(np.float32)


def _vs_floor(X: np.ndarray, rate: float, repeats: int) -> tuple[list[tuple[float, float, float]], np.ndarray]:
    """dgpruning on X and one float64 GEMM X·Xᵀ of the same shape, interleaved ``repeats`` times."""
    from actstore.coresets import dgpruning

    y = np.zeros(X.shape[0], np.int64)
    dgpruning(X[:64], y[:64], rate)  # compile / load the numba cache outside the timing
    X64 = X.astype(np.float64)
    X64 @ X64.T
    rounds, ours = [], None
    for _ in range(repeats):  # alternate, so both see the same machine noise
        t = time.perf_counter()
        ours = dgpruning(X, y, rate)
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        X64 @ X64.T
        t_floor = time.perf_counter() - t
        rounds.append((t_ours / t_floor, t_ours, t_floor))
    return sorted(rounds), ours


def one_class(repeats: int) -> dict:
    n, d, rate = 1300, 2048, 0.1
    X = class_rows(n, d)
    rounds, ours = _vs_floor(X, rate, repeats)
    ratio, t_ours, t_floor = rounds[len(rounds) // 2]
    live_rounds, _ = _vs_floor(class_rows(n, d, shift=0.5, seed=1), rate, repeats)
    ref_t, ref = _best(lambda: reference_dgpruning(X, int(np.floor(rate * n + 0.5))), 1)
    return {"n": n, "d": d, "rate": rate, "repeats": repeats, "ours_ms": round(t_ours * 1e3, 1),
            "floor_gemm_ms": round(t_floor * 1e3, 1), "reference_ms": round(ref_t * 1e3, 1),
            "ratio_vs_floor": round(ratio, 3), "ratio_vs_floor_rounds": [round(r[0], 3) for r in rounds],
            "dead_channel_share": round(float((~X.any(axis=0)).mean()), 3),
            "ratio_vs_floor_few_dead_channels": round(live_rounds[len(live_rounds) // 2][0], 3),
            "speedup_vs_reference": round(ref_t / t_ours, 1),
            "identical_selection": list(map(int, ours)) == ref}


THREADS: int | None = None  # the children's BLAS threads (set by main)


def big_class() -> dict:
    return run_child(threads=THREADS, code="""
import json, time, numpy as np
from _common import peak_rss_mb
from actstore.coresets import dgpruning
rng = np.random.default_rng(1)
X = np.maximum(rng.standard_normal((50_000, 512), dtype=np.float32) + 0.3, 0)
y = np.zeros(50_000, np.int64)
t = time.perf_counter(); sel = dgpruning(X, y, 0.1); t = time.perf_counter() - t
print(json.dumps({"n": 50000, "d": 512, "rate": 0.1, "selected": int(sel.size), "seconds": round(t, 1),
                  "peak_rss_MB": round(peak_rss_mb(), 1),
                  "reference_dense_GB": round(2 * 8 * 50_000**2 / 1e9, 1)}))
""")


def _select_rss(store: Path, method: str, **params: object) -> dict:
    return run_child(threads=THREADS, code=f"""
import json, time
from _common import peak_rss_mb
from actstore import select
t = time.perf_counter(); cs = select({str(store)!r}, {method!r}, 0.1, **{params!r}); t = time.perf_counter() - t
print(json.dumps({{"seconds": round(t, 2), "n": cs.n,
                   "peak_rss_MB": round(peak_rss_mb(), 1)}}))
""")


def store_level(classes: int, tmp: Path) -> dict:
    from actstore import open_store
    from actstore.extract.synthetic import write_synthetic_store

    t = time.perf_counter()
    big = write_synthetic_store(tmp / "big.zarr", classes=classes, rows_per_class=1300, channels=512)
    small = write_synthetic_store(tmp / "small.zarr", classes=max(1, classes // 4), rows_per_class=1300,
                                  channels=512, seed=1)
    build = time.perf_counter() - t
    store = open_store(big)
    pooled = store.array("layers/synthetic/pooled")
    t = time.perf_counter()
    step = pooled.chunks[0] * 8
    for start in range(0, pooled.shape[0], step):
        pooled[start:start + step]
    read = time.perf_counter() - t
    runs = {m: _select_rss(big, m) for m in ("dgpruning", "moderate", "random")}
    runs["moderate_mean"] = _select_rss(big, "moderate", center="mean")
    small_rss = _select_rss(small, "dgpruning")["peak_rss_MB"]
    return {"classes": classes, "rows_per_class": 1300, "d": 512, "pooled_GB": round(pooled.nbytes / 1e9, 2),
            "build_seconds": round(build, 1), "sequential_read_seconds": round(read, 2),
            **{f"{m}_seconds": r["seconds"] for m, r in runs.items()},
            "moderate_vs_read": round(runs["moderate"]["seconds"] / read, 2),
            "moderate_mean_vs_read": round(runs["moderate_mean"]["seconds"] / read, 2),
            "random_vs_read": round(runs["random"]["seconds"] / read, 2),
            "dgpruning_peak_rss_MB": runs["dgpruning"]["peak_rss_MB"],
            f"dgpruning_peak_rss_MB_{max(1, classes // 4)}_classes": small_rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-store", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads, the same for both sides")
    args = ap.parse_args()
    global THREADS
    threads = THREADS = limit_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-select-"))
    os.environ.setdefault("ACTSTORE_HOME", str(tmp / "home"))
    try:
        result = {"benchmark": "select", "threads": threads, "one_class": one_class(args.repeats),
                  "big_class": big_class()}
        if not args.skip_store:
            result["store"] = store_level(args.classes, tmp)
        result["peak_rss_MB_this_process"] = round(peak_rss_mb(), 1)
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
