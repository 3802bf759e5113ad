"""catalog.yaml: the list of known datasets, models and the artifacts runs produced.

A catalog is a YAML mapping::

    version: 1
    datasets:  {NAME: {spec: "digits:train", description: ...}}
    models:    {NAME: {builder: resnet18, weights: IMAGENET1K_V1, num_classes: 1000}}
    stores:    {NAME: {path: stores/x.zarr, fingerprint: ..., key: ..., provenance: {...}}}
    coresets / features / results: same shape as stores

Artifact paths are relative to the catalog file. The file is read with ``yaml.safe_load``,
validated (unknown keys are errors, not ignored), and rewritten atomically under a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import default_catalog_path, repo_catalog_path
from .errors import CatalogError
from .location import Location, exists, is_url, join, location, parent, read_text, write_text

__all__ = ["Catalog", "ARTIFACT_KINDS", "KINDS", "open_catalog", "lookup"]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster on large catalogs
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

ARTIFACT_KINDS = ("stores", "coresets", "features", "results")
KINDS = ("datasets", "models", *ARTIFACT_KINDS)
_ARTIFACT_KEYS = {
    "path": str, "fingerprint": str, "key": str, "provenance": dict,
    "description": str, "created": str,
}
_FIELDS: dict[str, dict[str, type]] = {
    "datasets": {"spec": str, "description": str, "fingerprint": str},
    "models": {"builder": str, "weights": str, "num_classes": int, "description": str},
    **{kind: _ARTIFACT_KEYS for kind in ARTIFACT_KINDS},
}
_REQUIRED = {
    "datasets": ("spec",),
    "models": ("builder",),
    **{kind: ("path", "fingerprint") for kind in ARTIFACT_KINDS},
}


def _validate(data: Any, where: str) -> dict[str, Any]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: the catalog must be a YAML mapping, got {type(data).__name__}")
    unknown = set(data) - {"version", *KINDS}
    if unknown:
        raise CatalogError(
            f"{where}: unknown top-level key(s) {sorted(unknown)}; allowed: version, {', '.join(KINDS)}"
        )
    version = data.get("version", 1)
    if version != 1:
        raise CatalogError(f"{where}: unsupported catalog version {version!r}; this actstore reads version 1")
    out: dict[str, Any] = {"version": 1}
    for kind in KINDS:
        section = data.get(kind) or {}
        if not isinstance(section, dict):
            raise CatalogError(f"{where}: '{kind}' must be a mapping of name -> entry")
        for name, entry in section.items():
            _validate_entry(kind, str(name), entry, where)
        out[kind] = {str(k): v for k, v in section.items()}
    return out


def _validate_entry(kind: str, name: str, entry: Any, where: str) -> None:
    loc = f"{where}: {kind}.{name}"
    if not isinstance(entry, dict):
        raise CatalogError(f"{loc} must be a mapping, got {type(entry).__name__}")
    fields = _FIELDS[kind]
    unknown = set(entry) - set(fields)
    if unknown:
        raise CatalogError(f"{loc}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(fields)}")
    for key in _REQUIRED[kind]:
        if key not in entry:
            raise CatalogError(f"{loc}: missing required key '{key}'")
    for key, value in entry.items():
        expected = fields[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise CatalogError(
                f"{loc}.{key} must be {expected.__name__}, got {type(value).__name__} ({value!r})"
            )


@dataclass
class Catalog:
    """One catalog file. Mutations are written back at once, atomically."""

    path: Location  # a local Path or an fsspec URL string
    data: dict[str, Any] = field(default_factory=lambda: {"version": 1, **{k: {} for k in KINDS}})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Catalog:
        """Read and validate ``path`` (a path or fsspec URL); a missing file is an empty catalog."""
        path = location(path)
        if not exists(path):
            return cls(path)
        if isinstance(path, Path) and path.is_dir():
            raise CatalogError(f"{path}: is a directory; give the path of a catalog .yaml file")
        try:
            raw = yaml.load(read_text(path), Loader=_Loader)  # a safe loader (libyaml's when present)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise CatalogError(f"{path}: not valid YAML{at}: {problem}") from None
        except UnicodeDecodeError:
            raise CatalogError(f"{path}: not a text file") from None
        return cls(path, _validate(raw, str(path)))

    # -- reading -----------------------------------------------------------------
    def entries(self, kind: str) -> dict[str, dict[str, Any]]:
        _check_kind(kind)
        return self.data[kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        entries = self.entries(kind)
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise CatalogError(f"{self.path}: no {kind[:-1]} named '{name}' (known: {known})")
        return entries[name]

    def resolve(self, entry: dict[str, Any]) -> Location:
        """The artifact's location (a path or URL), relative paths taken from the catalog's folder."""
        if is_url(entry["path"]):
            return location(entry["path"])
        path = Path(entry["path"]).expanduser()
        return path if path.is_absolute() else join(parent(self.path), path.as_posix())

    def find(self, kind: str, **match: Any) -> str | None:
        """The name of the first entry whose fields equal ``match``, or None."""
        for name, entry in self.entries(kind).items():
            if all(entry.get(k) == v for k, v in match.items()):
                return name
        return None

    def problems(self) -> list[str]:
        """Stale entries: artifacts whose path is gone or whose recorded key no longer matches."""
        from .store.reader import read_provenance  # local: keeps `import actstore.catalog` light

        out = []
        for kind in ARTIFACT_KINDS:
            for name, entry in self.entries(kind).items():
                path = self.resolve(entry)
                if not exists(path):
                    out.append(f"{kind}.{name}: path {path} does not exist")
                elif kind == "stores" and entry.get("key"):
                    try:
                        key = read_provenance(path).get("key")
                    except Exception as exc:  # noqa: BLE001 - any unreadable store is stale
                        out.append(f"{kind}.{name}: {path} is unreadable ({exc})")
                        continue
                    if key != entry["key"]:
                        out.append(f"{kind}.{name}: {path} holds other content (key {key} != {entry['key']})")
        return out

    # -- writing -----------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Re-read (another process may have written meanwhile), change, write back; under a file
        lock where the catalog is local (object stores have no locks: one writer per remote catalog)."""
        with self._file_lock():
            self.data = Catalog.load(self.path).data
            yield
            self._save()

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        if not isinstance(self.path, Path):
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self) -> None:
        write_text(self.path, yaml.dump(self.data, Dumper=_Dumper, sort_keys=False, default_flow_style=False))

    def add(self, kind: str, name: str, entry: dict[str, Any]) -> None:
        """Add or replace ``kind.name``; an artifact path under the catalog's folder is stored relative."""
        _check_kind(kind)
        entry = dict(entry)
        if "path" in entry and not is_url(str(entry["path"])):
            path = Path(entry["path"]).resolve()
            if isinstance(self.path, Path):
                with contextlib.suppress(ValueError):
                    path = path.relative_to(self.path.parent.resolve())
            entry["path"] = str(path)
        _validate_entry(kind, name, entry, str(self.path))
        with self._locked():
            self.data[kind][name] = entry

    def remove(self, kind: str, name: str) -> dict[str, Any]:
        """Drop ``kind.name`` from the catalog (the artifact on disk is left alone)."""
        with self._locked():
            entry = self.get(kind, name)
            del self.data[kind][name]
        return entry


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise CatalogError(f"unknown catalog kind '{kind}'; known: {', '.join(KINDS)}")


def open_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """The catalog runs register into: ``path``, else ``ACTSTORE_CATALOG``, else ``<home>/catalog.yaml``."""
    return Catalog.load(path if path is not None else default_catalog_path())


def lookup(kind: str, name: str, catalog: Catalog | None = None) -> dict[str, Any] | None:
    """Find a dataset or model entry by name: the user catalog first, then the project's catalog.yaml."""
    sources = [catalog if catalog is not None else open_catalog()]
    repo = repo_catalog_path()
    mine = sources[0].path
    if repo is not None and not (isinstance(mine, Path) and repo == mine.resolve()):
        sources.append(Catalog.load(repo))
    for source in sources:
        if name in source.entries(kind):
            return source.entries(kind)[name]
    return None
