"""Where the Dask-backed stages run: ``threads``, ``processes``, ``synchronous``, or a ``distributed``
scheduler's address (``tcp://host:8786``).

A stage given a scheduler splits the store into tasks of whole chunks (a group of classes, a range
of rows); each task opens the store by its path or URL, so workers only need to reach the store
(a shared filesystem or an object store), never the client's memory. Without a scheduler a stage
runs its in-process stream, the fastest path on one machine. Results are the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import SchedulerError

__all__ = ["SchedulerError", "LOCAL_SCHEDULERS", "check_scheduler", "dask_compute", "connect"]

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
CONNECT_TIMEOUT_S = 10.0


def check_scheduler(scheduler: str | None) -> str | None:
    """``scheduler`` if it names a local scheduler or a ``tcp://``/``tls://`` address, else an error."""
    if scheduler is None or scheduler in LOCAL_SCHEDULERS:
        return scheduler
    if scheduler.startswith(("tcp://", "tls://", "inproc://")):
        return scheduler
    raise SchedulerError(f"unknown scheduler '{scheduler}'; use {', '.join(LOCAL_SCHEDULERS)} or the address "
                         "of a distributed scheduler (tcp://host:8786)")


@contextmanager
def connect(scheduler: str, timeout: float = CONNECT_TIMEOUT_S) -> Iterator[Any]:
    """A ``distributed.Client`` on ``scheduler``; a clear error when nothing answers within ``timeout``."""
    from distributed import Client

    try:
        client = Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(f"no Dask scheduler answers at {scheduler} within {timeout:g} s "
                             f"({type(exc).__name__}); is the cluster running and reachable?") from None
    try:
        yield client
    finally:
        client.close()


def dask_compute(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], scheduler: str,
                 combine: Callable[[Any, Any], Any] | None = None, retries: int = 2) -> list[Any]:
    """``[fn(*args) for args in calls]`` as Dask tasks on ``scheduler``, in order; with ``combine``,
    the results are reduced pairwise in a tree and ``[total]`` is returned. On a cluster a task
    whose worker dies is retried (``retries``) on another; a task's own error is raised as is."""
    import dask

    tasks = [dask.delayed(fn, pure=True)(*args) for args in calls]
    while combine is not None and len(tasks) > 1:
        pairs = [dask.delayed(combine, pure=True)(a, b) for a, b in zip(tasks[::2], tasks[1::2], strict=False)]
        tasks = pairs + (tasks[-1:] if len(tasks) % 2 else [])
    if scheduler in LOCAL_SCHEDULERS:
        return list(dask.compute(*tasks, scheduler=scheduler))
    with connect(scheduler) as client:
        futures = client.compute(tasks, retries=retries)
        try:
            return list(client.gather(futures))
        except Exception as exc:
            if type(exc).__name__ == "KilledWorker":
                raise SchedulerError(f"the workers running a task died {retries + 1} times ({exc}); "
                                     "check their memory limit") from None
            raise
