"""Every peer comparison in one command: writes benchmarks/RESULTS.md and prints one JSON object.

- extraction against torchlens and thingsvision (peer_extract.py; a peer not installed is skipped),
- ICE against scikit-learn's NMF (same init, solver, tolerance),
- the shape metric Φ against an in-memory float64 restatement of netrep's algorithm,
- dgpruning against the dense reference (the selectors spec restated with full distance matrices).

Peers are optional: ``pip install -e ".[peers]"`` installs the ones that can live beside torch 2.14.

Usage: python benchmarks/peers/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _extraction(n: int) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "peer_extract.py"), "--n", str(n)], capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rows(res: dict) -> list[str]:
    out = []
    ex = res["extraction"]
    ours = ex["actstore"]
    for peer in ("torchlens", "thingsvision"):
        p = ex[peer]
        if "skipped" in p:
            out.append(f"| extraction, resnet18 `layer4`, {ex['images']} images | {ours['images_per_s']:.0f} img/s, "
                       f"{ours['peak_rss_MB']:.0f} MB | {peer}: skipped ({p['skipped']}) | — | — |")
        else:
            out.append(f"| extraction, resnet18 `layer4`, {ex['images']} images | {ours['images_per_s']:.0f} img/s, "
                       f"{ours['peak_rss_MB']:.0f} MB peak | {peer}: {p['images_per_s']:.0f} img/s, "
                       f"{p['peak_rss_MB']:.0f} MB peak | {p['actstore_speedup']:.2f}x faster | "
                       f"max abs diff {p['max_abs_diff_vs_store']:.1e} ({'equal' if p['equal_to_1e-5'] else 'DIFFERENT'}) |")
    ice = res["ice"]
    out.append(f"| ICE, {ice['rows']} x {ice['d']}, k = {ice['k']} | {ice['ours_seconds']} s | scikit-learn NMF: "
               f"{ice['sklearn_seconds']} s | time ratio {ice['time_ratio_vs_sklearn']} | error ratio "
               f"{ice['error_ratio_vs_sklearn']} |")
    phi = res["phi"]
    out.append(f"| Φ, {phi['rows']} x {phi['d']} from a store | {phi['ours_seconds_3_alphas']} s (3 α), "
               f"{phi['ours_peak_rss_MB']:.0f} MB | netrep in memory: {phi['netrep_inmemory_seconds_1_alpha']} s "
               f"(1 α), {phi['netrep_inmemory_peak_rss_MB']:.0f} MB | {phi['speedup']}x faster | "
               f"abs diff {phi['abs_difference']:.1e} |")
    sel = res["dgpruning"]
    out.append(f"| dgpruning, one class {sel['n']} x {sel['d']}, ρ = {sel['rate']} | {sel['ours_ms']} ms | dense "
               f"reference: {sel['reference_ms']} ms | {sel['speedup_vs_reference']}x faster | "
               f"{'identical selection' if sel['identical_selection'] else 'DIFFERENT selection'} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs (a few minutes in all)")
    args = ap.parse_args()
    from bench_evaluate import phi_vs_netrep
    from bench_interpret import ice_vs_sklearn
    from bench_select import one_class

    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    try:
        res = {"extraction": _extraction(256 if args.quick else 512),
               "ice": ice_vs_sklearn(200 if args.quick else 1300),
               "phi": phi_vs_netrep(tmp, 50_000 if args.quick else 200_000, 512),
               "dgpruning": one_class(3 if args.quick else 7)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# actstore against its peers",
        "",
        f"Written by `python benchmarks/peers/run_all.py{' --quick' if args.quick else ''}` on {when}: "
        f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}, no GPU. "
        "Each pair ran on the same machine in the same run; this machine's speed drifts, so read the ratios.",
        "",
        "| what | actstore | peer | ratio | same result? |",
        "|---|---|---|---|---|",
        *_rows(res),
        "",
    ]
    (HERE.parent / "RESULTS.md").write_text("\n".join(lines))
    print(json.dumps({"benchmark": "peers", **res}))


if __name__ == "__main__":
    os.environ.setdefault("ACTSTORE_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    main()
