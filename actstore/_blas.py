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
    try:
        from scipy.linalg import cython_blas

        capsule = cython_blas.__pyx_capi__["dsyrk"]  # type: ignore[attr-defined]
        name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
        pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
            ("PyCapsule_GetPointer", ctypes.pythonapi))
        signature = name(capsule)
    except (ImportError, AttributeError, KeyError) as exc:
        raise ActstoreError(f"scipy's Cython BLAS (dsyrk) is not reachable through ctypes here: {exc}") from None
    # 32-bit integers (LP64), as the prototype below passes them: an ILP64 build would read past them
    if signature.count(b"int *") != 4 or b"long" in signature:
        raise ActstoreError(f"scipy's dsyrk has an unexpected signature {signature.decode(errors='replace')}")
    args = (_CHAR, _CHAR, _INT, _INT, _DOUBLE, _PTR, _INT, _DOUBLE, _PTR, _INT)
    return ctypes.CFUNCTYPE(None, *args)(pointer(capsule, signature))


def _int(v: int) -> Any:
    if not 0 <= v < 2**31:
        raise ActstoreError(f"BLAS dimension {v} does not fit a 32-bit integer")
    return ctypes.byref(ctypes.c_int(v))


def _one() -> Any:
    return ctypes.byref(ctypes.c_double(1.0))


def _what(a: object) -> str:
    return f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__


def _rows64(a: np.ndarray) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype != np.dtype("=f8") or not a.flags.c_contiguous \
            or not a.flags.aligned:
        raise ActstoreError(f"expected C-ordered float64 rows, got {_what(a)}")
    return a


def syrk_upper(c: np.ndarray, a: np.ndarray) -> None:
    """c's upper triangle += aᵀa, in place: c (d x d, float64, Fortran order), a (n x d, float64, C order).
    c's strict lower triangle is left as it was."""
    a = _rows64(a)
    n, d = a.shape
    if not isinstance(c, np.ndarray) or c.shape != (d, d) or c.dtype != np.dtype("=f8") \
            or not c.flags.f_contiguous or not c.flags.aligned or not c.flags.writeable:
        raise ActstoreError(f"expected a writeable Fortran-ordered float64 ({d}, {d}) sum, got {_what(c)}")
    if n == 0 or d == 0:  # nothing to add (and BLAS rejects a zero leading dimension)
        return
    # a's C-ordered rows are aᵀ (d x n) in Fortran order, leading dimension d: C += (aᵀ)(aᵀ)ᵀ
    _dsyrk()(b"U", b"N", _int(d), _int(n), _one(), a.ctypes.data, _int(d), _one(), c.ctypes.data, _int(d))
