"""Per-unit costs of this machine, measured once on small synthetic problems and cached under
``$ACTSTORE_HOME/calibration.json`` with the machine's description and the package versions: a cache
from another machine or version is not used (it is measured again, and the caller is told why).

Generic costs (``measure``): float64 GEMM rate, ICE's HALS and NNLS cost per (row x channel x
component x iteration), dgpruning's per-class cost, a VEBI solve, zarr decompression; Φ's costs at
a width (``phi_costs``). Model costs (``model_costs``): images per second through the probe in the
slices extraction uses (layers and unit features) and the head's cost per row. Interpreter costs
(``interpreter_costs``): what an interpreter measures of its own work with the run's parameters, e.g.
a topic-model step and its streaming from a store (random weights: only time is measured).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..config import home
from ..progress import status
from ..resources import fastest

__all__ = ["machine", "calibration", "model_costs", "interpreter_costs", "phi_costs", "model_key",
           "busy_warning", "CALIBRATION_FILE"]

CALIBRATION_FILE = "calibration.json"
CALIBRATION_VERSION = 4  # what is measured and how (4: faster ICE and Φ kernels): another version is measured again


def machine() -> dict[str, Any]:
    """What the costs depend on: CPU, cores, memory, and the versions of the code doing the work."""
    import sklearn
    import torch

    from .. import __version__

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_GB": round(memory / 2**30, 1),
            "cuda": torch.cuda.is_available(),
            "versions": {"calibration": CALIBRATION_VERSION, "actstore": __version__, "numpy": np.__version__,
                         "torch": torch.__version__, "sklearn": sklearn.__version__}}


def _gemm() -> float:
    X = np.random.default_rng(0).random((4096, 768))
    return 2 * 4096 * 768**2 / fastest(lambda: X.T @ X) / 1e9  # GFLOP/s


def _ice() -> tuple[float, float]:
    """Seconds per (row x channel x component x iteration) of ICE's fit and of its NNLS transform."""
    from threadpoolctl import threadpool_limits

    from ..interpret.ice import ICE

    rng = np.random.default_rng(0)
    A = np.maximum(rng.gamma(0.4, 1.0, (12000, 10)) @ rng.gamma(0.4, 1.0, (10, 128)) +
                   rng.standard_normal((12000, 128)) - 0.3, 0).astype(np.float32)
    few, many = (ICE(10, max_iter=it, tol=0.0) for it in (2, 12))
    with threadpool_limits(1, user_api="blas"):  # one core's rate: the store driver spreads classes over cores
        per_iter = max(1e-12, (fastest(lambda: many.fit(A)) - fastest(lambda: few.fit(A))) / 10) / (12000 * 128 * 10)
        nnls = fastest(lambda: many.transform(A)) / (12000 * 128 * 10 * many.max_iter)
    return per_iter, nnls


def _dgpruning() -> float:
    """Seconds per (n² x d) of one class's dgpruning (the kNN Gram and message passing)."""
    from ..coresets.selectors import dgpruning

    X = np.abs(np.random.default_rng(0).standard_normal((1500, 256))).astype(np.float32)
    y = np.zeros(1500, np.int64)
    dgpruning(X[:50], y[:50], 0.5)  # compile
    return fastest(lambda: dgpruning(X, y, 0.5)) / (1500**2 * 256)


def _vebi_solve() -> float:
    """Seconds per class and unit of a screened μ-lasso solve (P = 2000)."""
    from ..interpret.vebi import gram_stats, solve_mu_lasso

    rng = np.random.default_rng(0)
    X = rng.gamma(1.0, 1.0, (3000, 2000))
    y = rng.integers(0, 10, 3000)
    X[np.arange(3000), y * 7] += 3.0
    G, b, _ = gram_stats(X / X.sum(1, keepdims=True), y, 10)
    return fastest(lambda: [solve_mu_lasso(G, b[:, c], 3000, 1e-2) for c in range(10)], 1) / (10 * 2000)


def _read() -> float:
    """Decompressed MB/s of reading a ReLU-sparse float16 zarr array with the store's codecs."""
    import tempfile

    import zarr

    from ..store.schema import codecs_for

    data = np.maximum(np.random.default_rng(0).standard_normal((2048, 8, 8, 64)), 0).astype(np.float16)
    with tempfile.TemporaryDirectory() as tmp:
        arr = zarr.create_array(f"{tmp}/a.zarr", shape=data.shape, chunks=(256, 8, 8, 64), dtype="float16",
                                **codecs_for("float16"))
        arr[:] = data
        return data.nbytes / 1e6 / fastest(lambda: arr[:])


def measure() -> dict[str, float]:
    """The generic per-unit costs of this machine (about 10-20 s)."""
    ice, nnls = _ice()
    return {"gemm_gflops": _gemm(), "ice_s_per_elem_iter": ice, "nnls_s_per_elem_iter": nnls,
            "dgpruning_s_per_n2d": _dgpruning(), "vebi_solve_s_per_unit": _vebi_solve(), "read_MBps": _read()}


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def calibration(refresh: bool = False, quiet: bool = False) -> dict[str, Any]:
    """The cached calibration of this machine, measured again when missing, from another machine or version,
    or when ``refresh``; says on stderr when (and why) it measures."""
    path = home() / CALIBRATION_FILE
    here = machine()
    cached = _load(path)
    if cached is not None and cached.get("machine") == here and not refresh:
        return cached
    why = ("asked to" if refresh else "none cached yet" if cached is None else
           "the cache was made on another machine or with other package versions")
    status(f"calibrating this machine's per-unit costs ({why}; cached in {path})...", not quiet)
    load = _load_average()  # before measuring: the probes' own load would count otherwise
    out = {"machine": here, "costs": measure(), "models": {}, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
           "load": load}
    atomic_write_text(path, json.dumps(out, indent=1), what="the calibration")
    return out


