"""Dask-backed stages on other schedulers give the in-process results: local processes, and a
distributed.LocalCluster of 2 worker processes (one of them killed mid-run); bad addresses fail fast."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import distributed
import numpy as np
import pytest

from actstore import interpret, select_many
from actstore.scheduler import SchedulerError, check_scheduler
from actstore.extract.synthetic import write_synthetic_store

pytestmark = pytest.mark.slow  # real processes, models or whole experiments: `-m "not slow"` skips them


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as c:
        yield c


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("dist") / "s.zarr", classes=12, rows_per_class=60,
                                 channels=16, height=2, width=2, block_rows=32)


def _same_coresets(a, b):
    assert [c.key for c in a] == [c.key for c in b]
    for x, y in zip(a, b, strict=True):
        assert all(np.array_equal(x.ids_by_class[c], y.ids_by_class[c]) for c in x.ids_by_class)


def test_select_on_a_cluster_equals_the_stream(store, cluster):
    want = select_many(store, "dgpruning", [0.1, 0.5])
    _same_coresets(select_many(store, "dgpruning", [0.1, 0.5], scheduler=cluster.scheduler_address), want)
    _same_coresets(select_many(store, "moderate", [0.3], scheduler="threads"), select_many(store, "moderate", [0.3]))


def test_ice_on_a_cluster_equals_the_stream(store, cluster):
    cs = select_many(store, "random", [0.5])[0]
    want = interpret(store, "ice", coresets=[cs], full=True, n_components=3, max_iter=20)
    got = interpret(store, "ice", coresets=[cs], full=True, n_components=3, max_iter=20,
                    scheduler=cluster.scheduler_address)
    for g, w in zip(got, want, strict=True):
        assert g.key == w.key
        np.testing.assert_array_equal(g.arrays["components"], w.arrays["components"])


def test_vebi_pass_on_a_cluster_equals_the_stream(small_store, cluster):
    cs = select_many(small_store, "random", [0.5])[0]
    want = interpret(small_store, "vebi", coresets=[cs], full=True, mu=0.05)
    for scheduler in (cluster.scheduler_address, "synchronous"):
        got = interpret(small_store, "vebi", coresets=[cs], full=True, mu=0.05, scheduler=scheduler)
        for g, w in zip(got, want, strict=True):
            assert g.key == w.key  # the scheduler is not part of what R depends on
            np.testing.assert_allclose(g.arrays["coef"], w.arrays["coef"], rtol=1e-9, atol=1e-12)


def test_a_worker_killed_mid_run_is_retried(tmp_path, cluster):
    big = write_synthetic_store(tmp_path / "big.zarr", classes=16, rows_per_class=2500, channels=96)
    want = select_many(big, "dgpruning", [0.2])
    got: list = []
    runner = threading.Thread(target=lambda: got.append(
        select_many(big, "dgpruning", [0.2], scheduler=cluster.scheduler_address)))
    with distributed.Client(cluster.scheduler_address) as client:
        runner.start()
        deadline = time.monotonic() + 60
        while not any(client.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        busy = next(addr for addr, tasks in client.processing().items() if tasks)
        os.kill(client.run(os.getpid, workers=[busy])[busy], signal.SIGKILL)
        runner.join(timeout=300)
    assert got, "the run did not finish after a worker was killed"
    _same_coresets(got[0], want)


def test_an_address_that_does_not_answer_is_a_clear_error(small_store):
    with pytest.raises(SchedulerError,
                       match=r"no Dask scheduler answers at tcp://127.0.0.1:9: nothing answered within \d+ s"):
        select_many(small_store, "moderate", [0.5], scheduler="tcp://127.0.0.1:9")


def test_unknown_scheduler_names_are_refused(small_store):
    with pytest.raises(SchedulerError, match="unknown scheduler 'dask'"):
        check_scheduler("dask")
    proc = subprocess.run([sys.executable, "-m", "actstore.cli", "select", str(small_store), "--method", "random",
                           "--rate", "0.5", "--scheduler", "spark"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown scheduler 'spark'" in proc.stderr
