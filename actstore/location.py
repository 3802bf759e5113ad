"""Where a store or catalog lives: a local path, or an fsspec URL (``s3://``, ``gs://``, ``memory://``).

``file://`` URLs are local paths. Remote locations are reached through fsspec; credentials and
options come from fsspec's own configuration (environment variables, ``~/.config/fsspec``), as for
any fsspec user. Object stores have no rename and no locks, so a store is published by uploading
its arrays first and its root metadata last: until that last write, readers see no store.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from .errors import StoreCorruptError, StoreError

__all__ = ["Location", "is_url", "location", "exists", "fs_for", "zarr_store", "upload", "join", "parent", "read_text",
           "write_text", "is_ephemeral", "EPHEMERAL_PROTOCOLS"]

EPHEMERAL_PROTOCOLS = ("memory",)  # live in this process only: gone when the command exits

Location = Path | str  # a Path, or a URL string (never a Path: Path would fold its "//")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(loc: Any) -> bool:
    return isinstance(loc, str) and bool(_URL.match(loc))


def location(loc: str | os.PathLike[str]) -> Location:
    """``loc`` as a Path (local, ``file://`` included) or a normalised URL string."""
    text = os.fspath(loc)
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    if is_url(text):
        return text.rstrip("/")
    return Path(text).expanduser()


def fs_for(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise StoreError(f"{url}: no filesystem for this URL ({exc}); install the fsspec backend "
                         "(s3fs for s3://, gcsfs for gs://, adlfs for az://)") from None


def join(loc: Location, *parts: str) -> Location:
    return "/".join([loc, *parts]) if isinstance(loc, str) else loc.joinpath(*parts)


def parent(loc: Location) -> Location:
    return loc.rsplit("/", 1)[0] if isinstance(loc, str) else loc.parent


def exists(loc: Location) -> bool:
    if isinstance(loc, Path):
        return loc.exists()
    fs, path = fs_for(loc)
    return bool(fs.exists(path))


def read_text(loc: Location) -> str:
    if isinstance(loc, Path):
        return loc.read_text()
    fs, path = fs_for(loc)
    return fs.cat_file(path).decode()


def is_ephemeral(loc: Any) -> bool:
    """True for a URL whose data lives only in this process (``memory://``)."""
    return is_url(loc) and str(loc).split("://", 1)[0].lower() in EPHEMERAL_PROTOCOLS


def write_text(loc: Location, text: str, what: str = "file") -> None:
    """Write ``text`` in one put (remote); local files through :func:`actstore.atomic.atomic_write_text`."""
    if isinstance(loc, Path):
        from .atomic import atomic_write_text

        atomic_write_text(loc, text, what=what)
        return
    fs, path = fs_for(loc)
    fs.pipe_file(path, text.encode())


def zarr_store(loc: Location, read_only: bool = True) -> Any:
    """A zarr store on ``loc`` whose missing data chunks are errors (every chunk of a finished
    actstore store exists, empty ones included), not silent fill values. The ledger is exempt."""
    from zarr.storage import FsspecStore, LocalStore

    if isinstance(loc, Path):
        base = LocalStore(loc, read_only=read_only)
    else:
        fs_for(loc)  # a clear error for an unknown protocol
        base = FsspecStore.from_url(loc, read_only=read_only)
    return _strict(base, str(loc))


def _strict(base: Any, where: str) -> Any:
    store = _strict_class()(base)
    store.where = where
    return store


@functools.cache
def _strict_class() -> type:
    """zarr's WrapperStore, raising on a missing data chunk (built on first use: zarr loads late)."""
    from zarr.storage import WrapperStore

    class StrictChunks(WrapperStore):  # type: ignore[type-arg]
        where = ""

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            try:
                value = await self._store.get(key, prototype, byte_range)
            except FileNotFoundError:
                value = None
            if value is None and "/c/" in f"/{key}" and not key.startswith("progress/"):  # ledger: absent = not done
                raise StoreCorruptError(f"{self.where}: chunk {key} is missing; the store was changed or removed "
                                        "while in use, or is damaged (actstore verify tells which chunks)")
            return value

    return StrictChunks


def upload(local: Path, url: str) -> None:
    """Copy the store folder ``local`` to ``url``: every file, then the root ``zarr.json`` last,
    so a reader never opens a half-uploaded store."""
    from .ownership import remove_store

    fs, root = fs_for(url)
    if fs.exists(root):  # an old store (--overwrite), and only an actstore store: readers stop seeing it first
        remove_store(url)
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != ".lock")
    last = local / "zarr.json"
    for p in [*(p for p in files if p != last), last]:
        fs.put_file(str(p), f"{root}/{p.relative_to(local).as_posix()}")
