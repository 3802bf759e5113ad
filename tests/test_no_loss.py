"""Issue 11, part 1: nothing is deleted that is not provably actstore's, no name escapes its folder,
two writers never share a store, and writes go through links with the usual file modes.

Every case here lost data, escaped the home folder or raced before; each runs the command line or
the API as a user would, with real processes where processes matter."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_cli import one_line_error, run

from actstore import Catalog, extract, interpret, save_coreset, select, verify_store
from actstore.errors import NotOursError, UnsafeNameError
from actstore.interpret.run import save_features
from actstore.names import path_under

pytestmark = pytest.mark.slow  # real processes, models or whole experiments: `-m "not slow"` skips them

TINY = ["--model", "demo-vgg", "--weights", "random", "--dataset", "synthetic:n=6,classes=2"]
MEDIUM = "synthetic:n=160,classes=4,size=64,seed=3"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_overwrite_never_deletes_a_folder_that_is_not_a_store(tmp_path: Path, home: Path) -> None:
    """Before: --out $ACTSTORE_HOME --overwrite removed the models, the catalog and everything else."""
    (home / "models").mkdir(parents=True)
    (home / "models" / "demo-vgg.pt").write_bytes(b"trained weights")
    (home / "catalog.yaml").write_text("version: 1\n")
    before = _tree(home)
    line = one_line_error(run("extract", *TINY, "--out", str(home), "--overwrite", home=home, check=None))
    assert "not an actstore store" in line and "models/" in line and "not even with --overwrite" in line
    assert {k: v for k, v in _tree(home).items() if not k.startswith("catalog.yaml.")} == before
    assert not list(home.parent.glob("home.*"))  # no .partial, no lock left beside it

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(NotOursError, match="holds a folder holding keep.txt") as info:
            extract("demo-vgg", "synthetic:n=6,classes=2", mine, weights="random", overwrite=overwrite,
                    catalog=tmp_path / "c.yaml", progress=False)
        assert "pass --overwrite" not in str(info.value)
    assert (mine / "keep.txt").read_text() == "precious" and len(list(mine.iterdir())) == 1


def test_a_partial_folder_that_is_not_an_extraction_is_never_cleared(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "s.zarr"
    partial = tmp_path / "s.zarr.partial"
    partial.mkdir()
    (partial / "keep.txt").write_text("precious")
    line = one_line_error(run("extract", *TINY, "--out", str(out), "--overwrite", home=home, check=None))
    assert "s.zarr.partial holds a folder holding keep.txt" in line
    with pytest.raises(NotOursError, match="s.zarr.partial holds a folder holding keep.txt"):
        extract("demo-vgg", "synthetic:n=6,classes=2", out, weights="random", catalog=tmp_path / "c.yaml",
                progress=False)
    assert (partial / "keep.txt").read_text() == "precious" and not out.exists()


def test_catalog_rm_delete_deletes_only_the_artifact_its_entry_names(tmp_path: Path, home: Path,
                                                                    small_store: Path) -> None:
    """Before: rm --delete removed whatever path the entry named, ../../elsewhere included."""
    catalog = tmp_path / "a" / "b" / "catalog.yaml"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("x")
    catalog.parent.mkdir(parents=True)
    catalog.write_text(yaml.safe_dump({"stores": {"evil": {"path": "../../elsewhere", "fingerprint": "f",
                                                           "key": "0123"}}}))
    line = one_line_error(run("catalog", "rm", "stores", "evil", "--delete", "--catalog", str(catalog), home=home,
                              check=None))
    assert "precious.txt" in line and "nothing was deleted" in line
    assert (elsewhere / "precious.txt").exists() and "evil" in Catalog.load(catalog).entries("stores")

    cs = select(small_store, "random", 0.5)
    name, path = save_coreset(cs, catalog, tmp_path / "coresets")
    path.write_text('{"format": "actstore-coreset", "key": "someone-elses"}')
    line = one_line_error(run("catalog", "rm", "coresets", name, "--delete", "--catalog", str(catalog), home=home,
                              check=None))
    assert "key someone-elses" in line and path.exists()
    name, path = save_coreset(cs, catalog, tmp_path / "coresets2")
    run("catalog", "rm", "coresets", name, "--delete", "--catalog", str(catalog), home=home)
    assert not path.exists() and name not in Catalog.load(catalog).entries("coresets")


def test_names_never_become_paths_outside_their_folder(tmp_path: Path, home: Path, small_store: Path) -> None:
    """Before: --name ../../evil wrote a store outside $ACTSTORE_HOME/stores, features followed."""
    for name in ("../../evil", str(tmp_path / "abs")):
        line = one_line_error(run("extract", *TINY, "--name", name, home=home, check=None))
        assert "--name" in line and "cannot be used" in line
    assert not list(tmp_path.rglob("*evil*")) and not (tmp_path / "abs").exists()
    assert not (home / "stores").exists()

    features = interpret(small_store, "vebi", mu=0.05)[0]
    with pytest.raises(UnsafeNameError):
        features.save(home / "features" / ".." / ".." / "evil.zarr")
    with pytest.raises(UnsafeNameError):
        save_features(features, tmp_path / "c.yaml", tmp_path / "f", name="../../evil")
    cs = select(small_store, "random", 0.5)
    with pytest.raises(UnsafeNameError):
        save_coreset(cs, tmp_path / "c.yaml", tmp_path / "cs", name="../evil")
    (tmp_path / "cs").mkdir(exist_ok=True)
    (tmp_path / "cs" / "trap.json").symlink_to(tmp_path / "outside.json")
    with pytest.raises(UnsafeNameError, match="outside"):
        path_under(tmp_path / "cs", "trap", ".json")
    assert not list(tmp_path.rglob("*evil*")) and not (tmp_path / "outside.json").exists()


def _lock_holder(lock: Path, procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    deadline = time.time() + 240
    while time.time() < deadline:
        text = lock.read_text() if lock.exists() else ""
        for p in procs:
            if f"pid {p.pid} " in text:
                return p
        assert all(p.poll() is None for p in procs), "a writer ended before either held the lock"
        time.sleep(0.01)
    raise AssertionError("no writer took the lock")


def test_two_fresh_writers_one_writes_the_other_exits_2_naming_its_pid(tmp_path: Path, home: Path) -> None:
    """Before: zarr's mode="w" deleted the lock inside .partial, the second writer 'resumed' and the first
    crashed (KeyError: 'samples/logits'); with --overwrite the second wiped the first's partial store."""
    out = tmp_path / "race.zarr"
    args = [sys.executable, "-m", "actstore.cli", "extract", "--model", "demo-resnet", "--weights", "random",
            "--dataset", MEDIUM, "--block-rows", "16", "--batch-size", "8", "--out", str(out)]
    env = {**os.environ, "ACTSTORE_HOME": str(home)}
    procs = [subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    holder = _lock_holder(out.with_name("race.zarr.lock"), procs)
    os.kill(holder.pid, signal.SIGSTOP)  # hold it mid-extraction, whatever the machine's speed
    try:
        other = next(p for p in procs if p is not holder)
        _, err = other.communicate(timeout=240)
        assert other.returncode == 2 and f"being written by pid {holder.pid} " in err, err
        before = _tree(out.with_name("race.zarr.partial"))
        line = one_line_error(run(*args[3:], "--overwrite", home=home, check=None))
        assert f"being written by pid {holder.pid} " in line
        assert _tree(out.with_name("race.zarr.partial")) == before, "a refused writer changed the partial store"
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    _, err = holder.communicate(timeout=300)
    assert holder.returncode == 0, err
    assert verify_store(out).ok
    assert not out.with_name("race.zarr.lock").exists() and not out.with_name("race.zarr.partial").exists()


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_symlinked_catalog_is_written_through_and_artifacts_are_0644(tmp_path: Path, small_store: Path,
                                                                        umask_022: None) -> None:
    """Before: writing through a symlinked --catalog replaced the link with a file (the shared catalog was never
    updated), and catalogs, coresets and features were written 0600."""
    shared = tmp_path / "shared" / "catalog.yaml"
    shared.parent.mkdir()
    shared.write_text("version: 1\n")
    link = tmp_path / "mine.yaml"
    link.symlink_to(shared)
    name, path = save_coreset(select(small_store, "random", 0.5), link, tmp_path / "cs")
    fname, fpath = save_features(interpret(small_store, "vebi", mu=0.05)[0], link, tmp_path / "features")
    assert link.is_symlink() and link.resolve() == shared
    registered = Catalog.load(shared)
    assert name in registered.entries("coresets") and fname in registered.entries("features")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(shared) == 0o644 and mode(path) == 0o644 and mode(fpath) == 0o755
    assert {mode(p) for p in fpath.rglob("*") if p.is_file()} == {0o644}
    assert not [p for p in tmp_path.rglob(".*") if p.name != ".catalog.yaml.cache.json"]  # no temporaries left
