"""Write a file or a folder so that readers see the old version or the new one, never half of one.

Every "write a temporary, then rename it into place" in actstore goes through here, so each write:

- goes through a symlink to its target (the link stays a link; a shared catalog behind it is updated);
- creates files with mode ``0666 & ~umask`` (0644 under the usual umask), folders ``0777 & ~umask``;
  a replaced file keeps its mode;
- fsyncs the data and the folder holding the rename;
- leaves nothing behind on failure, and turns a full disk or a read-only location into a typed
  error naming the path (:class:`DiskFullError`, :class:`OutputNotWritableError`).

Temporaries are named ``.NAME.<random>.actstore-tmp`` beside the target and are held under an
``flock`` while being written; the kernel drops it when the writer dies (even by SIGKILL). A later
write to the same target removes the temporaries whose lock is free: only those, because only
those are provably ours and abandoned.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import DiskFullError, OutputNotWritableError

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_dir", "real_target", "new_file_mode",
           "sweep_stale", "os_error", "TMP_SUFFIX"]

TMP_SUFFIX = ".actstore-tmp"
_NEW_SUFFIX = ".actstore-new"  # a temporary before its lock is taken: never swept
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def os_error(exc: OSError, path: os.PathLike[str] | str, what: str, hint: str = "") -> OutputNotWritableError:
    """A typed, one-line error for an OSError met while writing ``what`` at ``path`` (a typed error as is)."""
    if isinstance(exc, OutputNotWritableError):
        return exc
    reason = exc.strerror or type(exc).__name__
    if exc.errno in _FULL:
        return DiskFullError(f"cannot write {what} at {path}: {reason} (disk or quota full); nothing half-written "
                             f"was left{'; ' + hint if hint else ''}")
    return OutputNotWritableError(f"cannot write {what} at {path}: {reason}; choose a writable location"
                                  f"{'; ' + hint if hint else ''}")


def current_umask() -> int:
    """The process umask, read without changing it (``/proc``), else by the set-and-restore dance."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(existing: Path | None = None, *, folder: bool = False) -> int:
    """The mode a written file gets: an existing file's own, else 0666 (folders 0777) less the umask."""
    if existing is not None:
        with contextlib.suppress(OSError):
            return existing.stat().st_mode & 0o7777
    return (0o777 if folder else 0o666) & ~current_umask()


def real_target(path: os.PathLike[str] | str) -> Path:
    """Where a write to ``path`` must land: the end of its symlink chain (``path`` itself otherwise)."""
    path = Path(path).expanduser()
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _tmp_name(target: Path) -> str:
    return f".{target.name}.{uuid.uuid4().hex[:12]}"


def _stale_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(target.name)}\.[0-9a-f]{{12}}{re.escape(TMP_SUFFIX)}$")


def sweep_stale(target: os.PathLike[str] | str) -> list[Path]:
    """Remove abandoned temporaries of ``target`` (their writer died: their lock is free); returns them."""
    target = Path(target)
    pattern, removed = _stale_pattern(target), []
    try:
        candidates = [p for p in target.parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return removed
    for tmp in candidates:
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # its writer is alive
        try:
            shutil.rmtree(tmp) if tmp.is_dir() and not tmp.is_symlink() else tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _locked_temp(target: Path, folder: bool) -> tuple[Path, int]:
    """A new temporary beside ``target`` (a file or a folder), already under our flock."""
    new = target.parent / (_tmp_name(target) + _NEW_SUFFIX)
    if folder:
        new.mkdir(mode=0o700)
        fd = os.open(new, os.O_RDONLY)
    else:
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    tmp = new.with_name(new.name[:-len(_NEW_SUFFIX)] + TMP_SUFFIX)
    os.replace(new, tmp)  # sweepable only now that it is locked
    return tmp, fd


def atomic_write_bytes(path: os.PathLike[str] | str, data: bytes, *, what: str = "file", hint: str = "",
                       may_replace: Callable[[Path], None] | None = None) -> Path:
    """Write ``data`` to ``path`` (through symlinks) atomically; returns the file written.
    ``may_replace(path)``, when given, is called on an existing file first and raises to refuse."""
    target = real_target(path)
    if target.exists() and not target.is_file():
        raise OutputNotWritableError(f"cannot write {what} at {target}: it is a folder or a special file, which "
                                     "is never replaced; choose another path")
    if may_replace is not None and target.exists():
        may_replace(target)
    tmp: Path | None = None
    fd = -1
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(target)
        tmp, fd = _locked_temp(target, folder=False)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, new_file_mode(target if target.exists() else None))
        os.fsync(fd)
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except OSError as exc:
        raise os_error(exc, target, what, hint) from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return target


def atomic_write_text(path: os.PathLike[str] | str, text: str, *, what: str = "file", hint: str = "",
                      may_replace: Callable[[Path], None] | None = None, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write_bytes` for text."""
    return atomic_write_bytes(path, text.encode(encoding), what=what, hint=hint, may_replace=may_replace)


@contextlib.contextmanager
def atomic_dir(path: os.PathLike[str] | str, *, what: str = "folder", hint: str = "",
               may_replace: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it is renamed to ``path``.

    Write into the folder without recreating it (zarr: ``mode="w-"``, never ``"w"``, which deletes
    and recreates the folder and with it our lock). An existing ``path`` is replaced only after
    ``may_replace(path)`` returns (it raises to refuse: the caller proves the old one is its own).
    On any failure the temporary is removed and ``path`` is untouched.
    """
    target = real_target(path)
    tmp: Path | None = None
    fd = -1
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            sweep_stale(target)
            tmp, fd = _locked_temp(target, folder=True)
        except OSError as exc:
            raise os_error(exc, target, what, hint) from None
        try:
            yield tmp
            os.chmod(tmp, new_file_mode(folder=True))
            _replace_dir(tmp, target, may_replace)
            tmp = None
            _fsync_dir(target.parent)
        except OSError as exc:
            raise os_error(exc, target, what, hint) from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(tmp: Path, target: Path, may_replace: Callable[[Path], None] | None) -> None:
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        return
    if may_replace is None:
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    may_replace(target)
    old = target.parent / (_tmp_name(target) + ".actstore-old")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
