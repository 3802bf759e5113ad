"""How a local catalog is kept on disk so that it stays fast at 50 000 entries and safe for many writers.

A catalog is one human-readable YAML file, ``catalog.yaml``, plus three helpers beside it (beside the
*target* when ``catalog.yaml`` is a symlink, so every link to a shared catalog shares them):

- ``catalog.yaml.journal``: the changes made since the YAML was last rewritten, one JSON object per
  line (``{"op": "add", "kind": ..., "name": ..., "entry": {...}}`` or ``{"op": "remove", ...}``),
  readable as they are. Adding an artifact appends one line: it never re-parses or rewrites the
  whole file. Loading folds the journal into the YAML's contents.
- ``catalog.yaml.lock``: writers hold an exclusive ``flock`` on it to append or rewrite, readers a
  shared one while they read the YAML and the journal, so no reader sees half a change.
- ``.catalog.yaml.cache.json`` (catalogs over 256 KB): the parsed and validated YAML, as JSON, keyed
  by the SHA-256 of the YAML's bytes. PyYAML parses a 16 MB catalog in ~15 s; JSON reads the same in
  ~0.2 s. The cache is used only when the hash matches, so a hand edit of the YAML is always seen (the first load after
  it parses the YAML and refreshes the cache). Values JSON cannot hold exactly (dates, non-string
  keys...) leave the catalog uncached, never altered.

The journal is folded into the YAML ("compacted") under the exclusive lock once it holds more than
an eighth of the YAML's size (at once for small catalogs, so they look as they always did); a crash
between rewriting the YAML and emptying the journal only replays changes that are already in the
YAML, which leaves the same contents. YAML keeps ``yaml.safe_load`` semantics (a safe loader, libyaml's
when present) and refuses duplicate keys, naming them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from .atomic import atomic_write_text, real_target
from .errors import CatalogError
from .yamlio import DuplicateKeyError, load_yaml, one_line

__all__ = ["CatalogFiles", "parse_yaml", "dump_yaml", "apply_record", "SMALL_CATALOG_BYTES"]

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SMALL_CATALOG_BYTES = 256 * 1024  # rewriting this much YAML takes well under 0.2 s
_CACHE_FORMAT = "actstore-catalog-cache"


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)`` with duplicate keys refused and errors located."""
    try:
        return load_yaml(text)
    except DuplicateKeyError as exc:
        raise CatalogError(f"{where}: {exc}; each name may appear once: remove or rename one of them") from None
    except yaml.YAMLError as exc:
        problem = one_line(exc)
        sep = " " if problem.startswith("at line") else ": "
        raise CatalogError(f"{where}: not valid YAML{sep}{problem}") from None


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def apply_record(data: dict[str, Any], record: dict[str, Any]) -> None:
    """Apply one journal change to the folded contents (idempotent: replaying it changes nothing)."""
    section = data.setdefault(record["kind"], {})
    if record["op"] == "add":
        section[record["name"]] = record["entry"]
    else:
        section.pop(record["name"], None)


