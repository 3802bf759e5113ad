"""Input checks of the array-level estimators: scikit-learn's own ``check_array`` (so sparse, complex,
object, empty and non-finite input get its standard messages), raised as :class:`InterpretError`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputTypeError, InterpretError

__all__ = ["checked_array", "class_labels"]


def checked_array(X: Any, who: str, *, allow_nd: bool = False, dtype: Any = (np.float32, np.float64)) -> np.ndarray:
    """``X`` as a finite float array (2-D, or N-D when ``allow_nd``) with at least one row and one feature."""
    from sklearn.utils import check_array

    try:
        return check_array(X, accept_sparse=False, dtype=list(dtype), allow_nd=allow_nd, ensure_all_finite=True,
                           ensure_min_samples=1, ensure_min_features=1)
    except TypeError as exc:
        raise InputTypeError(f"{who}: {' '.join(str(exc).split())}") from None
    except ValueError as exc:
        raise InterpretError(f"{who}: {' '.join(str(exc).split())}") from None


def class_labels(y: Any, n: int, who: str) -> np.ndarray:
    """``y`` as int64 class indices 0..K-1, one per row."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise InterpretError(f"{who}: y must hold one class index per row ({n}), got shape {y.shape}")
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y)))) \
            or (len(y) and y.min() < 0):
        raise InterpretError(f"{who}: Unknown label type {y.dtype}: y must hold class indices 0..K-1 (whole numbers)")
    return y.astype(np.int64)
