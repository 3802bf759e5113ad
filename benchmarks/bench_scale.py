"""Out-of-core benchmark: prints one JSON object.

A synthetic store larger than the memory each process may use (default: 290 000 rows of
demo-resnet-shaped maps 8x8x64 plus 464 VEBI units, about 3 GB decompressed) goes through select
(dgpruning), VEBI, ICE, the topic model and Φ, each stage in a fresh process whose memory (page
cache included) is capped by a cgroup (cgroup v1 memory.limit_in_bytes, default 2 GiB) where this
machine allows one. Each stage reports wall time, peak RSS, the bytes of activations it reads, and
its time against a plain sequential read of the same arrays in the same cap (the physical floor).

Usage: python benchmarks/bench_scale.py [--classes 100] [--rows-per-class 2900] [--cap-gb 2] [--store PATH]
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
CGROUP = Path("/sys/fs/cgroup/memory/actstore-bench")
UNITS = [16] * 5 + [32] * 4 + [64] * 4  # 464 units, as demo-resnet's ReLU calls

PRELUDE = """
import json, sys, time, numpy as np
sys.path.insert(0, {here!r})
from _common import peak_rss_mb
from actstore import open_store, interpret, select_many, Coreset, Features
store = open_store({store!r})
work = {work!r}
t = time.perf_counter()
"""

STAGES = {
    "floor": """
arrays = {arrays!r}
nbytes = 0
for name in arrays:
    arr = store.array(name)
    step = arr.chunks[0] * max(1, (64 * 2**20) // (arr.chunks[0] * arr.dtype.itemsize * int(np.prod(arr.shape[1:]))))
    for i in range(0, arr.shape[0], step):
        nbytes += np.asarray(arr[i:i + step]).nbytes
out = {{"bytes": nbytes}}
""",
    "select": """
cs = select_many(store, "dgpruning", [0.1])[0]
cs.save(work + "/coreset.json")
out = {{"bytes": store.pooled_array("layer3").nbytes, "kept": cs.n}}
""",
    "vebi": """
cs = Coreset.load(work + "/coreset.json")
f = interpret(store, "vebi", coresets=[cs], full=True)
out = {{"bytes": store.energy_array().nbytes + store.logits_array().nbytes,
        "units_per_class_full": float(np.mean(f[1].meta["units_per_class"]))}}
""",
    "ice": """
cs = Coreset.load(work + "/coreset.json")
sub, full = interpret(store, "ice", coresets=[cs], full=True, max_iter=10)
sub.save(work + "/ice-sub.zarr"); full.save(work + "/ice-full.zarr")
out = {{"bytes": store.maps_array("layer3").nbytes}}
""",
    "topic": """
f = interpret(store, "topic", full=True, epochs=1, n_topics=10)[0]
out = {{"bytes": store.maps_array("layer3").nbytes, "loss_last": f.meta["history"][-1]["loss"]}}
""",
    "phi": """
from actstore.evaluate.protocol import class_phi
sub, full = Features.load(work + "/ice-sub.zarr"), Features.load(work + "/ice-full.zarr")
arr = store.maps_array("layer3")
phis = [class_phi(full, sub, store, c, [1.0], "layer3")["phi"][1.0] for c in range(len(store.classes))]
out = {{"bytes": arr.nbytes, "phi_mean": float(np.nanmean(phis))}}
""",
}
FLOORS = {"select": ["layers/layer3/pooled"], "vebi": ["units/energy", "samples/logits"],
          "ice": ["layers/layer3/maps"], "topic": ["layers/layer3/maps"], "phi": ["layers/layer3/maps"]}
EPILOGUE = """
out.update(seconds=time.perf_counter() - t, peak_rss_MB=peak_rss_mb())
print(json.dumps(out))
"""


def make_cgroup(cap_bytes: int) -> bool:
    """A cgroup v1 memory cap for the stages (page cache counts against it); False where not allowed."""
    try:
        CGROUP.mkdir(exist_ok=True)
        (CGROUP / "memory.limit_in_bytes").write_text(str(cap_bytes))
        swap = CGROUP / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(cap_bytes))  # no escape into swap
        return True
    except OSError:
        return False


def child(code: str, capped: bool) -> dict:
    def enter() -> None:
        if capped:
            (CGROUP / "cgroup.procs").write_text(str(os.getpid()))

    return run_child(code, enter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--rows-per-class", type=int, default=2900)
    ap.add_argument("--cap-gb", type=float, default=2.0)
    ap.add_argument("--store", default=None, help="reuse (or keep) the synthetic store here")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        from actstore.extract.synthetic import write_synthetic_store

        store = Path(args.store) if args.store else tmp / "big.zarr"
        if not (store / "zarr.json").exists():
            write_synthetic_store(store, classes=args.classes, rows_per_class=args.rows_per_class, channels=64,
                                  height=8, width=8, model="demo-resnet", unit_layers=UNITS)
        from actstore import open_store

        st = open_store(store)
        decompressed = sum(st.array(a).nbytes for a in ("layers/layer3/maps", "layers/layer3/pooled",
                                                         "units/energy", "samples/logits"))
        on_disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        cap = int(args.cap_gb * 2**30)
        capped = make_cgroup(cap)
        fill = {"here": str(HERE), "store": str(store), "work": str(tmp)}
        stages = {}
        for name in ("select", "vebi", "ice", "topic", "phi"):
            floor = child((PRELUDE + STAGES["floor"] + EPILOGUE).format(**fill, arrays=FLOORS[name]), capped)
            got = child((PRELUDE + STAGES[name] + EPILOGUE).format(**fill), capped)
            stages[name] = {**{k: v for k, v in got.items() if k not in ("seconds", "peak_rss_MB", "bytes")},
                            "seconds": round(got["seconds"], 2), "peak_rss_MB": round(got["peak_rss_MB"], 1),
                            "bytes_read_GB": round(got["bytes"] / 1e9, 3),
                            "floor_sequential_read_seconds": round(floor["seconds"], 2),
                            "ratio_to_floor": round(got["seconds"] / floor["seconds"], 2)}
        print(json.dumps({
            "benchmark": "scale", "rows": st.n_rows, "classes": len(st.classes),
            "store_GB_decompressed": round(decompressed / 1e9, 2), "store_GB_on_disk": round(on_disk / 1e9, 2),
            "memory_cap": f"cgroup v1 memory.limit_in_bytes = {args.cap_gb:g} GiB (page cache included)"
            if capped else "none (no writable cgroup here): peak RSS only",
            "all_peak_rss_under_2GB": all(s["peak_rss_MB"] < 2048 for s in stages.values()),
            "stages": stages}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the store too, unless --store put it elsewhere
        if CGROUP.exists():
            try:
                CGROUP.rmdir()
            except OSError:
                pass


if __name__ == "__main__":
    os.environ.setdefault("ACTSTORE_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    main()
