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

__all__ = ["peak_rss_mb", "run_child"]

HERE = Path(__file__).resolve().parent


def run_child(code: str, preexec_fn: Callable[[], None] | None = None) -> dict:
    """Run ``code`` in a fresh Python (its peak RSS is its own) that can import ``_common``; the JSON
    object on its last stdout line. A failing child raises with the end of its stderr."""
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r})\n" + code],
                          capture_output=True, text=True, preexec_fn=preexec_fn)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
