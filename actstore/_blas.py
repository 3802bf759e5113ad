"""The BLAS update the streaming passes spend their time in (a symmetric rank-k update), called so that
it releases the GIL.

scipy's ``scipy.linalg.blas`` wrappers hold the GIL for the whole call, so a read-ahead thread
(zarr's decompression of the next block) stands still while the Gram of this block is formed:
reading and BLAS then take turns instead of overlapping (Φ from two stores: 11 % of the wall time).
This calls the same OpenBLAS routine (scipy's ``cython_blas``, under the same threadpool limits)
through ctypes, which releases the GIL, and updates the running sum in place as the wrapper did.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import numpy as np

from .errors import ActstoreError

__all__ = ["syrk_upper"]

_INT = ctypes.POINTER(ctypes.c_int)
_DOUBLE = ctypes.POINTER(ctypes.c_double)
_PTR = ctypes.c_void_p
_CHAR = ctypes.c_char_p


@cache
def _dsyrk() -> Any:
    """scipy's Fortran ``dsyrk`` as a ctypes function (every argument by reference). Its address comes
    from the capsule scipy exports for Cython (numba's helper does the same, but importing numba to
    call it would add LLVM's 50 MB to every process that only evaluates)."""
    from scipy.linalg import cython_blas

    capsule = cython_blas.__pyx_capi__["dsyrk"]  # type: ignore[attr-defined]
    name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
    pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    address = pointer(capsule, name(capsule))
    args = (_CHAR, _CHAR, _INT, _INT, _DOUBLE, _PTR, _INT, _DOUBLE, _PTR, _INT)
    return ctypes.CFUNCTYPE(None, *args)(address)


def _int(v: int) -> Any:
    if not 0 <= v < 2**31:
        raise ActstoreError(f"BLAS dimension {v} does not fit a 32-bit integer")
    return ctypes.byref(ctypes.c_int(v))


def _one() -> Any:
    return ctypes.byref(ctypes.c_double(1.0))


def _rows64(a: np.ndarray) -> np.ndarray:
    if a.ndim != 2 or a.dtype != np.float64 or not a.flags.c_contiguous:
        raise ActstoreError(f"expected C-ordered float64 rows, got {a.dtype} {a.shape}")
    return a


def syrk_upper(c: np.ndarray, a: np.ndarray) -> None:
    """c's upper triangle += aᵀa, in place: c (d x d, float64, Fortran order), a (n x d, float64, C order).
    c's strict lower triangle is left as it was."""
    a = _rows64(a)
    n, d = a.shape
    if c.shape != (d, d) or c.dtype != np.float64 or not c.flags.f_contiguous or not c.flags.writeable:
        raise ActstoreError(f"expected a writeable Fortran-ordered float64 ({d}, {d}) sum, got {c.dtype} {c.shape}")
    if n == 0:
        return
    # a's C-ordered rows are aᵀ (d x n) in Fortran order, leading dimension d: C += (aᵀ)(aᵀ)ᵀ
    _dsyrk()(b"U", b"N", _int(d), _int(n), _one(), a.ctypes.data, _int(d), _one(), c.ctypes.data, _int(d))
