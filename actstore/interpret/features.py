"""The Features artifact (an interpreter's R): arrays plus provenance, one zarr group, written atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import StoreError
from ..store.schema import provenance_key

__all__ = ["Features"]


@dataclass
class Features:
    """R of one interpreter run: ``arrays`` (e.g. ICE ``components`` (C, k, D); VEBI ``coef`` (K, P))
    and ``meta`` (method, hyperparameters, store, coreset, dataset fingerprint, per-class records)."""

    method: str
    params: dict[str, Any]
    arrays: dict[str, np.ndarray]
    store_key: str
    store_path: str
    fingerprint: str
    coreset: str | None  # the coreset's key, None for the full data
    layer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def key(self) -> str:
        return self.key_of(self.method, self.params, self.store_key, self.coreset, self.layer)

    @staticmethod
    def key_of(method: str, params: dict[str, Any], store_key: str, coreset: str | None, layer: str | None) -> str:
        """The key of the Features these would make: a run can look for them before computing them."""
        return provenance_key({"method": method, "params": params, "store": store_key, "coreset": coreset,
                               "layer": layer})

    def __repr__(self) -> str:
        shapes = {k: v.shape for k, v in self.arrays.items()}
        return f"Features(method={self.method!r}, coreset={self.coreset!r}, arrays={shapes})"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to a temporary folder beside ``path``, then rename it into place."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        try:
            attrs = {"format": "actstore-features", "version": 1, "key": self.key, "method": self.method,
                     "params": self.params, "store": {"key": self.store_key, "path": self.store_path},
                     "fingerprint": self.fingerprint, "coreset": self.coreset, "layer": self.layer,
                     "meta": self.meta, "created": self.created}
            group = zarr.open_group(str(tmp), mode="w", attributes={"actstore": attrs})
            for name, arr in self.arrays.items():
                arr = np.asarray(arr)
                dtype: Any = str if arr.dtype.kind in "UO" else arr.dtype
                group.create_array(name, shape=arr.shape, dtype=dtype, chunks=arr.shape or None)[...] = arr
            old = path.with_name(path.name + ".replaced")
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            if old.exists():
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Features:
        try:
            group = zarr.open_group(str(path), mode="r")
            a = dict(group.attrs["actstore"])
        except Exception as exc:  # noqa: BLE001 - missing, corrupt or foreign
            raise StoreError(f"{path}: not an actstore features artifact ({type(exc).__name__})") from None
        if a.get("format") != "actstore-features":
            raise StoreError(f"{path}: not an actstore features artifact")
        arrays = {name: np.asarray(node[...]) for name, node in group.members(max_depth=None)
                  if isinstance(node, zarr.Array)}
        return cls(method=a["method"], params=a["params"], arrays=arrays, store_key=a["store"]["key"],
                   store_path=a["store"]["path"], fingerprint=a["fingerprint"], coreset=a["coreset"],
                   layer=a["layer"], meta=a["meta"], created=a["created"])
