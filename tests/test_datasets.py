"""Dataset specs: real image folders, the digits split, synthetic data, and their failure modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actstore import errors, extract, open_store, resolve_dataset
from actstore.extract.datasets import digits_split, make_transform


def _folder(root: Path, counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 255, size=(40 + i, 36, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"img{i:02d}.png")
    return root


def test_imagefolder_rows_ids_and_fingerprint(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", {"cat": 3, "ant": 2, "bee": 4})
    (root / "cat" / "notes.txt").write_text("not an image: ignored by ImageFolder")
    source = resolve_dataset(f"imagefolder:{root}")
    assert source.classes == ["ant", "bee", "cat"] and source.n == 9
    assert resolve_dataset(f"imagefolder:{root}").fingerprint == source.fingerprint
    res = extract("demo-resnet", f"imagefolder:{root}", tmp_path / "s.zarr", weights="random",
                  catalog=tmp_path / "c.yaml", progress=False, workers=2)
    store = res.store
    assert store.labels.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert store.sample_ids.tolist() == list(range(9))  # ImageFolder order is already class-sorted
    assert store.maps().shape == (9, 8, 8, 64)
    assert store.provenance["preprocessing"]["crop"] == 32
    (root / "ant" / "img09.png").write_bytes((root / "ant" / "img00.png").read_bytes())
    assert resolve_dataset(f"imagefolder:{root}").fingerprint != source.fingerprint


def test_custom_transform(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", {"a": 2, "b": 2})
    tf, prep = make_transform(48, 40, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    res = extract("demo-vgg", f"imagefolder:{root}", tmp_path / "s.zarr", weights="random", transform=tf,
                  preprocessing=prep, catalog=tmp_path / "c.yaml", progress=False)
    assert res.store.maps().shape == (4, 10, 10, 64) and res.store.provenance["preprocessing"]["resize"] == 48
    with pytest.raises(errors.DatasetError, match="crop <= resize"):
        make_transform(32, 64, (0, 0, 0), (1, 1, 1))


def test_imagefolder_without_classes_or_with_an_empty_class(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.DatasetError, match="one sub-folder of images per class"):
        resolve_dataset(f"imagefolder:{tmp_path / 'empty'}")
    root = _folder(tmp_path / "imgs", {"a": 2})
    (root / "b").mkdir()
    with pytest.raises(errors.DatasetError, match="no images: b|no valid file"):
        resolve_dataset(f"imagefolder:{root}")
    with pytest.raises(errors.DatasetError, match="no such directory"):
        resolve_dataset(f"imagefolder:{tmp_path / 'absent'}")


@pytest.mark.parametrize("workers", [0, 2])
def test_truncated_image_fails_naming_the_file(tmp_path: Path, workers: int) -> None:
    root = _folder(tmp_path / "imgs", {"a": 3, "b": 3})
    bad = root / "b" / "img01.png"
    bad.write_bytes(bad.read_bytes()[:60])
    out = tmp_path / "s.zarr"
    with pytest.raises(errors.DatasetError) as info:
        extract("demo-resnet", f"imagefolder:{root}", out, weights="random", catalog=tmp_path / "c.yaml",
                progress=False, workers=workers)
    assert str(bad) in str(info.value) and "rerun" in str(info.value)
    assert not out.exists()  # only the resumable .partial is left
    bad.write_bytes((root / "b" / "img00.png").read_bytes())  # fixed in place: same file list
    res = extract("demo-resnet", f"imagefolder:{root}", out, weights="random", catalog=tmp_path / "c.yaml",
                  progress=False, workers=workers)
    assert open_store(res.path).n_rows == 6


def test_digits_split_is_fixed_and_stratified() -> None:
    _, target, train, val = digits_split()
    assert len(train) == 1437 and len(val) == 360 and not set(train) & set(val)
    counts = np.bincount(target[val], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    a, b = resolve_dataset("digits:val"), resolve_dataset("digits")
    assert a.load(0).shape == (3, 32, 32) and b.spec == "digits:train"
    assert resolve_dataset("digits:val").fingerprint == a.fingerprint


@pytest.mark.parametrize(("spec", "message"), [
    ("digits:test", "splits 'train' and 'val'"),
    ("synthetic:n=ten", "bad synthetic parameter"),
    ("synthetic:colour=3", "bad synthetic parameter"),
    ("synthetic:n=0", "needs n >= 1"),
    ("cifar10", "unknown dataset spec 'cifar10'"),
    ("imagefolder:", "needs a path"),
])
def test_bad_dataset_specs(spec: str, message: str) -> None:
    with pytest.raises(errors.DatasetError, match=message):
        resolve_dataset(spec)
