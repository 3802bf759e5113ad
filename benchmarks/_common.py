"""Helpers shared by the benchmarks."""

from __future__ import annotations

from actstore.resources import peak_rss_mb  # VmHWM: ru_maxrss survives execve, so children would report the parent's

__all__ = ["peak_rss_mb"]
