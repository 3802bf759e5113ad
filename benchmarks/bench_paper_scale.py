"""An ImageNet-shaped dry run of the paper's whole grid, and what ImageNet-1k would cost on this machine.

ResNet18 (random weights: only the cost is measured) over synthetic 224 px images, 1300 train and 50
validation images per class for C classes: real stores (layer4 7 x 7 x 512, P = 3904 units, the
validation store with every ReLU call's maps), every selector x the paper's ρ x ICE, VEBI and the topic
model, Φ and accuracy. Before the run, ``experiment --estimate`` predicts each stage; after it, the
run's own per-stage record (provenance.json: seconds, peak RSS, bytes read) is compared with the
prediction, and the per-stage ratio measured/predicted corrects the cost model's estimate of the
same grid on ImageNet-1k (1000 classes, 1.28 M train and 50 000 validation images) for ResNet18 and
ResNet50 (layer4 7 x 7 x 2048, P = 22 720).

The topic model trains 2 epochs (``--topic-epochs``; the reference's 10 cost 5x as much, linearly),
and VEBI's all-layers ablation is off unless ``--all-layers`` (one forward pass per class, target and
image: it is extrapolated from the probe's measured throughput either way).

Usage: python benchmarks/bench_paper_scale.py [--classes 10] [--out DIR] [--all-layers] [--keep] [--record]
Prints one JSON object; ``--record`` also keeps it in benchmarks/paper_scale.json and writes its section
of benchmarks/RESULTS.md (``peers/run_all.py`` keeps that section when it rewrites the file).
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

import yaml

HERE = Path(__file__).resolve().parent
RATES = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.95]


def config(classes: int, train_per_class: int, val_per_class: int, model: str, topic_epochs: int, all_layers: bool,
           out: str, vebi_units: int = 0) -> dict:
    return {
        "models": [model], "interpreters": ["ice", "vebi", "topic"],
        "selectors": ["random", "moderate", "dgpruning", "kcenter"], "rates": RATES, "seeds": [0], "alphas": [1.0],
        "train": f"synthetic:n={classes * train_per_class},classes={classes},size=224,seed=0",
        "val": f"synthetic:n={classes * val_per_class},classes={classes},size=224,seed=1",
        "transfer": False, "vebi_all_layers": all_layers, "heatmaps": False,
        "params": {"ice": {"n_components": 10}, "vebi": {"units_per_class": vebi_units, "labels": "true"} if vebi_units > 0 else {"labels": "true"},
                   "topic": {"epochs": topic_epochs, "training": "steps"}},
        "out": out,
    }


def catalog(path: Path, classes: int) -> None:
    models = {f"r{n}-random": {"builder": f"resnet{n}", "weights": "random", "num_classes": classes} for n in (18, 50)}
    path.write_text(yaml.safe_dump({"version": 1, "models": models}))


def cli(*args: str, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-m", "actstore.cli", *args, "--json"], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise SystemExit(f"actstore {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def by_stage(est: dict) -> dict[str, float]:
    """Predicted seconds per stage, named as the run records them (extract per model, select, interpret and
    evaluate per model and interpreter)."""
    out: dict[str, float] = {}
    for s in est["stages"]:
        name = {"extract": f"extract/{s['model']}", "select": "select"}.get(
            s["stage"], f"{s['stage']}/{s['model']}/{s['what'].split(':')[0]}")
        out[name] = out.get(name, 0.0) + s["seconds"]
    return out


def imagenet(env: dict[str, str], work: Path, cat: Path, corrections: dict[str, float], all_layers: bool) -> dict:
    """The same grid on ImageNet-1k shapes for ResNet18 and ResNet50, estimated and corrected by the dry run."""
    out = {}
    for n in (18, 50):
        cfg = config(1000, 1281, 50, f"r{n}-random", 10, all_layers, str(work / f"imagenet-{n}"))
        cfg["train"] = "synthetic:n=1281167,classes=1000,size=224,seed=0"
        path = work / f"imagenet-{n}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        est = cli("experiment", str(path), "--catalog", str(cat), "--estimate", env=env)
        stages = {name: {"estimated_hours": round(seconds / 3600, 2),
                         "corrected_hours": round(seconds * corrections.get(_kind(name), 1.0) / 3600, 2)}
                  for name, seconds in by_stage(est).items()}
        dominant = max(stages, key=lambda k: stages[k]["corrected_hours"])
        out[f"resnet{n}"] = {"stages": stages, "total_hours": round(sum(v["corrected_hours"] for v in stages.values()),
                                                                    1),
                             "dominant": dominant, "disk_GB": round(est["total"]["disk_MB"] / 1024, 1)}
    return out


SECTION = "## ImageNet-shaped dry run (benchmarks/bench_paper_scale.py)"


def markdown(r: dict) -> str:
    """RESULTS.md's section for one recorded run: measured vs estimated per stage, then ImageNet-1k."""
    lines = [SECTION, "",
             f"ResNet18 with random weights on synthetic 224 px images: {r['classes']} classes, {r['train_rows']} train "
             f"and {r['val_rows']} validation images; every selector x ρ {RATES} x ICE, VEBI, topic ({r['topic_epochs']} "
             f"epochs of steps), Φ and accuracy; VEBI all-layers {'on' if r['all_layers'] else 'off'}. Machine: "
             f"{r['machine'].get('cpu')} ({r['machine'].get('cores')} cores). Wall {r['wall_seconds']:.0f} s; "
             f"`--estimate` predicted {r['estimated_seconds']:.0f} s (measured/estimated "
             f"{r['total_measured_over_estimated']}).", "",
             "| stage | measured s | estimated s | measured/estimated | peak RSS MB | read MB |", "|---|---|---|---|---|---|"]
    for name, s in r["stages"].items():
        lines.append(f"| {name} | {s['seconds']:.1f} | {s['estimated_seconds']:.1f} | {s['measured_over_estimated']} | "
                     f"{s['peak_rss_MB']:.0f} | {s['read_MB']:.0f} |")
    for net, x in r["imagenet_1k"].items():
        lines += ["", f"ImageNet-1k, {net} (1.28 M train, 50 000 val; topic 10 epochs), on this machine: "
                  f"**{x['total_hours']} h**, disk {x['disk_GB']} GB; dominant stage: **{x['dominant']}**. Hours per "
                  "stage, the cost model's and corrected by this run's measured/estimated ratio:", "",
                  "| stage | estimated h | corrected h |", "|---|---|---|",
                  *[f"| {n} | {v['estimated_hours']} | {v['corrected_hours']} |" for n, v in x["stages"].items()]]
    shares = [f"{net}: {x['dominant']}, {100 * x['stages'][x['dominant']]['corrected_hours'] / x['total_hours']:.0f} % "
              f"of {x['total_hours']} h" for net, x in r["imagenet_1k"].items()]
    off = {n: s["measured_over_estimated"] for n, s in r["stages"].items()
           if s["measured_over_estimated"] and not 0.7 <= s["measured_over_estimated"] <= 1.3}
    lines += ["", f"Where the next speed work goes: the dominant stage ({'; '.join(shares)}). Stages the cost model "
              f"misjudged by more than 30 % in this run (measured/estimated): "
              + (", ".join(f"{n} {v}" for n, v in off.items()) or "none") + "."]
    return "\n".join(lines) + "\n"


