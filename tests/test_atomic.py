"""actstore.atomic: one helper for every temp-then-rename write (through links, 0644, nothing left behind)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from actstore.atomic import TMP_SUFFIX, atomic_dir, atomic_write_bytes, atomic_write_text, sweep_stale
from actstore.errors import NotOursError


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_and_folders_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    f = atomic_write_text(tmp_path / "a.txt", "x")
    assert _mode(f) == 0o644 and f.read_text() == "x"
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "inner").write_text("y")
    assert _mode(tmp_path / "d") == 0o755 and (tmp_path / "d" / "inner").read_text() == "y"
    os.umask(0o077)
    assert _mode(atomic_write_text(tmp_path / "private.txt", "x")) == 0o600


def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text("old")
    path.chmod(0o664)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o664


def test_writes_go_through_a_symlink_to_its_target(tmp_path: Path) -> None:
    target = tmp_path / "shared" / "catalog.yaml"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "mine.yaml"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert not [p for p in target.parent.iterdir() if p.name != "catalog.yaml"]


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out.zarr") as tmp:
        (tmp / "half").write_text("...")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep.json").write_text("{}")

    def refuse(path: Path) -> None:
        raise NotOursError(f"{path} is not ours")

    with pytest.raises(NotOursError):
        atomic_write_bytes(tmp_path / "keep.json", b"new", may_replace=refuse)
    assert (tmp_path / "keep.json").read_text() == "{}" and len(list(tmp_path.iterdir())) == 1


def test_an_existing_folder_is_replaced_only_when_allowed(tmp_path: Path) -> None:
    (tmp_path / "f.zarr").mkdir()
    (tmp_path / "f.zarr" / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="exists"), atomic_dir(tmp_path / "f.zarr"):
        pass
    assert (tmp_path / "f.zarr" / "keep.txt").exists()
    with atomic_dir(tmp_path / "f.zarr", may_replace=lambda p: None) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in (tmp_path / "f.zarr").iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["f.zarr"]


def test_a_killed_writers_temporary_is_swept_and_a_live_ones_is_not(tmp_path: Path) -> None:
    """A real process holds a temporary folder (as a features save does) and is killed with SIGKILL."""
    script = textwrap.dedent(f"""
        import sys, time
        from actstore.atomic import atomic_dir
        with atomic_dir({str(tmp_path / "x.zarr")!r}) as tmp:
            (tmp / "chunk").write_bytes(b"0" * 1000)
            print("writing", flush=True)
            time.sleep(120)
    """)
    live = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "writing"
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(TMP_SUFFIX)]
        assert len(temps) == 1
        assert sweep_stale(tmp_path / "x.zarr") == []  # its writer is alive: not ours to remove
        assert temps[0].exists()
    finally:
        os.kill(live.pid, signal.SIGKILL)
        live.wait()
    time.sleep(0.05)
    with atomic_dir(tmp_path / "x.zarr") as tmp:  # a later write of the same target cleans up
        (tmp / "chunk").write_bytes(b"1")
    assert [p.name for p in tmp_path.iterdir()] == ["x.zarr"]


def test_full_and_read_only_locations_are_typed_errors(tmp_path: Path) -> None:
    from actstore.errors import DiskFullError, OutputNotWritableError

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    with pytest.raises(OutputNotWritableError, match="special file, which is never replaced"):
        atomic_write_bytes(link, b"x")  # never replaces what is not a regular file
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    with pytest.raises(OutputNotWritableError, match="special file"):
        atomic_write_bytes(tmp_path, b"x")
    with pytest.raises(OutputNotWritableError, match="cannot write test file at /proc"):
        atomic_write_text("/proc/actstore-test.txt", "x", what="test file")
    assert issubclass(DiskFullError, OutputNotWritableError)
