"""actstore verify: corrupted, truncated or missing chunks are reported by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from actstore import verify_store


@pytest.fixture
def store_copy(small_store: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.zarr"
    shutil.copytree(small_store, dst)
    return dst


def test_clean_store_verifies(small_store: Path) -> None:
    report = verify_store(small_store)
    assert report.ok, report.problems
    assert report.chunks_checked >= 5 * 6  # 5 blocks x (logits, 2x maps, 2x pooled, energy)


def test_flipped_bytes_are_reported_by_chunk_name(store_copy: Path) -> None:
    chunk = store_copy / "layers/layer3/maps/c/2/0/0/0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    report = verify_store(store_copy)
    assert not report.ok
    assert any("layers/layer3/maps/c/2/0/0/0" in p and "unreadable" in p for p in report.problems)


def test_truncated_chunk_is_reported(store_copy: Path) -> None:
    chunk = store_copy / "units/energy/c/1/0"
    chunk.write_bytes(chunk.read_bytes()[:10])
    report = verify_store(store_copy)
    assert [p for p in report.problems if p.startswith("units/energy/c/1/0")]


def test_missing_chunk_is_reported(store_copy: Path) -> None:
    (store_copy / "layers/layer2/pooled/c/4/0").unlink()
    report = verify_store(store_copy)
    assert report.problems == ["layers/layer2/pooled/c/4/0: chunk missing"]


def test_ledger_gap_and_schema_mismatch(store_copy: Path) -> None:
    import zarr

    g = zarr.open_group(str(store_copy), mode="r+")
    g["progress/done"][1] = False
    attrs = dict(g.attrs["actstore"])
    attrs["layers"] = {**attrs["layers"], "layer3": [8, 8, 65]}
    g.attrs["actstore"] = attrs
    report = verify_store(store_copy)
    assert any("1 of 5 blocks not written" in p for p in report.problems)
    assert any(p.startswith("layers/layer3/maps: shape") for p in report.problems)


def test_not_a_store(tmp_path: Path) -> None:
    report = verify_store(tmp_path)
    assert not report.ok and "no activation store" in report.problems[0]