def _load_average() -> float:
    """The 1-minute load average (0 where the system does not tell): other work skews every measurement."""
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # AttributeError: no getloadavg on this platform
        return 0.0


def busy_warning(cal: dict[str, Any], used: list[dict[str, float]]) -> str | None:
    """A line saying the calibration ran on a busy machine (load at or above half the cores), else None;
    ``used``: the model and interpreter costs the estimate took (each records its load)."""
    loads = [cal.get("load", 0.0), *(costs.get("load", 0.0) for costs in used)]
    cores = cal["machine"].get("cores") or 1
    if max(loads) < 0.5 * cores:
        return None
    return (f"warning: the machine was busy while it was calibrated (load {max(loads):g} on {cores} cores): with "
            "threads competing for cores these times can be several times too high; rerun with --recalibrate "
            "on a quiet machine")


def _forward_rate(probe: Any, size: int) -> float:
    """Images per second through ``probe`` as extraction runs it: on the device ``auto`` picks, in the slices
    a CPU takes or the whole default batch on an accelerator (the probe is back on the CPU afterwards)."""
    import torch

    from ..device import resolve_device
    from ..extract.extractor import forward_slices

    dev = resolve_device("auto")
    x = torch.randn(24 if dev.type == "cpu" else 64, 3, size, size, device=dev)

    def run() -> None:
        for part in forward_slices(x, dev):
            probe(part)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    try:
        probe.to(dev)
        probe(x[:1])  # warm up (FX, allocator)
        return len(x) / fastest(run, 3)
    finally:
        probe.to("cpu")


def model_key(loaded: Any, layers: list[str], units: bool) -> str:
    """The calibration's key for a model's costs: its builder, input size, layers and units."""
    return f"{loaded.builder}|{loaded.input_size}|{len(layers)}|{int(units)}"


def phi_costs(cal: dict[str, Any], width: int) -> dict[str, float]:
    """Φ's costs at Z's ``width`` (cached per width): its statistics per (row x width²), and per pair the SVD
    every α takes and the two eigendecompositions any α < 1 adds."""
    from .shape import ShapeStats

    cached = cal.setdefault("phi", {})
    if str(width) not in cached:
        rng = np.random.default_rng(0)
        X, Y = (np.maximum(rng.standard_normal((2000, width), np.float32), 0) for _ in range(2))
        update = fastest(lambda: ShapeStats().update(X, Y))
        stats = ShapeStats().update(X, Y)
        svd = fastest(lambda: stats.distance(1.0))
        spectra = fastest(lambda: ShapeStats().update(X, Y).distance(0.5)) - update - svd
        cached[str(width)] = {"phi_s_per_row_d2": update / (2000 * width * width), "phi_svd_s": svd,
                              "phi_eigh_s": max(0.0, spectra)}
        _save(cal)
    return cached[str(width)]


def _model_parts(loaded: Any, layers: list[str], units: bool) -> tuple[Any, tuple[int, ...], Any]:
    """The probe, the default layer's map shape (H, W, D) and the head after it."""
    import torch

    from ..extract.heads import model_head
    from ..extract.probe import Probe

    probe = Probe(loaded, layers, units)
    shape = probe.describe(torch.zeros(1, 3, loaded.input_size, loaded.input_size))[loaded.default_layer]
    return probe, tuple(shape), model_head(loaded, loaded.default_layer)


def _save(cal: dict[str, Any]) -> None:
    atomic_write_text(home() / CALIBRATION_FILE, json.dumps(cal, indent=1), what="the calibration")


def model_costs(cal: dict[str, Any], loaded: Any, layers: list[str], units: bool) -> dict[str, float]:
    """A model's costs on this machine (cached in the calibration): images/s through the probe and the head's
    seconds per row, measured with the model's own shapes (its weights do not matter)."""
    key = model_key(loaded, layers, units)
    if key in cal["models"]:
        return cal["models"][key]
    probe, shape, head = _model_parts(loaded, layers, units)
    maps = np.abs(np.random.default_rng(0).standard_normal((256, *shape))).astype(np.float32)
    load = _load_average()
    head_s = fastest(lambda: head.logits(maps)) / 256
    costs = {"images_per_s": _forward_rate(probe, loaded.input_size), "head_s_per_row": head_s, "load": load}
    cal["models"][key] = costs
    _save(cal)
    return costs


def interpreter_costs(cal: dict[str, Any], loaded: Any, layers: list[str], units: bool, interp: Any,
                      params: dict[str, Any]) -> dict[str, float]:
    """What an interpreter measures of its own work on a model's maps with the run's parameters
    (``Interpreter.measure_costs``; cached per model, interpreter and those parameters); {} when it measures
    nothing."""
    if not interp.cost_params:
        return {}
    key = "|".join([model_key(loaded, layers, units), interp.name,
                    *(f"{k}={params[k]}" for k in interp.cost_params)])
    if key not in cal["models"]:
        _, shape, head = _model_parts(loaded, layers, units)
        load = _load_average()
        cal["models"][key] = {**interp.measure_costs(head, shape, loaded.num_classes, params), "load": load}
        _save(cal)
    return cal["models"][key]
