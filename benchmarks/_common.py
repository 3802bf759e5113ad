"""Helpers shared by the benchmarks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from actstore.resources import (
    peak_rss_mb,  # VmHWM: ru_maxrss survives execve, so children would report the parent's
)

__all__ = ["peak_rss_mb", "run_child", "limit_threads", "thread_env"]

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def limit_threads(n: int) -> int:
    """Limit every BLAS/OpenMP pool of this process to ``n`` threads, after loading numpy's, scipy's and
    scikit-learn's (a pool loaded later would escape threadpoolctl's limit). Returns ``n``."""
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    import sklearn.utils.extmath  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(n))
    return int(n)


def thread_env(n: int) -> dict[str, str]:
    """The environment of a child process whose pools start with ``n`` threads."""
    import os

    return {**os.environ, **{v: str(int(n)) for v in THREAD_VARS}}

HERE = Path(__file__).resolve().parent


def run_child(code: str, preexec_fn: Callable[[], None] | None = None, threads: int | None = None) -> dict:
    """Run ``code`` in a fresh Python (its peak RSS is its own) that can import ``_common``; the JSON
    object on its last stdout line. A failing child raises with the end of its stderr. ``threads``:
    the child's BLAS/OpenMP thread count (its environment), so that compared children use the same."""
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r})\n" + code],
                          capture_output=True, text=True, preexec_fn=preexec_fn,
                          env=None if threads is None else thread_env(threads))
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
