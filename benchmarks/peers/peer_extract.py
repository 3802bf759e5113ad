"""Extraction against the tools users would pick instead: prints one JSON object.

Same model (resnet18, seeded random init), same layer (``layer4``), same images (the synthetic
dataset at 112 px, in the store's class-contiguous order), same batch size. Each tool runs in a
fresh process, so its peak RSS is its own: actstore writes a float32 store on disk; torchlens
(``torchlens.trace``) and thingsvision (``extract_features``) keep the activations in memory, as they
are used. The activations of every peer must equal the store's to 1e-5. A peer that is not installed
is reported as skipped, with the reason.

Usage: python benchmarks/peers/peer_extract.py [--n 512] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

PRELUDE = """
import json, sys, time, numpy as np, torch
sys.path.insert(0, {bench!r})
from _common import peak_rss_mb
from actstore.extract.datasets import resolve_dataset
from actstore.extract.models import load_model
torch.set_num_threads({threads})
source = resolve_dataset({spec!r})
order = np.argsort(source.labels, kind="stable")
loaded = load_model("resnet18", "random")
batches = [torch.stack([source.load(int(i)) for i in order[j:j + {bs}]]) for j in range(0, len(order), {bs})]
"""

RUNNERS = {
    "actstore": """
from actstore import extract, open_store
t = time.perf_counter()
r = extract("resnet18", {spec!r}, {out!r}, layers=["layer4"], weights="random", dtype="float32", batch_size={bs},
            catalog={out!r} + ".catalog.yaml", progress=False)
seconds = time.perf_counter() - t
acts = np.asarray(open_store(r.path).array("layers/layer4/maps")[:])  # channels-last, as stored
np.save({npy!r}, acts)
""",
    "torchlens": """
import torchlens
from torchlens.options import CaptureOptions
t = time.perf_counter()
outs = []
for x in batches:
    trace = torchlens.trace(loaded.module, x, capture=CaptureOptions(layers_to_save=["layer4"]))
    outs.append(trace["layer4"].tensor.detach().clone())
seconds = time.perf_counter() - t
acts = torch.cat(outs).permute(0, 2, 3, 1).numpy()
""",
    "thingsvision": """
from thingsvision import get_extractor
extractor = get_extractor(model_name="resnet18", source="torchvision", device="cpu", pretrained=False)
extractor.model.load_state_dict(loaded.module.state_dict())
t = time.perf_counter()
feats = extractor.extract_features(batches=batches, module_name="layer4", flatten_acts=False)
seconds = time.perf_counter() - t
acts = np.asarray(feats).transpose(0, 2, 3, 1)
""",
}

EPILOGUE = """
ref = np.load({npy!r})
print(json.dumps({{"seconds": seconds, "images_per_s": len(order) / seconds, "peak_rss_MB": peak_rss_mb(),
                   "max_abs_diff_vs_store": float(np.abs(acts - ref).max()) if acts.shape == ref.shape else None,
                   "shape": list(acts.shape)}}))
"""


WHY_ABSENT = {"thingsvision": "thingsvision 2.7.3 requires torch 2.0 and imports TensorFlow at import time, so it "
                              "cannot be installed beside torch 2.14.1"}


def run(tool: str, fill: dict) -> dict:
    importable = subprocess.run([sys.executable, "-c", f"import {tool}"], capture_output=True, text=True)
    if importable.returncode != 0:
        why = WHY_ABSENT.get(tool, importable.stderr.strip().splitlines()[-1])
        return {"skipped": f"{tool} is not installed: {why}"}
    code = PRELUDE + RUNNERS[tool] + (EPILOGUE if tool != "actstore" else EPILOGUE.replace("ref = np.load", "ref = acts  #"))
    proc = subprocess.run([sys.executable, "-c", code.format(**fill)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"skipped": f"{tool} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    fill = {"bench": str(HERE.parent), "spec": f"synthetic:n={args.n},classes=4,size=112,seed=0", "bs": args.batch_size,
            "out": str(tmp / "store.zarr"), "npy": str(tmp / "ours.npy"), "threads": args.threads}
    try:
        out: dict = {"benchmark": "peers-extract", "model": "resnet18", "layer": "layer4", "images": args.n}
        out["actstore"] = run("actstore", fill)
        for peer in ("torchlens", "thingsvision"):
            res = run(peer, fill)
            if "seconds" in res:
                res["actstore_speedup"] = round(res["seconds"] / out["actstore"]["seconds"], 2)
                res["equal_to_1e-5"] = res["max_abs_diff_vs_store"] is not None and res["max_abs_diff_vs_store"] <= 1e-5
            out[peer] = res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