def _json_exact(value: Any) -> bool:
    """True when JSON holds ``value`` exactly (str keys; str, int, float, bool, None, list, dict values)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                return False
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif not (v is None or isinstance(v, (str, bool, int, float))):
            return False
    return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise CatalogError(f"duplicate key {k!r}")
        out[k] = v
    return out


class CatalogFiles:
    """The YAML, journal, lock and cache of one local catalog (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.shown = path
        self.path = real_target(path)
        self.journal = self.path.with_name(self.path.name + ".journal")
        self.lock_file = self.path.with_name(self.path.name + ".lock")
        self.cache = self.path.with_name(f".{self.path.name}.cache.json")

    # -- locking -----------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, exclusive: bool) -> Iterator[None]:
        """Hold the catalog lock. Readers never create the lock file (reading a catalog, e.g. the
        checkout's own, must not write beside it): where there is none, or it cannot be opened (a
        read-only catalog), they read without it. A writer that cannot create it gets the OSError."""
        try:
            if exclusive:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
            else:
                fd = os.open(self.lock_file, os.O_RDONLY)
        except OSError as exc:
            if exclusive or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
                raise
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    # -- reading -----------------------------------------------------------------
    def read(self, validate: Callable[[Any, str], dict[str, Any]]) -> dict[str, Any]:
        """The folded, validated contents (an empty catalog when there is no file): under the shared lock."""
        with self.locked(exclusive=False):
            return self.read_unlocked(validate)

    def read_unlocked(self, validate: Callable[[Any, str], dict[str, Any]]) -> dict[str, Any]:
        journal = self.journal.read_bytes() if self.journal.is_file() else b""  # the journal first: see compact()
        raw = self.path.read_bytes() if self.path.is_file() else None
        data = validate(None, str(self.shown)) if raw is None else self._base(raw, validate)
        for record in self._records(journal):
            entry = {record["name"]: record["entry"]} if record["op"] == "add" else {}
            validate({"version": 1, record["kind"]: entry}, str(self.journal))
            apply_record(data, record)
        return data

    def _base(self, raw: bytes, validate: Callable[[Any, str], dict[str, Any]]) -> dict[str, Any]:
        sha = hashlib.sha256(raw).hexdigest()
        cached = self._cached(sha)
        if cached is not None:
            return validate(cached, str(self.shown))
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise CatalogError(f"{self.shown}: not a text file") from None
        data = validate(parse_yaml(text, str(self.shown)), str(self.shown))
        if len(raw) >= SMALL_CATALOG_BYTES:  # a small catalog parses fast enough without one
            self._write_cache(sha, data)
        return data

    def _cached(self, sha: str) -> dict[str, Any] | None:
        try:
            blob = json.loads(self.cache.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(blob, dict) or blob.get("format") != _CACHE_FORMAT or blob.get("sha256") != sha:
            return None
        return blob.get("data") if isinstance(blob.get("data"), dict) else None

    def _write_cache(self, sha: str, data: dict[str, Any]) -> None:
        if not _json_exact(data):
            return
        with contextlib.suppress(Exception):  # a cache is an optimisation: an unwritable folder goes without
            atomic_write_text(self.cache, json.dumps({"format": _CACHE_FORMAT, "sha256": sha, "data": data}),
                              what="catalog cache")

    def _records(self, journal: bytes) -> Iterator[dict[str, Any]]:
        lines = journal.split(b"\n")
        for number, line in enumerate(lines[:-1], start=1):  # the last piece has no newline: unfinished
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=_no_duplicates)
            except ValueError as exc:
                raise CatalogError(f"{self.journal}: line {number} is not a JSON change record ({exc}); "
                                   "fix or delete that line") from None
            if (not isinstance(record, dict) or record.get("op") not in ("add", "remove")
                    or not isinstance(record.get("kind"), str) or not isinstance(record.get("name"), str)
                    or (record["op"] == "add" and not isinstance(record.get("entry"), dict))):
                raise CatalogError(f"{self.journal}: line {number} is not a change record "
                                   '({"op": "add"|"remove", "kind": ..., "name": ..., "entry": {...}})')
            yield record

    # -- writing (the caller holds the exclusive lock) ---------------------------
    def append(self, record: dict[str, Any]) -> None:
        """One line, one write, fsync'ed; a new journal gets 0666 less the umask (0644 under the usual one)."""
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def should_compact(self) -> bool:
        journal = self.journal.stat().st_size if self.journal.exists() else 0
        base = self.path.stat().st_size if self.path.exists() else 0
        return journal > 0 and (base + journal <= SMALL_CATALOG_BYTES or 8 * journal >= base)

    def compact(self, data: dict[str, Any]) -> None:
        """Rewrite the YAML with ``data`` (the folded contents), refresh the cache, remove the journal.
        Readers read the journal before the YAML, so one that reads between the two steps replays
        changes the new YAML already holds: the same contents."""
        text = dump_yaml(data)
        atomic_write_text(self.path, text, what="catalog")
        if len(text) >= SMALL_CATALOG_BYTES:
            self._write_cache(hashlib.sha256(text.encode()).hexdigest(), data)
        self.journal.unlink(missing_ok=True)
