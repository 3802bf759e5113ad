"""Issue 11, part 2: nothing silently wrong or stale.

Changed images are not served from an old store, a reused store says that --out was not written,
swapped chunks and NaN activations are caught when written, verified and read, an undefined ICE
fit is an error naming the class, and a killed features save leaves no temporary for good."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from conftest import rerecord_digest
from test_cli import one_line_error, run

from actstore import extract, open_store, verify_store
from actstore.errors import NonFiniteError, StoreCorruptError, StoreExistsError
from actstore.extract.datasets import make_transform
from actstore.interpret.features import Features


def image_folder(root: Path, per_class: int = 4) -> Path:
    """A tiny ImageFolder of 32x32 BMPs (fixed size on disk: a changed pixel keeps the file size)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / c / f"{i}.bmp")
    return root


def _extract_folder(root: Path, tmp: Path, **kw):
    transform, prep = make_transform(32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    return extract("demo-vgg", f"imagefolder:{root}", weights="random", catalog=tmp / "c.yaml", progress=False,
                   transform=transform, preprocessing=prep, workers=0, block_rows=2, **kw)


def test_changed_image_contents_are_not_served_from_the_old_store(tmp_path: Path) -> None:
    """Before: same names, new contents -> "reusing the finished store" (the fingerprint covered names only)."""
    from PIL import Image

    root = image_folder(tmp_path / "imgs")
    first = _extract_folder(root, tmp_path)
    again = _extract_folder(root, tmp_path)
    assert again.reused and again.path == first.path
    img = root / "dog" / "1.bmp"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    changed = _extract_folder(root, tmp_path)
    assert not changed.reused and changed.store.key != first.store.key
    assert not np.array_equal(changed.store.array("samples/logits")[:], first.store.array("samples/logits")[:])
    with pytest.raises(StoreExistsError):  # the old store at an explicit --out is not silently kept either
        _extract_folder(root, tmp_path, out=first.path)

    # the paranoid option: same size, same mtime, other bytes
    st = img.stat()
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(img)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert img.stat().st_size == st.st_size
    assert _extract_folder(root, tmp_path).reused  # stat mode cannot see it (documented)
    by_content = _extract_folder(root, tmp_path, fingerprint="content")
    assert not by_content.reused and by_content.store.provenance["dataset"]["fingerprint_mode"] == "content"
    assert _extract_folder(root, tmp_path, fingerprint="content").reused


def test_a_reused_store_elsewhere_says_out_was_not_written(tmp_path: Path, home: Path) -> None:
    """Before: the old path was printed and nothing was written where --out asked, without a word."""
    extract("demo-vgg", "synthetic:n=6,classes=2", tmp_path / "a.zarr", weights="random", progress=False)
    args = ["extract", "--model", "demo-vgg", "--weights", "random", "--dataset", "synthetic:n=6,classes=2"]
    proc = run(*args, "--out", str(tmp_path / "b.zarr"), "--json", home=home)
    data = json.loads(proc.stdout)
    assert data["reused"] and data["path"] == str(tmp_path / "a.zarr") and data["out_written"] is False
    assert f"--out {tmp_path / 'b.zarr'} was not written" in proc.stderr and str(tmp_path / "a.zarr") in proc.stderr
    assert not (tmp_path / "b.zarr").exists()


def _swap(a: Path, b: Path) -> None:
    tmp = a.with_name("swap-tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def test_swapped_chunks_are_caught_by_verify_and_by_readers(tmp_path: Path, small_store: Path, home: Path) -> None:
    """Before: two valid chunks swapped between positions passed verify and read back as the wrong rows."""
    copy = tmp_path / "swapped.zarr"
    shutil.copytree(small_store, copy)
    _swap(copy / "layers/layer3/maps/c/1", copy / "layers/layer3/maps/c/2")
    _swap(copy / "layers/layer3/pooled/c/0/0", copy / "layers/layer3/pooled/c/3/0")
    report = verify_store(copy)
    assert sorted(p.split(":")[0] for p in report.problems) == [
        "layers/layer3/maps/c/1/0/0/0", "layers/layer3/maps/c/2/0/0/0",
        "layers/layer3/pooled/c/0/0", "layers/layer3/pooled/c/3/0"]
    assert all("misplaced chunk" in p and "swapped" in p for p in report.problems)
    with pytest.raises(StoreCorruptError, match=r"layers/layer3/maps/c/[12]/0/0/0 holds other data than recorded"):
        open_store(copy).maps("layer3").compute()
    line = one_line_error(run("select", str(copy), "--method", "moderate", "--rate", "0.5", home=home, check=None))
    assert re.search(r"layers/layer3/pooled/c/[03]/0 holds other data than recorded for block [03]", line), line


def _nan_weights(path: Path) -> Path:
    from actstore.extract.models import load_model

    state = load_model("demo-vgg", "random").module.state_dict()
    first_conv = next(k for k, v in state.items() if k.endswith("weight") and v.ndim == 4)
    state[first_conv][0, 0, 0, 0] = float("nan")
    torch.save(state, path)
    return path


def test_nan_activations_are_refused_or_recorded_and_verified(tmp_path: Path, home: Path) -> None:
    """Before: NaN weights wrote an all-NaN store that verify called ok; select later said "re-extract"."""
    weights = _nan_weights(tmp_path / "nan.pt")
    out = tmp_path / "nan.zarr"
    base = ["extract", "--model", "demo-vgg", "--weights", str(weights), "--dataset", "synthetic:n=12,classes=3",
            "--out", str(out)]
    line = one_line_error(run(*base, home=home, check=None))
    assert "NaN/Inf value(s) in rows 0-11 (block 0)" in line and "--allow-nonfinite" in line
    assert not out.exists()
    kept = extract("demo-vgg", "synthetic:n=12,classes=3", out, weights=str(weights), allow_nonfinite=True,
                   progress=False)
    counts = kept.store.provenance["nonfinite"]
    assert counts["layers/features.13/maps"] > 0 and counts["samples/logits"] > 0
    report = verify_store(out)
    assert report.ok and any("recorded (extracted with --allow-nonfinite)" in n for n in report.notes)
    with pytest.raises(NonFiniteError, match="--allow-nonfinite to use it"):
        extract("demo-vgg", "synthetic:n=12,classes=3", out, weights=str(weights), progress=False)

    clean = extract("demo-vgg", "synthetic:n=12,classes=3", tmp_path / "clean.zarr", weights="random",
                    catalog=tmp_path / "c.yaml", progress=False).path
    zarr.open_array(str(clean / "layers/features.13/pooled"), mode="r+")[3, 5] = np.inf
    rerecord_digest(clean, "layers/features.13/pooled", 3)  # a value changed after the fact, digest and all
    assert "layers/features.13/pooled: 1 NaN/Inf value(s) where the store records 0" in verify_store(clean).problems


def test_an_undefined_ice_fit_is_an_error_naming_the_class(tmp_path: Path, home: Path) -> None:
    """Before: ICE on all-zero maps saved NaN components with exit 0."""
    from actstore.extract.models import load_model

    state = {k: torch.zeros_like(v) for k, v in load_model("demo-vgg", "random").module.state_dict().items()}
    torch.save(state, tmp_path / "zero.pt")
    store = tmp_path / "zero.zarr"
    run("extract", "--model", "demo-vgg", "--weights", str(tmp_path / "zero.pt"), "--dataset",
        "synthetic:n=12,classes=3", "--out", str(store), home=home)
    assert verify_store(store).ok  # all-zero blocks are written and verified like any other
    line = one_line_error(run("interpret", str(store), "--method", "ice", "--param", "n_components=3",
                              "--param", "max_iter=5", "--out-dir", str(tmp_path / "features"), home=home,
                              check=None))
    assert "ICE on class 'class0' is undefined: its maps in this selection are all zero" in line
    assert not (tmp_path / "features").exists() or not list((tmp_path / "features").iterdir())
    nan = Features("ice", {}, {"components": np.full((2, 3, 4), np.nan)}, "k", str(store), "f", None)
    with pytest.raises(NonFiniteError, match="class 'class0'"):
        nan.save(tmp_path / "f" / "x.zarr")


def test_a_killed_features_save_leaves_no_temporary_for_good(tmp_path: Path) -> None:
    """Before: features/.X.zarr.<random> left by a kill was never cleaned."""
    target = tmp_path / "features" / "x.zarr"
    script = textwrap.dedent(f"""
        import numpy as np
        from actstore.interpret.features import Features
        big = np.random.default_rng(0).standard_normal((64, 1024, 1024)).astype(np.float32)
        Features("vebi", {{}}, {{"coef": big}}, "k", "s", "f", None).save({str(target)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 240
    while not list(target.parent.glob(".x.zarr.*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the save finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(target.parent.glob(".x.zarr.*")) and not target.exists()
    Features("vebi", {}, {"coef": np.ones((2, 3))}, "k", "s", "f", None).save(target)
    assert [p.name for p in target.parent.iterdir()] == ["x.zarr"]
