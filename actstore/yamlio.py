"""YAML read the safe way, refusing what ``yaml.safe_load`` lets through silently: a key given twice
(the last one would win) is an error naming the key and its line."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["load_yaml", "DuplicateKeyError"]

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster on large files


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives the same key twice."""


class _StrictLoader(_Base):  # type: ignore[misc,valid-type]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges a mapping in; the base constructor handles it
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key is refused by the base constructor
            if key in seen:
                mark = key_node.start_mark
                raise DuplicateKeyError(f"duplicate key '{key}' at line {mark.line + 1}, column {mark.column + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` semantics, but a duplicate key raises :class:`DuplicateKeyError`."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def one_line(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: the problem and where."""
    if isinstance(exc, DuplicateKeyError):
        return str(exc)
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{at.strip()}: {problem}" if at else problem
