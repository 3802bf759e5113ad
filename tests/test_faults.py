"""Issue 11, part 3: expected faults are one line on stderr, exit code 2, and lose nothing.

Full disks and read-only folders are real: a small tmpfs mounted in a private mount namespace
(``unshare``), skipped with the reason where the machine does not allow one. Schedulers are loopback
listeners; Ctrl-C is a real SIGINT to a real extraction."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_cli import one_line_error, run
from test_no_stale import _extract_folder, image_folder

from actstore import save_coreset, select
from actstore.errors import DatasetError, ResultsFileError
from actstore.results_io import read_results_csv

pytestmark = pytest.mark.slow  # real processes, models or whole experiments: `-m "not slow"` skips them

EXTRACT = ["extract", "--model", "demo-resnet", "--weights", "random", "--block-rows", "16", "--batch-size", "8"]


# -- full disks and read-only folders -------------------------------------------------------------------
def _cli(*args: str) -> str:
    return " ".join([sys.executable, "-m", "actstore.cli", *(f"'{a}'" for a in args)])


def in_tmpfs(mount: Path, script: str, home: Path, *, size: str = "1m", fill: bool = False,
             read_only: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) with a ``size`` tmpfs on ``mount``, optionally filled up or read-only, in a private
    mount namespace: nothing is mounted outside the script."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1): cannot make a small tmpfs for the full-disk and read-only cases")
    mount.mkdir(parents=True, exist_ok=True)
    setup = f"mount -t tmpfs -o size={size} tmpfs '{mount}' || exit 97\n"
    if fill:
        setup += f"dd if=/dev/zero of='{mount}/fill' bs=4096 2>/dev/null\n"
    if read_only:
        setup += f"mount -o remount,ro '{mount}' || exit 97\n"
    env = {**os.environ, "ACTSTORE_HOME": str(home)}
    proc = subprocess.run(["unshare", "-Urm", "sh", "-c", setup + script], capture_output=True, text=True, env=env,
                          timeout=600)
    if proc.returncode == 97 or "unshare: " in proc.stderr:
        pytest.skip(f"this machine does not allow a private tmpfs mount: {proc.stderr.strip()[:200]}")
    return proc


def _errors(stderr: str) -> list[str]:
    assert "Traceback" not in stderr and "Event loop is closed" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_disk_full_during_extract_is_one_line_and_rerunning_resumes(tmp_path: Path, home: Path) -> None:
    """Before: a traceback (exit 1)."""
    disk = tmp_path / "disk"
    out = disk / "s.zarr"
    cmd = _cli(*EXTRACT, "--dataset", "synthetic:n=64,classes=4,size=64,seed=3", "--out", str(out))
    proc = in_tmpfs(disk, f"{cmd}; echo first=$?\nmount -o remount,size=64m '{disk}'\n{cmd}; echo second=$?\n"
                          f"{_cli('verify', str(out))}; echo verify=$?\n", home, size="1m")
    assert "first=2" in proc.stdout and "second=0" in proc.stdout and "verify=0" in proc.stdout, proc.stderr
    (line,) = _errors(proc.stderr)
    assert "No space left on device" in line and "rerun the same command: it resumes from the ledger" in line
    assert "resuming:" in proc.stderr.split(line)[1]


@pytest.fixture
def results_csv(tmp_path: Path) -> Path:
    """A small, valid results table (the columns the experiment writes)."""
    from actstore.evaluate.results import RESULT_COLUMNS

    path = tmp_path / "results" / "results.csv"
    path.parent.mkdir()
    rows = [",".join(RESULT_COLUMNS)]
    for rate, phi in ((0.1, 0.2), (0.2, 0.15), (0.5, 0.1), (1.0, 0.0)):
        values = {"model": "m", "interpreter": "ice", "selector": "random" if rate < 1 else "full", "rate": rate,
                  "seed": 0, "class": "c0", "alpha": 1.0, "phi": phi, "accuracy": 0.9}
        rows.append(",".join(str(values.get(c, "")) for c in RESULT_COLUMNS))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def catalogued(small_store: Path, home: Path) -> str:
    """A coreset of the small store, registered in this test's home catalog."""
    return save_coreset(select(small_store, "random", 0.5), None, home / "coresets")[0]


