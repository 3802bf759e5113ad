"""Datasets by spec string: ``digits[:train|val]``, ``imagefolder:PATH``, ``synthetic:k=v,...``.

Each resolves to a :class:`DatasetSource` that knows its labels and fingerprint before any image
is decoded, so the store's class-contiguous row order is fixed up front. Sample ids are positions
in the dataset's canonical order (sorted file paths for ImageFolder) and never change.

An image folder's fingerprint covers each file's relative name, label, size and modification time
(``stat``, the default: one ``stat`` per file), or also a SHA-256 of each file's bytes
(``content``: reads the whole dataset; for the paranoid). A file whose contents changed therefore
changes the fingerprint, and no store extracted from the old contents is reused.

Unreadable images (truncated or corrupt files with an image extension) stop the extraction with
an error naming the file: fix or remove it and rerun (the finished blocks whose images did not
change are kept: see ``item_keys``). Files without an image extension are not part of an
ImageFolder and are ignored.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError

__all__ = ["DatasetSource", "resolve_dataset", "dataset_source", "make_transform", "DIGITS_SIZE", "DIGITS_MEAN", "DIGITS_STD",
           "digits_split", "FINGERPRINT_MODES"]

FINGERPRINT_MODES = ("stat", "content")
SPEC_KINDS = ("digits", "imagefolder", "synthetic")
_SPEC_FORMS = "digits[:train|val], imagefolder:PATH or synthetic:n=N,classes=C,size=S,seed=K"

DIGITS_SIZE = 32
DIGITS_MEAN, DIGITS_STD = 0.3, 0.4  # of digits pixels / 16
_SPLIT_SEED, _VAL_FRACTION = 0, 0.2


def _fingerprint(kind: str, items: list[str] | np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256(kind.encode())
    h.update("\n".join(map(str, items)).encode() if isinstance(items, list) else np.ascontiguousarray(items).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@dataclass
class DatasetSource:
    """A dataset, resolved: labels in canonical order, class names, fingerprint, item loader."""

    spec: str
    classes: list[str]
    labels: np.ndarray  # (N,) int in canonical sample order
    fingerprint: str
    preprocessing: dict[str, Any]
    load: Callable[[int], torch.Tensor]  # sample id -> preprocessed CHW float tensor
    info: dict[str, Any] = field(default_factory=dict)
    needs_transform: bool = False  # imagefolder: decodes images; set ``transform`` before loading
    transform: Callable[[Any], torch.Tensor] | None = None
    item_keys: list[str] | None = None  # per sample id: what its input is (a file's name, size, mtime...)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    def torch_dataset(self, ids: np.ndarray) -> _Rows:
        return _Rows(self, ids)


class _Rows(Dataset):
    """Rows of a store in order; an item is ``(image, row, error)``, error "" when the load worked."""

    def __init__(self, source: DatasetSource, ids: np.ndarray) -> None:
        self.source, self.ids = source, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, int, str]:
        try:
            return self.source.load(int(self.ids[row])), row, ""
        except Exception as exc:  # noqa: BLE001 - reported by the extractor with the file name
            return torch.zeros(0), row, f"{type(exc).__name__}: {exc}"


def make_transform(resize: int, crop: int, mean: tuple[float, ...], std: tuple[float, ...]
                   ) -> tuple[Callable[[Any], torch.Tensor], dict[str, Any]]:
    """PIL image -> normalised CHW float tensor: resize the short side, centre-crop, normalise."""
    from torchvision.transforms import v2

    if resize < 1 or crop < 1 or crop > resize:
        raise DatasetError(f"need 1 <= crop <= resize, got resize={resize}, crop={crop}")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise DatasetError(f"mean and std need 3 values each, std > 0 (got mean={mean}, std={std})")
    transform = v2.Compose([v2.PILToTensor(), v2.Resize(resize, antialias=True), v2.CenterCrop(crop),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
    return transform, {"resize": resize, "crop": crop, "mean": list(mean), "std": list(std),
                       "interpolation": "bilinear", "antialias": True}


def collate_rows(items: list[tuple[torch.Tensor, int, str]]) -> tuple[torch.Tensor, list[int], list[str]]:
    """Batch ``_Rows`` items; a batch with a failed load carries its errors and no images."""
    rows = [r for _, r, _ in items]
    errs = [e for _, _, e in items]
    if any(errs):
        return torch.zeros(0), rows, errs
    return torch.stack([x for x, _, _ in items]), rows, errs


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn digits, fixed stratified 80/20 split: (images 8x8, labels, train idx, val idx)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    idx = np.arange(len(data.target))
    train, val = train_test_split(idx, test_size=_VAL_FRACTION, stratify=data.target, random_state=_SPLIT_SEED)
    return data.images.astype(np.float32), data.target.astype(np.int64), np.sort(train), np.sort(val)


def _digits(split: str) -> DatasetSource:
    if split not in ("train", "val"):
        raise DatasetError(f"digits has splits 'train' and 'val', not '{split}' (use digits:train or digits:val)")
    images, target, train, val = digits_split()
    chosen = train if split == "train" else val
    x = torch.from_numpy(images[chosen] / 16.0)[:, None]
    x = torch.nn.functional.interpolate(x, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    x = ((x - DIGITS_MEAN) / DIGITS_STD).expand(-1, 3, -1, -1).contiguous()
    labels = target[chosen]
    return DatasetSource(
        item_keys=[f"digits:{i}" for i in chosen.tolist()],
        spec=f"digits:{split}",
        classes=[str(i) for i in range(10)],
        labels=labels,
        fingerprint=_fingerprint(f"digits:{split}", chosen.astype(np.int64), labels),
        preprocessing={"source": "sklearn.datasets.load_digits", "scale": "1/16", "resize": DIGITS_SIZE,
                       "interpolation": "bilinear", "channels": 3, "mean": DIGITS_MEAN, "std": DIGITS_STD},
        load=lambda i: x[i],
        info={"split": split, "source_index": chosen.tolist()},
    )


def _synthetic(args: str) -> DatasetSource:
    params = {"n": 64, "classes": 4, "size": 32, "seed": 0}
    for part in filter(None, args.split(",")):
        key, _, value = part.partition("=")
        if key not in params or not value.lstrip("-").isdigit():
            raise DatasetError(f"bad synthetic parameter '{part}'; use synthetic:n=N,classes=C,size=S,seed=K")
        params[key] = int(value)
    n, c, size, seed = params["n"], params["classes"], params["size"], params["seed"]
    if n < 1 or c < 1 or size < 8:
        raise DatasetError(f"synthetic dataset needs n >= 1, classes >= 1, size >= 8 (got {params})")
    labels = (np.arange(n) * 7919 % n) % c  # classes interleaved in id order: exercises the row sort
    freqs = np.random.default_rng(seed).uniform(0.5, 3.0, size=(c, 3, 2))

    def load(i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        yy, xx = torch.meshgrid(torch.linspace(0, 6.28, size), torch.linspace(0, 6.28, size), indexing="ij")
        f = torch.as_tensor(freqs[labels[i]], dtype=torch.float32)
        base = torch.stack([torch.sin(f[k, 0] * yy + f[k, 1] * xx) for k in range(3)])
        return base + 0.3 * torch.randn(3, size, size, generator=g)

    spec = f"synthetic:n={n},classes={c},size={size},seed={seed}"
    return DatasetSource(
        item_keys=[f"{spec}:{i}" for i in range(n)],
        spec=spec,
        classes=[f"class{k}" for k in range(c)],
        labels=labels.astype(np.int64),
        fingerprint=_fingerprint(f"synthetic:{n}:{c}:{size}:{seed}", list(map(str, range(n))), labels),
        preprocessing={"synthetic": params},
        load=load,
    )


def _file_keys(files: list[str], rel: list[str], mode: str) -> list[str]:
    """What each file is, for the fingerprint: name, size and mtime (``stat``), or name and SHA-256."""
    keys = []
    for path, name in zip(files, rel, strict=True):
        try:
            if mode == "content":
                with open(path, "rb") as fh:
                    keys.append(f"{name}\0{hashlib.file_digest(fh, 'sha256').hexdigest()}")
            else:
                st = os.stat(path)
                keys.append(f"{name}\0{st.st_size}\0{st.st_mtime_ns}")
        except OSError as exc:
            raise DatasetError(f"cannot read {path}: {exc.strerror}; fix its permissions or remove it") from None
    return keys


def _imagefolder(root: str, transform: Callable[[Any], torch.Tensor] | None, preprocessing: dict[str, Any],
                 fingerprint: str = "stat") -> DatasetSource:
    from torchvision.datasets import ImageFolder

    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"imagefolder:{root}: no such directory")
    try:
        folder = ImageFolder(str(path))
    except FileNotFoundError as exc:
        raise DatasetError(f"imagefolder:{root}: {exc} (expected one sub-folder of images per class)") from None
    counts = np.bincount(np.asarray(folder.targets, dtype=np.int64), minlength=len(folder.classes))
    empty = [folder.classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DatasetError(f"imagefolder:{root}: class folder(s) with no images: {', '.join(empty)}")
    rel = [str(Path(p).relative_to(path)) for p, _ in folder.samples]
    labels = np.asarray(folder.targets, dtype=np.int64)
    files = [p for p, _ in folder.samples]

    def load(i: int) -> torch.Tensor:
        from PIL import Image

        transform = source.transform
        if transform is None:
            raise DatasetError("imagefolder needs a transform: pass weights or --resize/--crop")
        try:
            with Image.open(files[i]) as img:
                img = img.convert("RGB")
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
            raise DatasetError(f"cannot decode image {files[i]} (sample id {i}): {exc}; "
                               "fix or remove the file and rerun") from None
        return transform(img)

    keys = _file_keys(files, rel, fingerprint)
    source = DatasetSource(
        spec=f"imagefolder:{path}",
        classes=list(folder.classes),
        labels=labels,
        fingerprint=_fingerprint(f"imagefolder:{fingerprint}", keys, labels),
        item_keys=keys,
        preprocessing=preprocessing,
        load=load,
        info={"root": str(path)},
        needs_transform=True,
        transform=transform,
    )
    return source


def resolve_dataset(
    spec: str,
    *,
    transform: Callable[[Any], torch.Tensor] | None = None,
    preprocessing: dict[str, Any] | None = None,
    fingerprint: str = "stat",
) -> DatasetSource:
    """Resolve a dataset spec. ``transform`` (PIL -> tensor) and ``fingerprint`` (``stat`` or
    ``content``, see the module docstring) are used by ``imagefolder`` only."""
    if fingerprint not in FINGERPRINT_MODES:
        raise DatasetError(f"fingerprint must be one of {', '.join(FINGERPRINT_MODES)}, not '{fingerprint}'")
    kind, _, arg = spec.partition(":")
    if kind == "digits":
        return _digits(arg or "train")
    if kind == "synthetic":
        return _synthetic(arg)
    if kind == "imagefolder":
        if not arg:
            raise DatasetError("imagefolder needs a path: imagefolder:/path/to/root")
        return _imagefolder(arg, transform, preprocessing or {}, fingerprint)
    raise DatasetError(f"unknown dataset spec '{spec}'; use {_SPEC_FORMS} (or a dataset name from the catalog)")


def dataset_source(name: str, catalog: Any = None, *, fingerprint: str = "stat") -> DatasetSource:
    """The dataset ``name`` means: a catalog dataset (``catalog``, then the project's catalog.yaml), checked
    against the fingerprint the catalog records, or a spec. An unknown name says where it was looked up."""
    from ..catalog import resolve, searched

    entry = resolve("datasets", name, catalog).entry
    if entry is None and name.partition(":")[0] not in SPEC_KINDS:
        raise DatasetError(f"unknown dataset '{name}': not a dataset name in {searched(catalog, 'datasets')}, "
                           f"nor a spec ({_SPEC_FORMS})")
    source = resolve_dataset(entry["spec"] if entry else name, fingerprint=fingerprint)
    if entry and entry.get("fingerprint") and entry["fingerprint"] != source.fingerprint:
        raise DatasetError(f"dataset '{name}' has fingerprint {source.fingerprint} ({fingerprint} mode), but "
                           f"the catalog records {entry['fingerprint']}: the data changed; update or remove the entry")
    return source
