"""Consolidated metadata: every node's metadata copied into the root ``zarr.json``, written once when a
store is finished (schema 2), so xarray opens it in one read and without its "no consolidated
metadata" warning. A finished store never changes, so the copy stays true; ``verify`` checks that it
does (a store edited afterwards would otherwise be read with stale shapes by whoever trusts the copy).
"""

from __future__ import annotations

import warnings
from typing import Any

import zarr

__all__ = ["consolidate", "consolidated_problems"]


def consolidate(store: Any) -> None:
    """Write the consolidated metadata of the group at the root of ``store`` (a zarr store or path)."""
    with warnings.catch_warnings():  # zarr says consolidated metadata is not in the v3 spec yet: we know
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(store)


def consolidated_problems(store: Any) -> list[str]:
    """What is wrong with the consolidated metadata of the store at ``store``: absent, or differing from
    the nodes' own metadata (each node named)."""
    copy = zarr.open_group(store, mode="r").metadata.consolidated_metadata
    if copy is None:
        return ["zarr.json: no consolidated metadata (written when actstore finishes a store); xarray warns on "
                "every open: re-extract, or run zarr.consolidate_metadata on the store"]
    flat = copy.flattened_metadata
    actual = zarr.open_group(store, mode="r", use_consolidated=False)
    problems, seen = [], set()
    for path, node in actual.members(max_depth=None):
        seen.add(path)
        if path not in flat:
            problems.append(f"{path}: missing from the consolidated metadata")
        elif _plain(node.metadata) != _plain(flat[path]):
            problems.append(f"{path}: its consolidated metadata differs from its zarr.json (the store changed after "
                            "it was finished)")
    problems += [f"{path}: in the consolidated metadata, but not in the store" for path in sorted(set(flat) - seen)]
    return problems


def _plain(metadata: Any) -> dict[str, Any]:
    out = dict(metadata.to_dict())
    out.pop("consolidated_metadata", None)  # a group's own copy of its children: compared through them
    return out
