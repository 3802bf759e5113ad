"""Where the Dask-backed stages run: ``threads``, ``processes``, ``synchronous``, or a ``distributed``
scheduler's address (``tcp://host:8786``).

A stage given a scheduler splits the store into tasks of whole chunks (a group of classes, a range
of rows); each task opens the store by its path or URL, so workers only need to reach the store
(a shared filesystem or an object store), never the client's memory. Without a scheduler a stage
runs its in-process stream, the fastest path on one machine. Results are the same either way.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import SchedulerError

__all__ = ["SchedulerError", "LOCAL_SCHEDULERS", "check_scheduler", "dask_compute", "connect", "local_cores",
           "map_one_thread_each", "ahead"]

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


def local_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map_one_thread_each(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], workers: int) -> list[Any]:
    """``[fn(*args) for args in calls]`` on ``workers`` threads, in order, BLAS sharing the cores among them
    (one thread each when there are as many workers as cores): for independent compiled (GIL-free) work
    such as per-class fits. On an error or Ctrl-C the calls not started are cancelled; compiled code cannot
    be interrupted, so on an error the calls already running are waited for (their reads end cleanly and
    the error is the last word), and on Ctrl-C they finish in the background."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    if workers <= 1 or len(calls) <= 1:
        return [fn(*args) for args in calls]
    pool = ThreadPoolExecutor(workers)
    with threadpool_limits(max(1, local_cores() // workers), user_api="blas"):
        futures = [pool.submit(fn, *args) for args in calls]
        try:
            out = [f.result() for f in futures]
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    pool.shutdown()
    return out


@contextmanager
def connect(scheduler: str, timeout: float = CONNECT_TIMEOUT_S) -> Iterator[Any]:
    """A ``distributed.Client`` on ``scheduler``, or one clear error within ``timeout`` seconds:
    nothing listening, a listener that never answers, or one that speaks another protocol."""
    client = _client_within(scheduler, timeout)
    try:
        yield client
    finally:
        client.close()


def _client_within(scheduler: str, timeout: float) -> Any:
    """distributed's own ``timeout`` covers the TCP connect, not the handshake after it (a silent listener
    hung for minutes; garbage read as a frame length asked for exabytes). So the client is built on a
    thread that is abandoned when an overall deadline passes, and any failure becomes one error."""
    from distributed import Client

    built: list[Any] = []
    outcome: dict[str, Any] = {}

    class _Tracked(Client):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(self)  # kept so a half-built client can be shut up (see _abandon)
            super().__init__(*args, **kwargs)

    def build() -> None:
        try:
            outcome["client"] = _Tracked(scheduler, timeout=max(1.0, timeout - 1.0), set_as_default=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    thread = threading.Thread(target=build, name="actstore-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if "client" in outcome:
        return outcome["client"]
    exc = outcome.get("error")  # before _abandon, whose stopping the loop makes the hung thread fail too
    _abandon(built)
    if exc is None:
        why = f"something listens there but did not answer within {timeout:g} s"
    elif isinstance(exc, (OSError, TimeoutError)):
        why = f"nothing answered within {timeout:g} s ({type(exc).__name__})"
    else:
        why = f"whatever listens there does not speak the Dask protocol ({type(exc).__name__})"
    raise SchedulerError(f"no Dask scheduler answers at {scheduler}: {why}; is the cluster running, reachable, "
                         "and is this the scheduler's address (tcp://host:8786)?") from None


def _abandon(built: list[Any]) -> None:
    """Mark a half-built client closed so its ``__del__`` does not try (and time out, noisily) to close it."""
    for client in built:
        with contextlib.suppress(Exception):
            client.status = "closed"
        with contextlib.suppress(Exception):
            client._loop_runner.stop()


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


def ahead(items: Iterable[Any], depth: int = 1) -> Iterator[Any]:
    """The items of ``items``, produced on a background thread at most ``depth`` ahead of the consumer (the
    item being read counts), so reading the next block overlaps the work on this one with bounded memory.
    An error while producing is raised here, in order; when the consumer stops early (an error, a break)
    the producer is told to stop, is never left blocked, and is joined."""
    import queue

    slots = threading.Semaphore(depth)  # items read or being read and not yet taken
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            source = iter(items)
            while True:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                try:
                    item = next(source)
                except StopIteration:
                    q.put(done)
                    return
                q.put((item,))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            q.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="actstore-read-ahead")
    thread.start()
    try:
        while (got := q.get()) is not done:
            if isinstance(got, BaseException):
                raise got
            slots.release()
            yield got[0]
    finally:
        stop.set()
        slots.release()  # a producer waiting for a slot ends now, not at its next timeout
        thread.join()
