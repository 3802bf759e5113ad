"""One writer per store: an advisory ``flock`` that the kernel drops when the writer dies.

The lock file is ``PATH.lock``, a sibling of the store and of its ``PATH.partial``: zarr never
touches it (``open_group(mode="w")`` deletes and recreates the folder it writes to, and with it
any lock inside). The holder removes the file when it is done; a process that locked a file which
was removed meanwhile notices (the inode changed) and tries again, so two writers never both hold
"the" lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from ..errors import NotOursError, OutputNotWritableError, StoreLockedError

__all__ = ["WriterLock", "lock_path"]

_MARK = "actstore writer lock:"


def lock_path(path: Path) -> Path:
    """The lock file of the store at ``path``."""
    return path.with_name(path.name + ".lock")


class WriterLock:
    """Exclusive lock on ``PATH.lock`` for the store at ``PATH``; a killed holder (even by SIGKILL) leaves it free."""

    def __init__(self, store: Path, what: str, fix: str = "choose a writable location") -> None:
        self.path = lock_path(Path(store))
        self.what, self.fix = what, fix
        self._fh: IO[str] | None = None

    def acquire(self) -> WriterLock:
        for _ in range(100):  # retried only when the file we locked was removed by its last holder
            fh = self._open()
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fh)
                fh.close()
                raise StoreLockedError(f"{self.what} is being written by {holder}; wait for it to finish "
                                       "(a second writer would corrupt it)") from None
            if _same_file(fh, self.path):
                fh.seek(0)
                fh.truncate()
                fh.write(f"{_MARK} pid {os.getpid()} on {socket.gethostname()}\n")
                fh.flush()
                self._fh = fh
                return self
            fh.close()
        raise StoreLockedError(f"{self.what}: could not take the lock {self.path}; try again")

    def _open(self) -> IO[str]:
        try:
            fh = open(self.path, "a+")  # noqa: SIM115 - held for the lock's lifetime
        except OSError as exc:
            raise OutputNotWritableError(f"cannot write {self.what}: {exc.strerror} (at its lock file {self.path}); "
                                         f"{self.fix}") from None
        fh.seek(0)
        text = fh.read(200)
        if text and not text.startswith(_MARK):
            fh.close()
            raise NotOursError(f"{self.path} exists and is not an actstore lock file; actstore would overwrite "
                               "it: move it away")
        return fh

    def release(self) -> None:
        if self._fh is not None:
            if _same_file(self._fh, self.path):
                self.path.unlink(missing_ok=True)  # while still held: see the module docstring
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()


def _same_file(fh: IO[str], path: Path) -> bool:
    try:
        a, b = os.fstat(fh.fileno()), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _holder(fh: IO[str]) -> str:
    """Who holds the lock, from the file (the holder writes it right after locking: wait a moment for it)."""
    for _ in range(50):
        fh.seek(0)
        text = fh.read(200).strip()
        if text.startswith(_MARK):
            return text[len(_MARK):].strip()
        time.sleep(0.01)
    return "another process"
