"""Names that become file names (catalog entries, stores, coresets, features) pass through here.

A name is one path component made of word characters and ``. _ - + = @ ,``, starting with a word
character: never ``..``, never a separator, never hidden (actstore's temporaries start with a dot),
never absolute. :func:`path_under` is the only way a name becomes a path, and it checks that the
resolved path stays inside the folder it belongs to.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UnsafeNameError

__all__ = ["check_name", "is_safe_name", "slug", "path_under", "MAX_NAME"]

MAX_NAME = 200
_SAFE = re.compile(r"^\w[\w.+=@,-]*$")
_UNSAFE_RUN = re.compile(r"[^\w.+=@,-]+")


def is_safe_name(name: str) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME and bool(_SAFE.match(name))


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is a safe single file name, else an :class:`UnsafeNameError` saying why."""
    if is_safe_name(name):
        return name
    if not isinstance(name, str) or not name:
        why = "it is empty"
    elif len(name) > MAX_NAME:
        why = f"it is longer than {MAX_NAME} characters"
    elif "/" in name or "\\" in name or name in (".", ".."):
        why = "it would be a path, not a name"
    elif name.startswith("."):
        why = "it would be a hidden file"
    else:
        why = "it has characters other than letters, digits and . _ - + = @ ,"
    raise UnsafeNameError(f"{what} {name!r} cannot be used: {why}; use e.g. {slug(str(name))!r}")


def slug(text: str, limit: int = 80) -> str:
    """A safe name made from any text (runs of other characters become '-')."""
    out = _UNSAFE_RUN.sub("-", text)[:limit].strip("-.+=@,")
    out = re.sub(r"^[^\w]+", "", out)
    return out or "unnamed"


def path_under(folder: str | os.PathLike[str], name: str, suffix: str = "", what: str = "name") -> Path:
    """``folder / (name + suffix)``, refused unless ``name`` is safe and the result resolves inside ``folder``."""
    check_name(name, what)
    folder = Path(folder).expanduser()
    path = folder / f"{name}{suffix}"
    check_name(path.name, what)
    root = folder.resolve()
    if not path.resolve().is_relative_to(root):  # e.g. a symlink named like the artifact, pointing away
        raise UnsafeNameError(f"{path} resolves to {path.resolve()}, outside {root}; remove the link or pick "
                              "another name")
    return path
