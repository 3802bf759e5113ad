"""The Features artifact (an interpreter's R): arrays plus provenance, one zarr group, written atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import StoreError
from ..store.schema import provenance_key

__all__ = ["Features"]

_NAN_MARKS = {"reconstruction_err"}  # NaN there records a class the target has no rows of (documented)


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
        """Write to a temporary folder beside ``path``, then rename it into place (:mod:`actstore.atomic`).
        Refused: NaN/Inf in an array (an undefined fit is never saved as numbers), a path with '..',
        and replacing anything that is not an actstore features folder."""
        from ..atomic import atomic_dir
        from ..errors import UnsafeNameError
        from ..names import check_name

        path = Path(path)
        check_name(path.name, "features folder name")
        if ".." in path.parts:
            raise UnsafeNameError(f"{path}: a features path may not contain '..'; give the folder itself")
        self._check_finite(path)
        attrs = {"format": "actstore-features", "version": 1, "key": self.key, "method": self.method,
                 "params": self.params, "store": {"key": self.store_key, "path": self.store_path},
                 "fingerprint": self.fingerprint, "coreset": self.coreset, "layer": self.layer,
                 "meta": self.meta, "created": self.created}
        with atomic_dir(path, what=f"features {path.name}", may_replace=_must_be_features,
                        hint="rerun the same command once the location is writable (the fit is recomputed)") as tmp:
            group = zarr.open_group(str(tmp), mode="w-", attributes={"actstore": attrs})  # "w" would recreate tmp
            for name, arr in self.arrays.items():
                arr = np.asarray(arr)
                dtype: Any = str if arr.dtype.kind in "UO" else arr.dtype
                group.create_array(name, shape=arr.shape, dtype=dtype, chunks=arr.shape or None)[...] = arr
        return path

    def _check_finite(self, path: Path) -> None:
        """No NaN/Inf in a fitted array; the first axis of a per-class array names the class."""
        from ..errors import NonFiniteError

        for name, arr in self.arrays.items():
            arr = np.asarray(arr)
            if name in _NAN_MARKS or arr.dtype.kind not in "fc" or np.isfinite(arr).all():
                continue
            where = ""
            if arr.ndim >= 2:
                index = int(np.argwhere(~np.isfinite(arr))[0][0])
                where = f" for class {self._class_name(index)!r} (index {index})"
            raise NonFiniteError(f"{self.method} features {path.name}: '{name}' holds NaN/Inf{where}: the fit is "
                                 "undefined there (e.g. all-zero activations for that class), so nothing was saved")

    def _class_name(self, index: int) -> str:
        try:
            from ..store.reader import read_provenance

            return str(read_provenance(self.store_path)["classes"][index])
        except Exception:  # noqa: BLE001 - only for a message
            return str(index)

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


def _must_be_features(path: Path) -> None:
    """Refuse to replace a folder that is not an actstore features artifact."""
    from ..errors import NotOursError
    from ..ownership import artifact_key, describe

    if artifact_key("features", path) is None:
        raise NotOursError(f"{path} holds {describe(path)}, not actstore features; it is never replaced: move it "
                           "away or choose another --out-dir")
