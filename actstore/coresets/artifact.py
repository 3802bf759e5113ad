"""The Coreset artifact: per-class dataset sample ids plus how they were chosen.

Ids, not rows: a coreset picked on one model's store applies to any store of the same dataset
(same fingerprint), which is how coresets transfer across models.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError
from ..store.schema import provenance_key

__all__ = ["Coreset", "FORMAT"]

FORMAT = "actstore-coreset"


@dataclass
class Coreset:
    """Sample ids kept per class, with the selector, its parameters, ρ, seed and source store."""

    ids_by_class: dict[int, np.ndarray]
    method: str
    params: dict[str, Any]
    rate: float
    seed: int
    layer: str | None
    fingerprint: str
    store_key: str
    store_path: str
    classes: list[str]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def key(self) -> str:
        """Content key: same selector, parameters, rate, seed and source store give the same key."""
        return self.key_of(self.method, self.params, self.rate, self.seed, self.layer, self.store_key)

    @staticmethod
    def key_of(method: str, params: dict[str, Any], rate: float, seed: int, layer: str | None, store_key: str) -> str:
        """The key of the coreset these would select: a run can look for it before selecting."""
        return provenance_key({"method": method, "params": params, "rate": rate, "seed": seed, "layer": layer,
                               "store": store_key})

    @property
    def ids(self) -> np.ndarray:
        """All kept sample ids, sorted."""
        parts = [v for v in self.ids_by_class.values() if len(v)]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    @property
    def n(self) -> int:
        return int(sum(len(v) for v in self.ids_by_class.values()))

    def counts(self) -> dict[str, int]:
        return {self.classes[c]: int(len(v)) for c, v in sorted(self.ids_by_class.items())}

    def __repr__(self) -> str:
        return (f"Coreset(method={self.method!r}, rate={self.rate}, seed={self.seed}, n={self.n}, "
                f"classes={len(self.ids_by_class)}, store={self.store_path!r})")

    # -- applying to stores --------------------------------------------------------------------------
    def _check(self, store: Any) -> None:
        if store.fingerprint != self.fingerprint:
            raise StoreError(
                f"coreset from dataset {self.fingerprint} cannot apply to {store.path}, a store of dataset "
                f"{store.fingerprint}: a coreset transfers only between stores of the same dataset")

    def rows(self, store: Any) -> np.ndarray:
        """Rows of ``store`` (any store of the same dataset) holding the coreset's samples, sorted."""
        self._check(store)
        return np.sort(store.rows_for_ids(self.ids))

    def class_rows(self, store: Any, c: int) -> np.ndarray:
        """Rows of ``store`` holding the coreset's samples of class ``c``, sorted."""
        self._check(store)
        return np.sort(store.rows_for_ids(self.ids_by_class.get(c, np.empty(0, np.int64))))

    # -- files ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        labels = sorted(self.ids_by_class)
        return {
            "format": FORMAT, "version": 1, "key": self.key,
            "method": self.method, "params": self.params, "rate": self.rate, "seed": self.seed,
            "layer": self.layer, "fingerprint": self.fingerprint,
            "store": {"key": self.store_key, "path": self.store_path},
            "classes": self.classes, "created": self.created,
            "counts": {str(c): int(len(self.ids_by_class[c])) for c in labels},
            "ids": {str(c): self.ids_by_class[c].astype(int).tolist() for c in labels},
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (:mod:`actstore.atomic`); an existing file is replaced only if it is a coreset."""
        from ..atomic import atomic_write_text
        from ..names import check_name

        path = Path(path)
        check_name(path.name, "coreset file name")
        if ".." in path.parts:
            from ..errors import UnsafeNameError

            raise UnsafeNameError(f"{path}: a coreset path may not contain '..'; give the folder itself")
        atomic_write_text(path, json.dumps(self.to_dict()), what=f"coreset {path.name}",
                          may_replace=_must_be_coreset,
                          hint="rerun the same command once the location is writable (selection is recomputed)")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Coreset:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"{path}: no such coreset file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{path}: not a coreset file (unreadable JSON: {exc})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise StoreError(f"{path}: not an actstore coreset file")
        try:
            return cls(ids_by_class={int(c): np.asarray(v, np.int64) for c, v in d["ids"].items()},
                       method=d["method"], params=d["params"], rate=float(d["rate"]), seed=int(d["seed"]),
                       layer=d["layer"], fingerprint=d["fingerprint"], store_key=d["store"]["key"],
                       store_path=d["store"]["path"], classes=list(d["classes"]), created=d["created"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{path}: malformed coreset file ({type(exc).__name__}: {exc})") from None


def _must_be_coreset(path: Path) -> None:
    """Refuse to replace a file that is not an actstore coreset."""
    from ..ownership import artifact_key, describe
    from ..errors import NotOursError

    if artifact_key("coresets", path) is None:
        raise NotOursError(f"{path} holds {describe(path)} that is not an actstore coreset; it is never replaced: "
                           "move it away or choose another --out-dir")
