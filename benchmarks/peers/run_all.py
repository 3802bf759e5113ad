"""Every peer comparison in one command: writes benchmarks/RESULTS.md and prints one JSON object.

- extraction against torchlens and thingsvision (peer_extract.py; a peer not installed is skipped),
- ICE against scikit-learn's NMF (same init, solver, tolerance), at several shapes,
- the shape metric Φ against the real netrep (``LinearMetric``, the wheel in ``shared/peers``) and,
  labelled as such, against an in-memory float64 restatement of netrep's algorithm,
- dgpruning against the dense reference (the selectors spec restated with full distance matrices).

Every pair runs with the same BLAS thread count (``--threads``, default 1: the machine is shared),
interleaved, and the median of the per-round ratios is reported.

Peers are optional: ``pip install -e ".[peers]"`` installs the ones that can live beside torch 2.14;
netrep: ``pip install ../shared/peers/netrep-0.0.2-py3-none-any.whl``.

Usage: python benchmarks/peers/run_all.py [--quick] [--threads 1] [--repeats 3]
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
    for ice in res["ice"]:
        out.append(f"| ICE, {ice['rows']} x {ice['d']}, k = {ice['k']}, to convergence | {ice['ours_seconds']} s, "
                   f"{ice['ours_iterations']} iterations | scikit-learn NMF: {ice['sklearn_seconds']} s, "
                   f"{ice['sklearn_iterations']} iterations | time ratio {ice['time_ratio_vs_sklearn']} "
                   f"(median of {ice['repeats']}) | error ratio {ice['error_ratio_vs_sklearn']} |")
    phi = res["phi"]
    for key, what in (("phi", "Φ, {rows} x {d}, X and Y from stores"),
                      ("phi_with_interpretation", "Φ, {rows} x {d}, Y computed from X in the timing")):
        if key not in phi:
            continue
        row = phi[key]
        label = what.format(rows=phi["rows"], d=phi["d"])
        ours = f"{row['ours_seconds_3_alphas']} s (3 α), {row['ours_peak_rss_MB']:.0f} MB peak"
        if "netrep" in row:
            out.append(f"| {label} | {ours} | real netrep: skipped ({row['netrep']['skipped']}) | — | — |")
        else:
            out.append(f"| {label} | {ours} | **real netrep** `LinearMetric(alpha=0.5).fit_score`, float64: "
                       f"{row['netrep_seconds_1_alpha']} s (1 α), {row['netrep_peak_rss_MB']:.0f} MB peak | "
                       f"{row['speedup_vs_netrep']}x faster (median of {phi['repeats']}) | "
                       f"abs diff {row['abs_difference_vs_netrep']:.1e} |")
        out.append(f"| {label} | {ours} | netrep **restatement** in memory (actstore.testing.netrep_restated, not netrep "
                   f"itself): {row['restatement_inmemory_seconds_1_alpha']} s (1 α), "
                   f"{row['restatement_inmemory_peak_rss_MB']:.0f} MB peak | {row['speedup_vs_restatement']}x faster | "
                   f"abs diff {row['abs_difference_vs_restatement']:.1e} |")
    sel = res["dgpruning"]
    out.append(f"| dgpruning, one class {sel['n']} x {sel['d']}, ρ = {sel['rate']} | {sel['ours_ms']} ms | dense "
               f"reference: {sel['reference_ms']} ms | {sel['speedup_vs_reference']}x faster | "
               f"{'identical selection' if sel['identical_selection'] else 'DIFFERENT selection'} |")
    out.append(f"| dgpruning, one class {sel['n']} x {sel['d']}, against one float64 GEMM X·Xᵀ | {sel['ours_ms']} ms | "
               f"GEMM: {sel['floor_gemm_ms']} ms | {sel['ratio_vs_floor']}x the GEMM "
               f"({sel['ratio_vs_floor_few_dead_channels']}x on a class with few dead channels) | — |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs (a few minutes in all)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads, the same for both sides of every pair")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from _common import limit_threads
    from bench_evaluate import phi_vs_netrep
    from bench_interpret import ICE_SHAPES, ice_vs_sklearn
    from bench_select import one_class

    threads = limit_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    try:
        shapes = [(m // 4, d) for m, d in ICE_SHAPES] if args.quick else ICE_SHAPES
        res = {"threads": threads, "extraction": _extraction(256 if args.quick else 512),
               "ice": [ice_vs_sklearn(0, d, repeats=args.repeats, m=m)
                       for m, d in [*shapes, ((200 if args.quick else 1300) * 49, 2048)]],
               "phi": phi_vs_netrep(tmp, 50_000 if args.quick else 200_000, 512, args.repeats, threads),
               "dgpruning": one_class(max(3, args.repeats) if args.quick else 7)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# actstore against its peers",
        "",
        f"Written by `python benchmarks/peers/run_all.py{' --quick' if args.quick else ''} --threads {threads}` on "
        f"{when}: {os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}, no GPU, "
        f"{threads} BLAS thread(s) on both sides of every pair. Each pair ran on the same machine in the same run, "
        "interleaved; this machine is shared and its speed drifts, so read the ratios (medians of the rounds).",
        "",
        "\"Real netrep\" is the netrep package itself (the wheel in `shared/peers`, commit 0186b8a); the "
        "\"restatement\" is our in-memory re-implementation of its algorithm in `actstore.testing.netrep_restated`, "
        "kept as a second reference. Φ: ours streams X and Y from stores and gives α = 0, 0.5 and 1 from one "
        "pass; netrep fits α = 0.5 only, on the whole float64 matrices.",
        "",
        "| what | actstore | peer | ratio | same result? |",
        "|---|---|---|---|---|",
        *_rows(res),
        "",
    ]
    (HERE.parent / "RESULTS.md").write_text("\n".join(lines))
    recorded = HERE.parent / "paper_scale.json"
    if recorded.exists():  # keep the dry run's section (bench_paper_scale.py --record)
        sys.path.insert(0, str(HERE.parent))
        from bench_paper_scale import markdown, write_section

        write_section(HERE.parent / "RESULTS.md", markdown(json.loads(recorded.read_text())))
    print(json.dumps({"benchmark": "peers", **res}))


if __name__ == "__main__":
    os.environ.setdefault("ACTSTORE_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    main()
