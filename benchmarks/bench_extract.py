"""Extraction benchmark: prints one JSON object.

- throughput of ``extract`` against a bare forward pass of the same model over the same batches
  with the same hooks (layers + VEBI ReLU energies) but no storage, run side by side, alternating:
  the whole batch at once (what a hand-written loop does) and in the slices extract passes a CPU
  (``CPU_FORWARD_ROWS``: the storage's own overhead);
- peak RSS of extracting N and 4N rows, each in a fresh process (flat in N is the goal);
- store bytes per row, and read throughput of ``pooled`` and ``maps`` for one class next to a
  plain numpy copy of an in-memory array of the same size.

Usage: python benchmarks/bench_extract.py [--model resnet18] [--size 112] [--n 384] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _bare_forward(model: str, spec: str, layers: list[str] | None, batch_size: int, block_rows: int,
                  sliced: bool = False) -> float:
    """The same batches and hooks as extract, with the outputs dropped (``sliced``: in extract's CPU slices):
    seconds."""
    from torch.utils.data import DataLoader

    from actstore.extract.datasets import collate_rows, resolve_dataset
    from actstore.extract.extractor import _BlockBatches, forward_slices
    from actstore.extract.models import load_model
    from actstore.extract.probe import Probe

    loaded = load_model(model, "random")
    source = resolve_dataset(spec)
    order = np.argsort(source.labels, kind="stable")
    probe = Probe(loaded, layers or [loaded.default_layer], units=True)
    n_blocks = -(-source.n // block_rows)
    loader = DataLoader(source.torch_dataset(order), collate_fn=collate_rows, num_workers=0,
                        batch_sampler=_BlockBatches(list(range(n_blocks)), block_rows, source.n, batch_size))
    start = time.perf_counter()
    for images, _, _ in loader:
        for part in forward_slices(images, torch.device("cpu")) if sliced else (images,):
            probe(part)
    return time.perf_counter() - start


def _extract(model: str, spec: str, out: Path, batch_size: int, block_rows: int) -> tuple[float, float]:
    """(end-to-end seconds, seconds of the forward-and-write loop)."""
    from actstore import extract

    start = time.perf_counter()
    res = extract(model, spec, out, units=True, weights="random", batch_size=batch_size, block_rows=block_rows,
                  catalog=out.parent / "catalog.yaml", progress=False)
    return time.perf_counter() - start, res.loop_seconds


def _peak_rss_child(model: str, spec: str, out: Path, batch_size: int, block_rows: int) -> float:
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from bench_extract import _extract\nfrom _common import peak_rss_mb\nfrom pathlib import Path\n"
        "_extract(%r, %r, Path(%r), %d, %d)\n"
        "print(peak_rss_mb())\n"
    ) % (str(Path(__file__).parent), model, spec, str(out), batch_size, block_rows)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])  # MB


def _read_rates(store_path: Path) -> dict[str, float]:
    from actstore import open_store

    store = open_store(store_path)
    rows = store.class_rows(0)
    out: dict[str, float] = {}
    for what, arr in (("pooled", store.pooled(rows=rows)), ("maps", store.maps(rows=rows))):
        start = time.perf_counter()
        data = arr.compute(scheduler="threads")
        secs = time.perf_counter() - start
        mem = np.random.default_rng(0).random(data.shape).astype(data.dtype)
        t0 = time.perf_counter()
        np.copy(mem)
        mem_secs = time.perf_counter() - t0
        out[f"{what}_class_read_MBps"] = round(data.nbytes / secs / 1e6, 1)
        out[f"{what}_numpy_inmemory_MBps"] = round(data.nbytes / mem_secs / 1e6, 1)
        out[f"{what}_class_MB"] = round(data.nbytes / 1e6, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--n", type=int, default=384)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--block-rows", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    spec = f"synthetic:n={args.n},classes={args.classes},size={args.size},seed=0"
    tmp = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        ours, loops, bare, sliced = [], [], [], []
        _bare_forward(args.model, spec, None, args.batch_size, args.block_rows)  # warm-up
        for i in range(args.repeats):
            out = tmp / f"run{i}" / "s.zarr"
            out.parent.mkdir()
            total, loop = _extract(args.model, spec, out, args.batch_size, args.block_rows)
            ours.append(total)
            loops.append(loop)
            bare.append(_bare_forward(args.model, spec, None, args.batch_size, args.block_rows))
            sliced.append(_bare_forward(args.model, spec, None, args.batch_size, args.block_rows, sliced=True))
        store_path = tmp / "run0" / "s.zarr"
        on_disk = sum(f.stat().st_size for f in store_path.rglob("*") if f.is_file())
        small_spec = f"synthetic:n={args.n // 4},classes={args.classes},size={args.size},seed=0"
        rss_small = _peak_rss_child(args.model, small_spec, tmp / "rss1" / "s.zarr", args.batch_size, args.block_rows)
        rss_large = _peak_rss_child(args.model, spec, tmp / "rss4" / "s.zarr", args.batch_size, args.block_rows)
        result = {
            "benchmark": "extract",
            "model": args.model, "input_size": args.size, "rows": args.n, "units": True,
            "batch_size": args.batch_size, "block_rows": args.block_rows, "device": "cpu",
            "torch_threads": torch.get_num_threads(),
            "extract_images_per_s": round(args.n / min(loops), 1),
            "bare_forward_images_per_s": round(args.n / min(bare), 1),
            "throughput_ratio_vs_bare": round(min(bare) / min(loops), 3),
            "bare_sliced_images_per_s": round(args.n / min(sliced), 1),
            "throughput_ratio_vs_sliced_bare": round(min(sliced) / min(loops), 3),
            "end_to_end_ratio_vs_bare": round(min(bare) / min(ours), 3),
            "setup_and_finalize_seconds": round(min(ours) - min(loops), 2),
            "peak_rss_MB_n": round(rss_small, 1), "peak_rss_MB_4n": round(rss_large, 1),
            "peak_rss_growth_4x_rows": round(rss_large / rss_small - 1, 4),
            "store_bytes_per_row": round(on_disk / args.n, 1),
            **_read_rates(store_path),
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    os.environ.setdefault("ACTSTORE_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    main()