def test_disk_full_for_select_interpret_and_report(tmp_path: Path, home: Path, small_store: Path,
                                                    results_csv: Path) -> None:
    disk = tmp_path / "disk"
    script = "\n".join([
        _cli("select", str(small_store), "--method", "random", "--rate", "0.5", "--out-dir", f"{disk}/cs")
        + "; echo rc=$?",
        _cli("interpret", str(small_store), "--method", "vebi", "--param", "mu=0.05", "--out-dir", f"{disk}/f")
        + "; echo rc=$?",
        _cli("report", str(results_csv), "--out-dir", f"{disk}/r") + "; echo rc=$?",
        f"ls -A '{disk}'",
    ])
    proc = in_tmpfs(disk, script, home, size="256k", fill=True)
    assert proc.stdout.count("rc=2") == 3, (proc.stdout, proc.stderr)
    lines = _errors(proc.stderr)
    assert len(lines) == 3 and all("No space left on device" in line for line in lines), lines
    assert "coreset" in lines[0] and "features" in lines[1] and "report" in lines[2]
    listing = proc.stdout.split("rc=2")[-1].split()
    assert all(not name.startswith(".") for name in listing), listing  # no temporaries left behind


def test_read_only_outputs_and_catalog(tmp_path: Path, home: Path, small_store: Path, results_csv: Path,
                                       catalogued: str) -> None:
    """select, interpret, coreset export and report into a read-only folder, and a read-only catalog."""
    ro = tmp_path / "ro"
    script = "\n".join([
        _cli("select", str(small_store), "--method", "random", "--rate", "0.5", "--out-dir", f"{ro}/cs")
        + "; echo rc=$?",
        _cli("interpret", str(small_store), "--method", "vebi", "--param", "mu=0.05", "--out-dir", f"{ro}/f")
        + "; echo rc=$?",
        _cli("coreset", "export", catalogued, "--out", f"{ro}/ids.csv") + "; echo rc=$?",
        _cli("report", str(results_csv), "--out-dir", f"{ro}/r") + "; echo rc=$?",
        _cli("select", str(small_store), "--method", "random", "--rate", "0.5", "--catalog", f"{ro}/catalog.yaml")
        + "; echo rc=$?",
    ])
    proc = in_tmpfs(ro, script, home, read_only=True)
    assert proc.stdout.count("rc=2") == 5, (proc.stdout, proc.stderr)
    lines = _errors(proc.stderr)
    assert len(lines) == 5 and all("Read-only file system" in line for line in lines), lines
    assert "the catalog" in lines[4] and "writable --catalog" in lines[4]


# -- bad numbers, damaged stores, foreign schedulers -----------------------------------------------------
def test_negative_workers_and_jobs_are_refused(home: Path, small_store: Path) -> None:
    """Before: --workers -1 and --jobs -1 were tracebacks."""
    line = one_line_error(run(*EXTRACT, "--dataset", "synthetic:n=6,classes=2", "--workers", "-1", home=home,
                              check=None))
    assert "--workers must be >= 0" in line
    line = one_line_error(run("select", str(small_store), "--method", "random", "--rate", "0.5", "--jobs", "-1",
                              home=home, check=None))
    assert "--jobs must be >= 1" in line


@pytest.mark.parametrize("digests", [True, False], ids=["store", "store-without-digests"])
def test_a_damaged_or_missing_chunk_is_one_line_for_select_and_interpret(tmp_path: Path, home: Path,
                                                                          small_store: Path, digests: bool) -> None:
    """Before: a crc32c ValueError traceback, or the right line followed by "Event loop is closed" noise."""
    copy = tmp_path / "bad.zarr"
    shutil.copytree(small_store, copy)
    if not digests:
        shutil.rmtree(copy / "progress" / "digests")  # as written by an older actstore
    chunk = copy / "layers/layer3/pooled/c/2/0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    (copy / "layers/layer3/maps/c/1/0/0/0").unlink()
    for args, where in ((["select", str(copy), "--method", "moderate", "--rate", "0.5"], "pooled/c/2/0 is damaged"),
                        (["select", str(copy), "--method", "moderate", "--rate", "0.5", "--scheduler", "processes"],
                         "pooled/c/2/0 is damaged"),
                        (["interpret", str(copy), "--method", "ice", "--param", "n_components=2",
                          "--param", "max_iter=3"], "maps/c/1/0/0/0 is missing")):
        proc = run(*args, home=home, check=None)
        assert where in one_line_error(proc) and len(_errors(proc.stderr)) == 1


