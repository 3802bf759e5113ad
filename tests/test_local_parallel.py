"""Per-class work on the local cores: results in order, errors raised, BLAS shared out, and ICE on a store
giving the same features whether its classes run one after another or at the same time."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from actstore import interpret, open_store
from actstore.interpret import ice_store
from actstore.scheduler import ahead, map_one_thread_each


def _blas_threads() -> int:
    return min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_results_come_back_in_order_on_several_threads_with_blas_shared_out(monkeypatch):
    monkeypatch.setattr("actstore.scheduler.local_cores", lambda: 2)
    seen: list[tuple[int, str, int]] = []

    def work(i: int) -> int:
        seen.append((i, threading.current_thread().name, _blas_threads()))
        return i * i

    assert map_one_thread_each(work, [(i,) for i in range(9)], 2) == [i * i for i in range(9)]
    assert all(threads == 1 for _, _, threads in seen)  # 2 workers on 2 cores: one BLAS thread each
    assert len({name for _, name, _ in seen}) == 2


def test_an_error_in_one_call_is_raised_and_the_rest_are_cancelled():
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if i == 1:
            raise KeyError("class 1")
        return i

    with pytest.raises(KeyError, match="class 1"):
        map_one_thread_each(work, [(i,) for i in range(200)], 2)
    assert len(started) < 200


def test_ice_features_are_the_same_serial_and_parallel(small_store, monkeypatch):
    store = open_store(small_store)
    monkeypatch.setattr(ice_store, "local_cores", lambda: 1)
    serial, = interpret(store, "ice", n_components=3, max_iter=50)
    monkeypatch.setattr(ice_store, "local_cores", lambda: 2)
    parallel, = interpret(store, "ice", n_components=3, max_iter=50)
    for name in ("components", "n_iter", "converged", "reconstruction_err"):
        np.testing.assert_array_equal(serial.arrays[name], parallel.arrays[name])


def test_classes_run_together_only_as_far_as_memory_limit_holds_them(small_store, monkeypatch):
    monkeypatch.setattr(ice_store, "local_cores", lambda: 8)
    store = open_store(small_store)
    arr = store.maps_array("layer3")
    largest = int(np.diff(store.class_offsets).max()) * int(np.prod(arr.shape[1:])) * 4
    assert ice_store._workers(arr, store.class_offsets, 2**40) == min(8, len(store.classes))
    assert ice_store._workers(arr, store.class_offsets, 2 * largest) == 2
    assert ice_store._workers(arr, store.class_offsets, largest // 2) == 1  # streamed, one class at a time


def test_ahead_yields_in_order_at_most_depth_ahead_and_joins_its_reader():
    produced: list[int] = []

    def items():
        for i in range(6):
            produced.append(i)
            yield i

    got = []
    for i in ahead(items(), depth=2):
        got.append(i)
        assert len(produced) <= len(got) + 2  # the item in hand plus at most two read ahead
    assert got == list(range(6))
    for i in ahead(items()):  # the consumer stops early: the reader is stopped and joined, not left blocked
        if i == 1:
            break
    assert not any(t.name == "actstore-read-ahead" and t.is_alive() for t in threading.enumerate())


def test_ahead_raises_the_producers_error_in_order():
    def items():
        yield 0
        raise OSError("chunk missing")

    got = []
    with pytest.raises(OSError, match="chunk missing"):
        for i in ahead(items()):
            got.append(i)
    assert got == [0]
