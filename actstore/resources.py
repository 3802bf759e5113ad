"""What a piece of work cost: wall time, bytes read and peak resident memory, measured around it.

Peak memory is the kernel's high-water mark (VmHWM), reset before the work where Linux allows
(``/proc/self/clear_refs``), so it is this work's peak and not the process's lifetime peak.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["peak_rss_mb", "reset_peak_rss", "measured", "fastest"]


def peak_rss_mb() -> float:
    """The process's peak resident memory in MB since start (or since the last reset)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def fastest(fn: Callable[[], Any], repeats: int = 2) -> float:
    """The fastest of ``repeats`` runs of ``fn()`` (seconds): the machine's cost, not its noise."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def reset_peak_rss() -> bool:
    """Reset the peak to the current RSS (Linux); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _bytes_read() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """``with measured() as cost:`` fills ``cost`` with seconds, read_bytes (every read call of the
    process, page cache included) and peak_rss_MB when the block ends. The reset is the process's:
    a caller reading VmHWM after the block sees the peak since the block began, not before it."""
    cost: dict[str, float] = {}
    reset_peak_rss()
    t0, r0 = time.perf_counter(), _bytes_read()
    try:
        yield cost
    finally:
        cost.update(seconds=time.perf_counter() - t0, read_bytes=float(_bytes_read() - r0),
                    peak_rss_MB=peak_rss_mb())
