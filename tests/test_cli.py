"""The command line as users meet it: real subprocesses, stdout data, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, home: Path, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACTSTORE_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "actstore.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr  # progress lines may come before
    assert "Traceback" not in proc.stderr
    return errors[0]


@pytest.mark.slow
def test_extract_info_verify_catalog_roundtrip(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "s.zarr"
    first = run("extract", "--model", "demo-vgg", "--dataset", "synthetic:n=12,classes=3", "--out", str(out),
                "--weights", "random", "--units", "--json", home=home)
    data = json.loads(first.stdout)
    assert data["path"] == str(out) and not data["reused"]
    second = run("extract", "--model", "demo-vgg", "--dataset", "synthetic:n=12,classes=3", "--out", str(out),
                 "--weights", "random", "--units", home=home)
    assert "reusing the finished store" in second.stderr and second.stdout.strip() == str(out)

    info = json.loads(run("info", str(out), "--json", home=home).stdout)
    assert info["rows"] == 12 and info["classes"] == {"class0": 4, "class1": 4, "class2": 4}
    assert info["arrays"]["layers/features.13/maps"]["shape"] == [12, 8, 8, 64]
    assert info["provenance"]["model"]["random_init"] is True
    text = run("info", str(out), home=home).stdout
    assert "features.13" in text and "fingerprint" in text

    assert "ok:" in run("verify", str(out), home=home).stdout
    (out / "samples/logits/c/0/0").write_bytes(b"garbage")
    bad = run("verify", str(out), home=home, check=2)
    assert "samples/logits/c/0/0: unreadable chunk" in bad.stderr

    listing = json.loads(run("catalog", "ls", "stores", "--json", home=home).stdout)
    names = [e["name"] for e in listing["entries"]]
    assert len(names) == 1
    shown = json.loads(run("catalog", "show", "stores", names[0], "--json", home=home).stdout)
    assert shown["path"] == str(out) and shown["fingerprint"]
    models = run("catalog", "ls", "models", home=home).stdout
    assert "demo-resnet" in models and "resnet50" in models
    run("catalog", "rm", "stores", names[0], "--delete", home=home)
    assert not out.exists()


def test_info_model_lists_layers(home: Path) -> None:
    text = run("info", "--model", "demo-resnet", home=home).stdout
    assert "default layer layer3" in text and "layer3.1.relu_1" in text and "VEBI units 464" in text


@pytest.mark.parametrize(("args", "message"), [
    (["extract", "--model", "resnet19", "--dataset", "digits"], "unknown model 'resnet19'"),
    (["extract", "--model", "demo-vgg", "--dataset", "digits", "--layer", "conv9", "--weights", "random"],
     "no layer 'conv9'"),
    (["extract", "--model", "demo-vgg", "--dataset", "mnist"], "unknown dataset 'mnist'"),  # before training
    (["extract", "--model", "demo-vgg", "--dataset", "digits", "--weights", "/nope/w.pt"], "does not exist"),
    (["extract", "--model", "demo-vgg", "--dataset", "digits", "--dtype", "int8", "--weights", "random"],
     "--dtype must be float16 or float32"),
    (["info", "/nonexistent/store.zarr"], "no store at '/nonexistent/store.zarr': no such file or folder"),
    (["info", "/tmp"], "no activation store here"),
    (["info"], "give either a STORE path or --model NAME"),
    (["catalog", "show", "stores", "nope"], "no store named 'nope'"),
])
def test_bad_input_gives_one_line_and_exit_2(args: list[str], message: str, home: Path) -> None:
    assert message in one_line_error(run(*args, home=home, check=None))


@pytest.mark.slow
def test_existing_store_with_other_provenance_is_refused(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "s.zarr"
    base = ["extract", "--dataset", "synthetic:n=6,classes=2", "--out", str(out), "--weights", "random"]
    run(*base, "--model", "demo-vgg", home=home)
    line = one_line_error(run(*base, "--model", "demo-resnet", home=home, check=None))
    assert "already holds a store with other provenance" in line and "--overwrite" in line
    run(*base, "--model", "demo-resnet", "--overwrite", home=home)
    info = json.loads(run("info", str(out), "--json", home=home).stdout)
    assert info["provenance"]["model"]["builder"] == "demo-resnet"


def test_malformed_catalog_is_a_clear_error(tmp_path: Path, home: Path) -> None:
    bad = tmp_path / "catalog.yaml"
    bad.write_text("stores:\n  s: {path: x.zarr, fingerprint: f, extra: 1}\n")
    line = one_line_error(run("catalog", "ls", "--catalog", str(bad), home=home, check=None))
    assert "stores.s: unknown key(s) ['extra']" in line


def test_read_only_output_location(tmp_path: Path, home: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    target = ro / "s.zarr"
    if os.access(ro, os.W_OK):  # root ignores permission bits: use a filesystem that refuses writes
        target = Path("/sys/actstore-test/s.zarr")
        if os.access("/sys", os.W_OK) and target.parent.exists():
            pytest.skip("no read-only location available")
    proc = run("extract", "--model", "demo-vgg", "--dataset", "synthetic:n=4,classes=2", "--out", str(target),
               "--weights", "random", home=home, check=None)
    line = one_line_error(proc)
    assert "cannot write the store" in line and "writable --out" in line
    ro.chmod(stat.S_IRWXU)


def test_help_lists_the_verbs(home: Path) -> None:
    text = run("--help", home=home).stdout
    for verb in ("extract", "info", "verify", "catalog", "demo"):
        assert verb in text
