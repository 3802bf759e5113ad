"""Kill -9 mid-extraction, rerun: the finished store equals an uninterrupted one, array by array."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from actstore import errors, extract

SLOW = "synthetic:n=480,classes=6,size=64,seed=3"
ARGS = dict(layers=["layer2", "layer3"], units=True, weights="random", block_rows=16, batch_size=8)


def _script(out: Path, catalog: Path) -> str:
    return textwrap.dedent(f"""
        from actstore import extract
        extract("demo-resnet", {SLOW!r}, {str(out)!r}, catalog={str(catalog)!r}, progress=False, **{ARGS!r})
    """)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(str(path), mode="r")
    return {name: node[:] for name, node in g.members(max_depth=None) if isinstance(node, zarr.Array)}


def _done_blocks(partial: Path) -> int:
    ledger = partial / "progress" / "done" / "c"
    return len(list(ledger.iterdir())) if ledger.exists() else 0


def _kill_after(out: Path, catalog: Path, blocks: int) -> Path:
    """Start the extraction in a subprocess and SIGKILL it once ``blocks`` ledger blocks are done."""
    proc = subprocess.Popen([sys.executable, "-c", _script(out, catalog)])
    partial = out.with_name(out.name + ".partial")
    deadline = time.time() + 120
    while _done_blocks(partial) < blocks and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "extraction finished before it could be killed; make the dataset larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return partial


def test_killed_extraction_resumes_to_an_identical_store(tmp_path: Path) -> None:
    out = tmp_path / "killed.zarr"
    partial = _kill_after(out, tmp_path / "a.yaml", 4)
    assert not out.exists() and partial.exists(), "a killed run must leave only the .partial folder"
    written = _done_blocks(partial)
    assert 0 < written < 30

    resumed = extract("demo-resnet", SLOW, out, catalog=tmp_path / "a.yaml", progress=False, **ARGS)
    assert resumed.resumed_blocks >= written and resumed.written_blocks == 30 - resumed.resumed_blocks
    assert not partial.exists() and not list(out.rglob("*.partial"))

    clean = extract("demo-resnet", SLOW, tmp_path / "clean.zarr", catalog=tmp_path / "b.yaml", progress=False,
                    **ARGS)
    a, b = _arrays(out), _arrays(clean.path)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_second_writer_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "locked.zarr"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from actstore.store.lock import WriterLock
        lock = WriterLock(Path({str(out)!r}), "x").acquire()
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(errors.StoreLockedError, match="being written by pid"):
            extract("demo-resnet", "synthetic:n=8,classes=2", out, weights="random", catalog=tmp_path / "c.yaml",
                    progress=False)
    finally:
        holder.kill()
        holder.wait()
    # once the holder is gone (killed, lock dropped by the kernel) the same command succeeds
    res = extract("demo-resnet", "synthetic:n=8,classes=2", out, weights="random", catalog=tmp_path / "c.yaml",
                  progress=False)
    assert res.path == out and out.exists()


def test_partial_with_other_provenance_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "p.zarr"
    _kill_after(out, tmp_path / "a.yaml", 1)
    with pytest.raises(errors.StoreExistsError, match="--overwrite"):
        extract("demo-vgg", "synthetic:n=8,classes=2", out, weights="random", catalog=tmp_path / "a.yaml",
                progress=False)
    res = extract("demo-vgg", "synthetic:n=8,classes=2", out, weights="random", catalog=tmp_path / "a.yaml",
                  progress=False, overwrite=True)
    assert res.store.provenance["model"]["builder"] == "demo-vgg"
