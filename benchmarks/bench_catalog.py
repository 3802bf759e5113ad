"""Catalog benchmark at scale: prints one JSON object.

A 50 000-entry catalog (2 000 stores, 8 000 features, 40 000 coresets, every path present on disk,
16 MB of YAML). Ours (``actstore.catalog``: an append-only journal beside the YAML and a parse cache
keyed by the YAML's hash) against the baseline measured in the same process: the former approach,
which parsed the whole YAML on every load and re-read, re-dumped and rewrote it on every add.

- ``catalog ls`` as users run it (a fresh ``actstore catalog ls --json`` process: imports, load,
  stale-entry check, output), with the cache warm; target <= 2 s.
- one add (the mean and the worst of 20), and 7 adds (one ``select --paper-rates``); target <= 0.2 s.
- the first load after a hand edit (the YAML is parsed once and the cache refreshed), and one
  compaction (folding the journal into the YAML: done under the lock when the journal reaches an
  eighth of the YAML, i.e. every few thousand adds at this size).

Usage: python benchmarks/bench_catalog.py [--entries 50000] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_child  # noqa: E402

from actstore.atomic import atomic_write_text  # noqa: E402
from actstore.catalog import Catalog  # noqa: E402

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def make_catalog(root: Path, n: int) -> Path:
    """A realistic catalog of ``n`` artifacts whose paths exist (stores with their root zarr.json)."""
    data: dict = {"version": 1, "datasets": {}, "models": {}, "stores": {}, "coresets": {}, "features": {},
                  "results": {}}
    for sub in ("stores", "coresets", "features"):
        (root / sub).mkdir(parents=True)
    model = {"name": "demo-resnet", "builder": "demo-resnet", "weights": "demo", "weights_sha256": "f" * 64,
             "random_init": False, "num_classes": 10, "family": "resnet", "input_size": 32}
    for i in range(n):
        key = f"{i:016x}"
        if i % 25 == 0:
            path = root / "stores" / f"s{i}.zarr"
            path.mkdir()
            (path / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {
                "actstore": {"key": key, "schema_version": 1, "status": "complete"}}}))
            data["stores"][f"store-{i}"] = {
                "path": f"stores/s{i}.zarr", "fingerprint": "ab" * 8, "key": key, "provenance": {
                    "model": model, "layers": {"layer3": [8, 8, 64]}, "dtype": "float16", "units": True,
                    "dataset": {"spec": "digits:train", "name": "digits:train", "fingerprint": "ab" * 8,
                                "n_rows": 1437, "classes": 10}}}
        elif i % 5 == 0:
            (root / "features" / f"f{i}.zarr").mkdir()
            data["features"][f"feat-{i}"] = {
                "path": f"features/f{i}.zarr", "fingerprint": "ab" * 8, "key": key, "provenance": {
                    "method": "ice", "params": {"n_components": 10, "max_iter": 200, "tol": 0.0001},
                    "coreset": key, "layer": "layer3", "store": "store-0"}}
        else:
            (root / "coresets" / f"c{i}.json").write_text("{}")
            data["coresets"][f"store-0.dgpruning.r0.1.s{i}"] = {
                "path": f"coresets/c{i}.json", "fingerprint": "ab" * 8, "key": key, "provenance": {
                    "method": "dgpruning", "params": {"k": 5, "gamma_f": 1, "gamma_r": 0.1}, "rate": 0.1, "seed": i,
                    "layer": "layer3", "store": "store-0", "n": 144}}
    path = root / "catalog.yaml"
    path.write_text(yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False))
    return path


def _entry(i: int) -> dict:
    return {"path": f"coresets/new{i}.json", "fingerprint": "ab" * 8, "key": f"new{i:013x}",
            "provenance": {"method": "random", "rate": 0.1, "seed": i, "store": "store-0", "n": 144}}


def baseline(path: Path) -> dict:
    """The former catalog: a full safe_load per load; per add a locked re-read, re-dump and rewrite."""
    t = time.perf_counter()
    data = yaml.load(path.read_text(), Loader=_Loader)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    data = yaml.load(path.read_text(), Loader=_Loader)
    data["coresets"]["baseline-add"] = _entry(0)
    atomic_write_text(path.with_name("baseline.yaml"), yaml.dump(data, Dumper=_Dumper, sort_keys=False,
                                                                 default_flow_style=False))
    add_s = time.perf_counter() - t
    return {"load_s": round(load_s, 2), "add_s": round(add_s, 2), "ls_s_at_least": round(load_s, 2),
            "select_7_adds_s_estimated": round(load_s + 7 * add_s, 1)}


def ours(path: Path) -> dict:
    out: dict = {}
    t = time.perf_counter()
    Catalog.load(path)  # cold: parses the YAML once, writes the cache
    out["load_after_hand_edit_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    cat = Catalog.load(path)
    out["load_s"] = round(time.perf_counter() - t, 3)
    env = {**os.environ, "ACTSTORE_HOME": str(path.parent / "home")}
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "actstore.cli", "catalog", "ls", "--catalog", str(path), "--json"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        runs.append(time.perf_counter() - t)
        assert proc.returncode == 0, proc.stderr
    out["catalog_ls_cli_s"] = round(min(runs), 2)
    out["catalog_ls_peak_rss_mb"] = run_child(f"""
from _common import peak_rss_mb
import json
from actstore import Catalog
cat = Catalog.load({str(path)!r}); cat.problems()
print(json.dumps(peak_rss_mb()))
""")
    adds = []
    for i in range(20):
        t = time.perf_counter()
        cat.add("coresets", f"new-{i}", _entry(i))
        adds.append(time.perf_counter() - t)
    out["add_s_mean"], out["add_s_max"] = round(sum(adds) / len(adds), 4), round(max(adds), 4)
    t = time.perf_counter()
    fresh = Catalog.load(path)
    for i in range(7):
        fresh.add("coresets", f"select-{i}", _entry(100 + i))
    out["select_7_adds_s"] = round(time.perf_counter() - t, 3)
    journal, base = path.with_name(path.name + ".journal").stat().st_size, path.stat().st_size
    out["adds_between_compactions"] = int(base / 8 / (journal / 27))
    t = time.perf_counter()
    fresh.compact()
    out["compaction_s"] = round(time.perf_counter() - t, 2)
    out["compaction_s_per_add_amortized"] = round(out["compaction_s"] / out["adds_between_compactions"], 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = make_catalog(Path(tmp), args.entries)
        result = {"entries": args.entries, "yaml_mb": round(path.stat().st_size / 1e6, 1),
                  "targets": {"catalog_ls_s": 2.0, "add_s": 0.2}}
        if not args.skip_baseline:
            result["baseline_full_rewrite"] = baseline(path)
        result["ours_journal_and_cache"] = ours(path)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
