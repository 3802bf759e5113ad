"""A rich progress bar on stderr for long loops (a no-op when disabled, e.g. under ``--json``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress_bar", "status"]


def status(text: str, enabled: bool = True) -> None:
    """One line of status on stderr (what a long step is doing, what was reused); nothing when disabled."""
    if enabled:
        import sys

        print(text, file=sys.stderr, flush=True)


@contextmanager
def progress_bar(enabled: bool, total: int, what: str, unit: str) -> Iterator[Callable[..., None]]:
    """``with progress_bar(...) as advance:`` call ``advance()`` per item, ``advance(text=...)`` to relabel."""
    if not enabled:
        yield lambda **_: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(what, total=total)

        def advance(text: str | None = None, steps: int = 1) -> None:
            bar.update(task, advance=steps, **({"description": text} if text else {}))

        yield advance
