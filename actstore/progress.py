"""Progress on stderr for long work: a rich bar with an ETA on a terminal, periodic plain lines when stderr is
a file or a pipe (a log, CI), nothing when disabled (``--json``). Status lines go through :func:`status`."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["progress_bar", "status", "Advance", "LINE_INTERVAL_S"]

LINE_INTERVAL_S = float(os.environ.get("ACTSTORE_PROGRESS_INTERVAL", "15"))  # plain lines: at most one per interval


def status(text: str, enabled: bool = True) -> None:
    """One line of status on stderr (what a long step is doing, what was reused); nothing when disabled."""
    if enabled:
        print(text, file=sys.stderr, flush=True)


class Advance:
    """``advance()`` per item done, ``advance(steps=n, text=...)`` to move n and relabel, ``advance.grow(n)``
    when more work turns up. Disabled, it does nothing."""

    def __init__(self, total: float, what: str, unit: str, bar: Any = None, task: Any = None,
                 plain: bool = False) -> None:
        self.total, self.done, self.what, self.unit = float(total), 0.0, what, unit
        self._bar, self._task, self._plain = bar, task, plain
        self._start = self._last = time.monotonic()

    def __call__(self, text: str | None = None, steps: float = 1) -> None:
        self.done += steps
        self.what = text or self.what
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, **({"description": text} if text else {}))
        elif self._plain:
            self._line()

    def grow(self, steps: float) -> None:
        self.total += steps
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)

    def _line(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < LINE_INTERVAL_S:
            return
        self._last = now
        spent = now - self._start
        share = self.done / self.total if self.total else 1.0
        eta = f", ETA {_clock(spent / share - spent)}" if 0 < share < 1 else ""
        status(f"{self.what}: {self.done:g}/{self.total:g} {self.unit} ({share:.0%}), {_clock(spent)} elapsed{eta}")


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@contextmanager
def progress_bar(enabled: bool, total: float, what: str, unit: str) -> Iterator[Advance]:
    """``with progress_bar(...) as advance:`` a bar on a terminal, plain lines otherwise, nothing if disabled."""
    if not enabled:
        yield Advance(total, what, unit)
        return
    if not sys.stderr.isatty():
        advance = Advance(total, what, unit, plain=True)
        status(f"{what}: {total:g} {unit} to do")
        yield advance
        advance._line(final=True)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        yield Advance(total, what, unit, bar, bar.add_task(what, total=total))
