"""What actstore may delete: only what it provably made.

A store is ours when its root ``zarr.json`` holds actstore's provenance (a ``key`` and a
``schema_version``); a features folder when its root ``zarr.json`` says ``actstore-features``; a
coreset when its JSON says ``actstore-coreset``; a store's ``PATH.partial`` when it is empty or holds
an actstore ``zarr.json``. Everything else is refused with a message naming what is there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .errors import NotOursError
from .location import Location, exists, fs_for, is_url, join

__all__ = ["root_attrs", "store_key", "artifact_key", "describe", "require_store", "remove_store",
           "check_partial", "clear_partial", "remove_artifact", "FEATURES_FORMAT", "CORESET_FORMAT"]

FEATURES_FORMAT = "actstore-features"
CORESET_FORMAT = "actstore-coreset"
_OWN_PARTIAL_FILES = {".lock", ".write-probe"}  # what an empty store .partial may hold (older versions: .lock)


def _read_json(loc: Location) -> Any:
    try:
        if isinstance(loc, Path):
            if not loc.is_file():
                return None
            text = loc.read_bytes()
        else:
            fs, path = fs_for(loc)
            if not fs.exists(path):
                return None
            text = fs.cat_file(path)
        return json.loads(text)
    except (OSError, ValueError):
        return None


def root_attrs(loc: Location) -> dict[str, Any] | None:
    """The ``actstore`` attributes in ``loc/zarr.json``, or None when there are none."""
    meta = _read_json(join(loc, "zarr.json"))
    if not isinstance(meta, dict):
        return None
    attrs = (meta.get("attributes") or {}).get("actstore") if isinstance(meta.get("attributes"), dict) else None
    return attrs if isinstance(attrs, dict) else None


def store_key(loc: Location) -> str | None:
    """The provenance key of the actstore store at ``loc`` (finished or not), or None if it is not one."""
    attrs = root_attrs(loc)
    if attrs is None or "schema_version" not in attrs or "format" in attrs:
        return None
    key = attrs.get("key")
    return key if isinstance(key, str) else None


def artifact_key(kind: str, loc: Location) -> str | None:
    """The recorded key of the artifact of ``kind`` (stores, coresets, features) at ``loc``, else None."""
    if kind == "stores":
        return store_key(loc)
    if kind == "features":
        attrs = root_attrs(loc)
        return attrs.get("key") if attrs and attrs.get("format") == FEATURES_FORMAT else None
    if kind == "coresets":
        data = _read_json(loc) if not (isinstance(loc, Path) and loc.is_dir()) else None
        return data.get("key") if isinstance(data, dict) and data.get("format") == CORESET_FORMAT else None
    return None


def describe(loc: Location, limit: int = 4) -> str:
    """A short phrase saying what is at ``loc``: 'a folder holding a.txt, b/ (+3 more)', 'a file'..."""
    if isinstance(loc, Path):
        if loc.is_symlink():
            return "a symbolic link"
        if loc.is_dir():
            try:
                names = sorted(p.name + ("/" if p.is_dir() else "") for p in loc.iterdir())
            except OSError:
                return "an unreadable folder"
            if not names:
                return "an empty folder"
            more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
            return "a folder holding " + ", ".join(names[:limit]) + more
        return "a file" if loc.exists() else "nothing"
    return "something" if exists(loc) else "nothing"


def require_store(loc: Location, what: str, key: str | None = None) -> str:
    """``loc``'s key if it holds an actstore store (with ``key``, when given); else :class:`NotOursError`."""
    found = store_key(loc)
    if found is None:
        raise NotOursError(f"{loc} holds {describe(loc)}, not an actstore store (no actstore provenance in its "
                           f"zarr.json); actstore {what} only its own stores: move it away or choose another path")
    if key is not None and found != key:
        raise NotOursError(f"{loc} holds the store with key {found}, not {key}; actstore {what} only the "
                           "artifact its entry names")
    return found


def remove_store(loc: Location, key: str | None = None) -> None:
    """Delete the actstore store at ``loc`` (refused unless it is one, with ``key`` when given)."""
    require_store(loc, "deletes", key)
    _remove(loc)


def check_partial(partial: Path) -> None:
    """Refuse a ``PATH.partial`` that holds anything but an actstore extraction (or nothing)."""
    if not partial.exists() or "schema_version" in (root_attrs(partial) or {}):
        return
    if partial.is_dir() and not partial.is_symlink():
        names = {p.name for p in partial.iterdir()}
        if names <= _OWN_PARTIAL_FILES:
            return
    raise NotOursError(f"{partial} holds {describe(partial)}, which is not an actstore extraction in progress; "
                       "actstore writes a store there first: move it away or choose another --out")


def clear_partial(partial: Path) -> None:
    """Empty an actstore ``PATH.partial`` (refused unless :func:`check_partial` proves it ours)."""
    check_partial(partial)
    for child in partial.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def remove_artifact(kind: str, loc: Location, key: str, check_only: bool = False) -> None:
    """Delete the ``kind`` artifact at ``loc`` only if it records ``key``; anything else is refused
    (``check_only``: refuse or return, deleting nothing)."""
    if kind not in ("stores", "coresets", "features"):
        raise NotOursError(f"actstore deletes only stores, coresets and features it can identify by their key, "
                           f"not {kind}; remove {loc} yourself if you mean to")
    if not exists(loc):
        return
    found = artifact_key(kind, loc)
    if found != key:
        have = f"the {kind[:-1]} with key {found}" if found else describe(loc)
        raise NotOursError(f"{loc} holds {have}, not the {kind[:-1]} with key {key} that the entry names; "
                           "nothing was deleted and the entry is kept (remove it yourself if you mean to)")
    if not check_only:
        _remove(loc)


def _remove(loc: Location) -> None:
    if isinstance(loc, Path):
        if loc.is_dir() and not loc.is_symlink():
            shutil.rmtree(loc)
        else:
            loc.unlink(missing_ok=True)
        return
    if not is_url(loc):
        raise NotOursError(f"{loc}: not a path or URL")
    fs, path = fs_for(loc)
    if fs.exists(path):
        if fs.exists(f"{path}/zarr.json"):
            fs.rm(f"{path}/zarr.json")  # readers stop seeing it first
        fs.rm(path, recursive=True)