def write_section(results_md: Path, section: str) -> None:
    """Replace (or add) the dry run's section of RESULTS.md, leaving the rest as it is."""
    text = results_md.read_text() if results_md.exists() else ""
    head = text.split(SECTION)[0].rstrip("\n")
    results_md.write_text((head + "\n\n" if head else "") + section)


def _kind(name: str) -> str:
    parts = name.split("/")
    return parts[0] if len(parts) < 3 else f"{parts[0]}/{parts[2]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--train-per-class", type=int, default=1300)
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--topic-epochs", type=int, default=2)
    ap.add_argument("--all-layers", action="store_true")
    ap.add_argument("--vebi-units", type=int, default=0, help="VEBI's units_per_class (0: the paper's μ = 1e-3). With "
                    "random weights the positive lasso paths end after 1-3 units, so a unit budget is often out of reach")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the stores and results")
    ap.add_argument("--record", action="store_true", help="write benchmarks/paper_scale.json and RESULTS.md's section")
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="actstore-paper-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ACTSTORE_HOME": str(work / "home"), "ACTSTORE_PROGRESS_INTERVAL": "60"}
    cat = work / "catalog.yaml"
    catalog(cat, args.classes)
    cfg_path = work / "dry-run.yaml"
    cfg_path.write_text(yaml.safe_dump(config(args.classes, args.train_per_class, args.val_per_class, "r18-random",
                                              args.topic_epochs, args.all_layers, str(work / "results"),
                                              args.vebi_units)))
    est = cli("experiment", str(cfg_path), "--catalog", str(cat), "--estimate", env=env)
    t0 = time.perf_counter()
    cli("experiment", str(cfg_path), "--catalog", str(cat), "--no-report", env=env)
    wall = time.perf_counter() - t0
    measured = json.loads((work / "results" / "provenance.json").read_text())["work"]["stages"]
    predicted = by_stage(est)
    stages = {name: {**m, "estimated_seconds": round(predicted.get(name, 0.0), 1),
                     "measured_over_estimated": round(m["seconds"] / predicted[name], 2) if predicted.get(name) else None}
              for name, m in measured.items()}
    corrections = {_kind(n): s["measured_over_estimated"] for n, s in stages.items() if s["measured_over_estimated"]}
    result = {"benchmark": "paper_scale", "classes": args.classes, "train_rows": args.classes * args.train_per_class,
              "val_rows": args.classes * args.val_per_class, "topic_epochs": args.topic_epochs,
              "all_layers": args.all_layers, "wall_seconds": round(wall, 1),
              "estimated_seconds": round(est["total"]["seconds"], 1),
              "total_measured_over_estimated": round(sum(m["seconds"] for m in measured.values())
                                                     / est["total"]["seconds"], 2),
              "stages": stages, "imagenet_1k": imagenet(env, work, cat, corrections, args.all_layers),
              "machine": est["machine"]}
    print(json.dumps(result))
    if args.record:
        (HERE / "paper_scale.json").write_text(json.dumps(result, indent=1) + "\n")
        write_section(HERE / "RESULTS.md", markdown(result))
    if not args.keep and args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