@pytest.fixture
def listener(request: pytest.FixtureRequest) -> Iterator[str]:
    """A loopback TCP listener that never answers ("silent") or answers HTTP ("http")."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if request.param == "http":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 64)

    threading.Thread(target=serve, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("listener", ["silent", "http"], indirect=True)
def test_a_scheduler_address_that_is_not_a_scheduler_is_one_line(listener: str, home: Path,
                                                                  small_store: Path) -> None:
    """Before: a silent listener hung for more than 60 s; an HTTP one raised "Unable to allocate 3.07 EiB"."""
    proc = run("select", str(small_store), "--method", "random", "--rate", "0.5", "--scheduler", listener,
               home=home, check=None)
    line = one_line_error(proc)
    assert f"no Dask scheduler answers at {listener}" in line and "EiB" not in proc.stderr


# -- results files, memory URLs, Ctrl-C, corrupt images -----------------------------------------------
def test_truncated_or_malformed_results_are_errors_naming_the_line(tmp_path: Path, results_csv: Path) -> None:
    """Before: a results.csv cut mid-row gave exit 0 and an empty Table 1."""
    rows = read_results_csv(results_csv, required=["model", "phi"])
    assert len(rows) == 4 and rows[0]["model"] == "m" and rows[0]["phi"] == "0.2"
    text = results_csv.read_text()
    lines = text.split("\n")
    width = lines[0].count(",") + 1
    short, long = list(lines), list(lines)
    short[2] = short[2].rsplit(",", 1)[0]
    long[2] = long[2] + ",x,y"
    cases = {
        "cut": (text[: text.rindex("\n", 0, -1) + 12], r"line 5 is cut short \(the file does not end with a newline"),
        "short": ("\n".join(short), rf"line 3 is cut short: {width - 1} field\(s\) where the header has {width}"),
        "long": ("\n".join(long), r"line 3 is too long"),
        "header": (text.split("\n")[0] + "\n", "has a header but no rows"),
        "empty": ("", "is empty"),
        "quote": (text.replace("ice", '"ice', 1), "not valid CSV|cut short"),
        "nul": (text.replace("ice", "i\0e", 1), "NUL bytes"),
    }
    for name, (content, message) in cases.items():
        bad = tmp_path / f"{name}.csv"
        bad.write_text(content)
        with pytest.raises(ResultsFileError, match=message):
            read_results_csv(bad)
    with pytest.raises(ResultsFileError, match="lacks column"):
        read_results_csv(results_csv, required=["nope"])


def test_memory_urls_are_refused_on_the_command_line(home: Path) -> None:
    """Before: a memory:// store or catalog 'succeeded' and vanished when the process exited."""
    for extra in (["--out", "memory://bucket/s.zarr"], ["--catalog", "memory://bucket/catalog.yaml"]):
        line = one_line_error(run(*EXTRACT, "--dataset", "synthetic:n=6,classes=2", *extra, home=home, check=None))
        assert "memory://" in line and "vanish" in line


def test_ctrl_c_during_extract_says_how_to_resume(tmp_path: Path, home: Path) -> None:
    """Before: a blank line and exit 130."""
    out = tmp_path / "s.zarr"
    env = {**os.environ, "ACTSTORE_HOME": str(home)}
    dataset = "synthetic:n=160,classes=4,size=64,seed=3"
    proc = subprocess.Popen([sys.executable, "-m", "actstore.cli", *EXTRACT, "--dataset", dataset, "--out", str(out)],
                            env=env, stderr=subprocess.PIPE, text=True)
    ledger = out.with_name("s.zarr.partial") / "progress" / "done" / "c"
    import time

    deadline = time.time() + 240
    while not (ledger.is_dir() and len(list(ledger.iterdir())) >= 2) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the extraction finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.rstrip().splitlines()[-1].startswith("interrupted: rerun the same command to resume")
    assert "Traceback" not in err and not out.exists()
    again = run(*EXTRACT, "--dataset", dataset, "--out", str(out), home=home)
    assert "resuming:" in again.stderr


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])  # a truncated BMP


@pytest.mark.parametrize("recovery", ["fix", "remove"])
def test_the_documented_recovery_from_a_corrupt_image_keeps_the_finished_blocks(tmp_path: Path,
                                                                                 recovery: str) -> None:
    """Before: removing the file led to "unfinished extraction with other provenance; pass --overwrite"."""
    root = image_folder(tmp_path / "imgs")
    good = (root / "dog" / "2.bmp").read_bytes()
    _corrupt(root / "dog" / "2.bmp")
    out = tmp_path / "s.zarr"
    with pytest.raises(DatasetError, match=r"cannot decode image .*dog/2.bmp .*fix or remove the file and rerun"):
        _extract_folder(root, tmp_path, out=out)
    if recovery == "fix":
        (root / "dog" / "2.bmp").write_bytes(good)
    else:
        (root / "dog" / "2.bmp").unlink()
    resumed = _extract_folder(root, tmp_path, out=out)
    assert resumed.resumed_blocks == 3 and resumed.written_blocks == 1  # only the block of the changed file
    clean = _extract_folder(root, tmp_path, out=tmp_path / "clean.zarr", overwrite=True)
    for name in ("samples/ids", "samples/labels", "samples/logits", "layers/features.13/maps"):
        np.testing.assert_array_equal(resumed.store.array(name)[:], clean.store.array(name)[:], err_msg=name)
