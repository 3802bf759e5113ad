"""Per-block digests of the stored chunks, kept in the ledger (``progress/digests``).

Each chunk's crc32c checksum only proves the chunk is intact, not that it is in the right place: two
valid chunks swapped between positions decode fine and read back as the wrong rows. So when a block
is committed, the crc32c of every array's *encoded* chunk for that block is recorded at the block's
position; ``verify`` compares every chunk with it, and readers compare each chunk they fetch (a
hardware crc32c over the compressed bytes: a small fraction of decoding them). Stores written
before digests existed have no ``progress/digests`` and are read unchecked.

``progress/nonfinite`` counts the NaN/Inf values of each float array's block, so the provenance can
record them and ``verify`` can tell recorded ones (``--allow-nonfinite``) from damage.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import google_crc32c
import numpy as np

from ..errors import StoreCorruptError

__all__ = ["DIGESTS", "NONFINITE", "digest", "intact", "chunk_problem", "block_arrays", "chunk_block",
           "recording_store", "checking_store", "load_digests"]

DIGESTS = "progress/digests"
NONFINITE = "progress/nonfinite"
_CHUNK = re.compile(r"^(?P<array>.+)/c/(?P<coords>\d+(?:/\d+)*)$")


_RESIDUE = google_crc32c.value(b"x" + google_crc32c.value(b"x").to_bytes(4, "little"))


def intact(data: bytes) -> bool:
    """True when a chunk's trailing crc32c matches its payload (see :func:`digest`)."""
    return len(data) >= 4 and google_crc32c.value(data) == _RESIDUE


def digest(data: bytes) -> int:
    """The crc32c of a chunk's compressed payload, as stored.

    Every digested array ends its codec chain with zarr's crc32c codec, which appends the payload's
    crc32c: when the whole chunk checks out (its crc32c is the CRC residue), that trailer *is* the
    digest, found in one pass without copying. A chunk that does not check out gets the crc32c of all
    its bytes, which cannot equal a recorded payload digest except by a 1-in-2^32 accident.
    """
    whole = google_crc32c.value(data)
    if len(data) >= 4 and whole == _RESIDUE:
        return int.from_bytes(data[-4:], "little")
    return int(whole)


def block_arrays(layers: list[str], units: bool) -> list[str]:
    """The per-row arrays whose chunks are one ledger block each, in digest-column order."""
    out = ["samples/ids", "samples/labels", "samples/logits"]
    for name in layers:
        out += [f"layers/{name}/maps", f"layers/{name}/pooled"]
    return out + (["units/energy"] if units else [])


def chunk_block(key: str) -> tuple[str, int] | None:
    """``(array path, block)`` for the key of a row-block chunk (other coordinates all 0), else None."""
    m = _CHUNK.match(key)
    if m is None:
        return None
    coords = m["coords"].split("/")
    if any(c != "0" for c in coords[1:]):
        return None
    return m["array"], int(coords[0])


def chunk_problem(data: bytes, expected: int, block: int) -> str | None:
    """What is wrong with a chunk's bytes given the digest recorded for ``block`` (None: nothing)."""
    if not intact(data):
        return "is damaged (its checksum does not match: corrupted or truncated)"
    if digest(data) != expected:
        return f"holds other data than recorded for block {block} (changed, or swapped with another chunk)"
    return None


@functools.cache
def _wrapper_classes() -> tuple[type, type]:
    """zarr WrapperStore subclasses (built on first use: zarr loads late)."""
    from zarr.storage import WrapperStore

    class Recording(WrapperStore):  # type: ignore[type-arg]
        """Records the digest of every row-block chunk written through it."""

        recorded: dict[tuple[str, int], int]

        def _with_store(self, store: Any) -> Any:
            new = type(self)(store)
            new.recorded = self.recorded
            return new

        async def set(self, key: str, value: Any) -> None:
            await self._store.set(key, value)
            where = chunk_block(key)
            if where is not None:
                self.recorded[where] = digest(value.to_bytes())

    class Checking(WrapperStore):  # type: ignore[type-arg]
        """Compares every row-block chunk it reads with the digest recorded for its position."""

        table: dict[str, np.ndarray]
        arrays: frozenset[str]
        where: str

        def _with_store(self, store: Any) -> Any:
            new = type(self)(store)
            new.table, new.arrays, new.where = self.table, self.arrays, self.where
            return new

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            value = await self._store.get(key, prototype, byte_range)
            if value is None or byte_range is not None:
                return value
            where = chunk_block(key)
            if where is None or where[0] not in self.arrays:
                return value
            recorded = self.table.get(where[0])
            if recorded is not None and where[1] < len(recorded):
                problem = chunk_problem(value.to_bytes(), int(recorded[where[1]]), where[1])
            else:  # a store without digests: at least a damaged chunk is an error here, not a codec traceback
                problem = None if intact(value.to_bytes()) else chunk_problem(value.to_bytes(), 0, where[1])
            if problem:
                raise StoreCorruptError(f"{self.where}: chunk {key} {problem}; run actstore verify to see "
                                        "every damaged chunk, then re-extract the store")
            return value

    return Recording, Checking


def recording_store(base: Any) -> Any:
    store = _wrapper_classes()[0](base)
    store.recorded = {}
    return store


def checking_store(base: Any, table: dict[str, np.ndarray], arrays: list[str], where: str) -> Any:
    """``base`` with every chunk of ``arrays`` (per-row, crc32c-coded) checked as it is read: against its
    recorded digest when ``table`` has one, else for integrity alone."""
    store = _wrapper_classes()[1](base)
    store.table, store.arrays, store.where = table, frozenset(arrays), where
    return store


def load_digests(group: Any) -> dict[str, np.ndarray]:
    """``{array path: (n_blocks,) digests}`` from a store's ledger; empty for a store without digests."""
    try:
        arr = group[DIGESTS]
    except KeyError:
        return {}
    try:
        columns = list(arr.attrs.get("arrays", []))
        table = np.asarray(arr[:], dtype=np.uint32)
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for a damaged chunk
        raise StoreCorruptError(f"{group.store}: the ledger's digest table {DIGESTS} is unreadable "
                                f"({type(exc).__name__}: {exc}); run actstore verify, then re-extract") from None
    return {name: table[:, i] for i, name in enumerate(columns)}
