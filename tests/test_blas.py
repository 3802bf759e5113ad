"""The GIL-free BLAS update: the same sum as numpy's product, in place, bad layouts refused."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from actstore._blas import syrk_upper
from actstore.errors import ActstoreError


def test_the_update_accumulates_numpys_product_in_place():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((301, 17))
    c = np.asfortranarray(rng.standard_normal((17, 17)))
    lower_before = np.tril(c, -1).copy()
    start = c.copy()
    syrk_upper(c, X)
    np.testing.assert_allclose(np.triu(c), np.triu(start + X.T @ X), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.tril(c, -1), lower_before)  # the other triangle is not touched
    syrk_upper(c, X)
    np.testing.assert_allclose(np.triu(c), np.triu(start + 2 * X.T @ X), rtol=1e-12, atol=1e-12)
    syrk_upper(np.zeros((0, 0), order="F"), np.ones((4, 0)))  # no features: nothing to add (BLAS would refuse)
    syrk_upper(c, X[:0])  # no rows: nothing changes
    np.testing.assert_allclose(np.triu(c), np.triu(start + 2 * X.T @ X), rtol=1e-12, atol=1e-12)


def test_bad_layouts_are_refused_not_copied():
    X = np.ones((5, 3))
    with pytest.raises(ActstoreError, match="Fortran"):
        syrk_upper(np.zeros((3, 3)), X)  # a C-ordered sum would be updated in a copy: refused
    with pytest.raises(ActstoreError, match="Fortran"):
        syrk_upper(np.zeros((4, 4), order="F"), X)
    with pytest.raises(ActstoreError, match="got list"):
        syrk_upper([[0.0] * 3] * 3, X)  # type: ignore[arg-type]
    readonly = np.zeros((3, 3), order="F")
    readonly.flags.writeable = False
    with pytest.raises(ActstoreError, match="writeable"):
        syrk_upper(readonly, X)
    with pytest.raises(ActstoreError, match="C-ordered float64"):
        syrk_upper(np.zeros((3, 3), order="F"), X.astype(np.float32))
    with pytest.raises(ActstoreError, match="C-ordered float64"):
        syrk_upper(np.zeros((5, 5), order="F"), np.asfortranarray(np.ones((3, 5))))


def test_the_gil_is_released_during_the_call():
    """Python code on another thread runs while the update is inside BLAS (scipy's wrappers block it).
    A long switch interval keeps the GIL with the worker unless the call itself lets it go."""
    import sys

    a = np.random.default_rng(1).standard_normal((4000, 800))
    c = np.zeros((800, 800), order="F")
    window: list[float] = []
    started = threading.Event()

    def work() -> None:
        started.set()
        t0 = time.perf_counter()
        syrk_upper(c, a)
        window.extend((t0, time.perf_counter()))

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.2)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        started.wait()
        ticks = []
        while worker.is_alive():
            ticks.append(time.perf_counter())
        worker.join()
    finally:
        sys.setswitchinterval(old)
    inside = sum(window[0] < t < window[1] for t in ticks)
    assert inside > 100, f"only {inside} steps of this thread ran during the BLAS call"
