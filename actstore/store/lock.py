"""One writer per store: an advisory ``flock`` that the kernel drops when the writer dies."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from ..errors import StoreLockedError

__all__ = ["WriterLock"]


class WriterLock:
    """Exclusive lock on ``<dir>/.lock``; a killed holder (even by SIGKILL) leaves it free."""

    def __init__(self, directory: Path, what: str) -> None:
        self.path = Path(directory) / ".lock"
        self.what = what
        self._fh: object | None = None

    def acquire(self) -> WriterLock:
        fh = open(self.path, "a+")  # noqa: SIM115 - held for the lock's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StoreLockedError(
                f"{self.what} is being written by {holder}; wait for it to finish "
                "(a second writer would corrupt it)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)  # type: ignore[arg-type]
            self._fh.close()  # type: ignore[attr-defined]
            self._fh = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()
