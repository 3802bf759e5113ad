"""catalog.yaml: the list of known datasets, models and the artifacts runs produced.

A catalog is a YAML mapping::

    version: 1
    datasets:  {NAME: {spec: "digits:train", description: ...}}
    models:    {NAME: {builder: resnet18, weights: IMAGENET1K_V1, num_classes: 1000}}
    stores:    {NAME: {path: stores/x.zarr, fingerprint: ..., key: ..., provenance: {...}}}
    coresets / features / results: same shape as stores

Artifact paths are relative to the catalog file. The file is read with ``yaml.safe_load`` semantics,
validated (unknown keys and duplicate keys are errors, not ignored). Names pass through
:func:`actstore.names.check_name`. A local catalog records changes in an append-only journal beside
it, folded into the YAML from time to time, with a parse cache (see :mod:`actstore.catalog_io`):
loading a 50 000-entry catalog takes a fraction of a second and adding an entry a few milliseconds,
with any number of concurrent writers. A remote catalog (fsspec URL) is read and rewritten whole,
without a lock (object stores have none): one writer at a time.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import os_error
from .catalog_io import CatalogFiles, apply_record, dump_yaml, parse_yaml
from .config import default_catalog_path, repo_catalog_path
from .errors import ActstoreError, CatalogError
from .location import Location, exists, is_url, join, location, parent, read_text, write_text
from .names import check_name, is_safe_name

__all__ = ["Catalog", "ARTIFACT_KINDS", "KINDS", "Resolved", "open_catalog", "lookup", "resolve", "searched",
           "get_entry"]

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
    """One catalog file. Mutations are written at once, atomically, under the catalog's lock."""

    path: Location  # a local Path or an fsspec URL string
    data: dict[str, Any] = field(default_factory=lambda: {"version": 1, **{k: {} for k in KINDS}})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Catalog:
        """Read and validate ``path`` (a path or fsspec URL); a missing file is an empty catalog."""
        path = location(path)
        if isinstance(path, Path):
            if path.is_dir():
                raise CatalogError(f"{path}: is a directory; give the path of a catalog .yaml file")
            try:
                return cls(path, CatalogFiles(path).read(_validate))
            except OSError as exc:
                raise CatalogError(f"{path}: cannot read the catalog ({exc.strerror})") from None
        if not exists(path):
            return cls(path)
        try:
            text = read_text(path)
        except UnicodeDecodeError:
            raise CatalogError(f"{path}: not a text file") from None
        return cls(path, _validate(parse_yaml(text, str(path)), str(path)))

    # -- reading -----------------------------------------------------------------
    def entries(self, kind: str) -> dict[str, dict[str, Any]]:
        _check_kind(kind)
        return self.data[kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        entries = self.entries(kind)
        if name not in entries:
            raise CatalogError(f"{self.path}: no {kind[:-1]} named '{name}' (known: {_shown(entries)})")
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
        """Stale entries: artifacts whose path is gone, stores whose recorded key no longer matches (their
        small root zarr.json is read; coresets and features are only checked to exist, to keep this fast
        on large catalogs), and names that cannot be file names."""
        from .ownership import artifact_key

        out = []
        for kind in ARTIFACT_KINDS:
            for name, entry in self.entries(kind).items():
                if not is_safe_name(name):
                    out.append(f"{kind}.{name}: not a safe name (it could become a path outside its folder)")
                path = self.resolve(entry)
                if not exists(path):
                    out.append(f"{kind}.{name}: path {path} does not exist")
                elif kind == "stores" and entry.get("key"):
                    key = artifact_key(kind, path)
                    if key is None:
                        out.append(f"{kind}.{name}: {path} is not an actstore {kind[:-1]} (or is unreadable)")
                    elif key != entry["key"]:
                        out.append(f"{kind}.{name}: {path} holds other content (key {key} != {entry['key']})")
        return out

    # -- writing -----------------------------------------------------------------
    def check_writable(self) -> None:
        """Fail before any work when this catalog cannot be written (local catalogs: take its lock once)."""
        if isinstance(self.path, Path):
            try:
                with CatalogFiles(self.path).locked(exclusive=True):
                    pass
            except OSError as exc:
                raise os_error(exc, self.path, "the catalog", "pass a writable --catalog") from None

    def add(self, kind: str, name: str, entry: dict[str, Any]) -> None:
        """Add or replace ``kind.name``; an artifact path under the catalog's folder is stored relative."""
        _check_kind(kind)
        check_name(name, f"catalog name ({kind})")
        entry = dict(entry)
        if "path" in entry and not is_url(str(entry["path"])):
            path = Path(entry["path"]).resolve()
            if isinstance(self.path, Path):
                with contextlib.suppress(ValueError):
                    path = path.relative_to(self.path.parent.resolve())
            entry["path"] = str(path)
        _validate_entry(kind, name, entry, str(self.path))
        saved = f"; {kind[:-1]} {name} itself is saved at {self.resolve(entry)}" if "path" in entry else ""
        self._change({"op": "add", "kind": kind, "name": name, "entry": entry}, saved)

    def remove(self, kind: str, name: str) -> dict[str, Any]:
        """Drop ``kind.name`` from the catalog (the artifact on disk is left alone)."""
        _check_kind(kind)
        entry: dict[str, Any] = {}

        def check(data: dict[str, Any]) -> None:
            self.data = data
            entry.update(self.get(kind, name))

        self._change({"op": "remove", "kind": kind, "name": name}, "", before=check)
        return entry

    def _change(self, record: dict[str, Any], saved: str, before: Any = None) -> None:
        """Apply one change: appended to the journal under the lock (local), or a whole rewrite (remote)."""
        try:
            if isinstance(self.path, Path):
                files = CatalogFiles(self.path)
                with files.locked(exclusive=True):
                    if before is not None:
                        before(files.read_unlocked(_validate))
                    files.append(record)
                    apply_record(self.data, record)
                    if files.should_compact():
                        self.data = files.read_unlocked(_validate)
                        files.compact(self.data)
                return
            self.data = Catalog.load(self.path).data
            if before is not None:
                before(self.data)
            apply_record(self.data, record)
            write_text(self.path, dump_yaml(self.data), what="catalog")
        except ActstoreError as exc:
            if saved and not isinstance(exc, CatalogError):
                raise type(exc)(f"{exc}{saved}") from None
            raise
        except OSError as exc:
            raise os_error(exc, self.path, "the catalog", f"pass a writable --catalog{saved}") from None

    def compact(self) -> None:
        """Fold the journal into the YAML now (normally done when the journal grows)."""
        if isinstance(self.path, Path):
            files = CatalogFiles(self.path)
            with files.locked(exclusive=True):
                self.data = files.read_unlocked(_validate)
                files.compact(self.data)


def _shown(entries: dict[str, Any]) -> str:
    known = sorted(entries)
    return ", ".join(known[:20]) + (f" (+{len(known) - 20} more)" if len(known) > 20 else "") or "none"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise CatalogError(f"unknown catalog kind '{kind}'; known: {', '.join(KINDS)}")


def open_catalog(path: str | os.PathLike[str] | Catalog | None = None) -> Catalog:
    """The catalog runs register into: ``path`` (a :class:`Catalog` is used as it is), else
    ``ACTSTORE_CATALOG``, else ``<home>/catalog.yaml``."""
    if isinstance(path, Catalog):
        return path
    return Catalog.load(path if path is not None else default_catalog_path())


def _sources(cat: Catalog) -> list[Catalog]:
    """Where dataset and model names are looked up: ``cat``, then the project's catalog.yaml (when another file)."""
    repo = repo_catalog_path()
    mine = cat.path
    if repo is None or (isinstance(mine, Path) and repo == mine.resolve()):
        return [cat]
    return [cat, Catalog.load(repo)]


def searched(catalog: str | os.PathLike[str] | Catalog | None = None, kind: str = "models") -> str:
    """The catalog files a ``kind`` name is looked up in, for error messages ("A or B")."""
    cat = open_catalog(catalog)
    return " or ".join(str(c.path) for c in (_sources(cat) if kind in ("datasets", "models") else [cat]))


@dataclass(frozen=True)
class Resolved:
    """What a name given by a user means (see :func:`resolve`)."""

    kind: str
    name: str
    entry: dict[str, Any] | None = None  # the catalog entry, when the name is one
    source: Location | None = None  # the catalog file that holds ``entry``
    location: Location | None = None  # artifacts: where the artifact is (a path or URL)


def resolve(kind: str, name: str, catalog: str | os.PathLike[str] | Catalog | None = None) -> Resolved:
    """The one way every verb turns a name it was given into what it names.

    Artifacts (stores, coresets, features, results): an fsspec URL or a path that exists (a store's
    ``.partial`` counts) is itself; else the entry of that name in ``catalog``; else a
    :class:`CatalogError` that says where it looked. Datasets and models: the entry of that name in
    ``catalog``, else in the project's catalog.yaml; else a ``Resolved`` without an entry (the name is
    a dataset spec or a built-in model, which the caller checks, saying :func:`searched` in its error).
    ``catalog``: a :class:`Catalog`, a path or URL, or None (``ACTSTORE_CATALOG``, else the home's).
    """
    _check_kind(kind)
    cat = open_catalog(catalog)
    if kind in ARTIFACT_KINDS:
        return _resolve_artifact(kind, name, cat)
    for source in _sources(cat):
        entry = source.entries(kind).get(name)
        if entry is not None:
            return Resolved(kind, name, entry, source.path)
    return Resolved(kind, name)


def _resolve_artifact(kind: str, name: str, cat: Catalog) -> Resolved:
    if is_url(name):
        return Resolved(kind, name, location=location(name))
    try:
        path = Path(name).expanduser()
    except RuntimeError:  # ~user of no such user
        path = Path(name)
    if path.exists() or (path.name and path.with_name(path.name + ".partial").exists()):
        return Resolved(kind, name, location=path)
    entry = cat.entries(kind).get(name)
    if entry is not None:
        return Resolved(kind, name, entry, cat.path, cat.resolve(entry))
    what = kind[:-1]
    if not is_safe_name(name):  # a path: no catalog name can be one
        raise CatalogError(f"no {what} at '{name}': no such file or folder")
    raise CatalogError(f"no {what} at '{name}' (no such file or folder) and no {what} named '{name}' in {cat.path} "
                       f"(known: {_shown(cat.entries(kind))})")


def lookup(kind: str, name: str, catalog: str | os.PathLike[str] | Catalog | None = None) -> dict[str, Any] | None:
    """The catalog entry named ``name`` (datasets, models: the user catalog first, then the project's
    catalog.yaml), or None; :func:`resolve` says what any name means."""
    if kind in ARTIFACT_KINDS:
        return open_catalog(catalog).entries(kind).get(name)
    return resolve(kind, name, catalog).entry


def get_entry(kind: str, name: str, catalog: str | os.PathLike[str] | Catalog | None = None) -> dict[str, Any]:
    """The entry named ``name`` (datasets, models: also from the project's catalog.yaml); an error that says
    where it looked when there is none."""
    cat = open_catalog(catalog)
    if kind in ARTIFACT_KINDS or kind not in KINDS:
        return cat.get(kind, name)
    entry = resolve(kind, name, cat).entry
    if entry is None:
        raise CatalogError(f"no {kind[:-1]} named '{name}' in {searched(cat, kind)}")
    return entry
