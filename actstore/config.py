"""Where actstore keeps its things: ``ACTSTORE_HOME`` and the user catalog."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["home", "default_catalog_path", "repo_catalog_path"]


def home() -> Path:
    """The actstore home (cached demo models, default stores, the user catalog).

    ``ACTSTORE_HOME`` overrides the default ``$XDG_CACHE_HOME/actstore`` (``~/.cache/actstore``).
    """
    env = os.environ.get("ACTSTORE_HOME")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "actstore"


def default_catalog_path() -> Path:
    """The catalog runs register into: ``ACTSTORE_CATALOG``, else ``<home>/catalog.yaml``."""
    env = os.environ.get("ACTSTORE_CATALOG")
    if env:
        return Path(env).expanduser()
    return home() / "catalog.yaml"


def repo_catalog_path() -> Path | None:
    """The project's own ``catalog.yaml`` (known datasets and models), when this is a checkout."""
    path = Path(__file__).resolve().parent.parent / "catalog.yaml"
    return path if path.is_file() else None
