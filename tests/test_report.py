"""The report: Table 1 with defined counts and the noise floor, the warnings a reader must see, files written
without touching others, bad results files as clear errors, and the page as a person sees it in Chromium."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys

import numpy as np
import pytest

from actstore.errors import ResultsError
from actstore.report import robustness_table, write_report
from actstore.report.browser import find_chromium, look_at
from actstore.report.narrative import warnings


@pytest.fixture
def results(experiment_run, tmp_path):
    """A copy of the session's experiment results folder (the report writes into it)."""
    folder = shutil.copytree(experiment_run.parent, tmp_path / "res")
    return folder / "results.csv"


def _rows(path):
    from actstore.evaluate.results import read_results

    return read_results(path)


def test_table1_counts_undefined_values_and_shows_the_floor(results):
    rows = _rows(results)
    first = next(r for r in rows if r["interpreter"] == "vebi" and r["selector"] == "random" and r["rate"] == 0.1)
    for r in rows:  # make one class's Φ undefined at one ρ, as VEBI does when R and R' share no layer
        if (r["interpreter"], r["selector"], r["rate"], r["class"]) == ("vebi", "random", 0.1, first["class"]):
            r["phi"], r["phi_layers"] = float("nan"), 0
    table = {(t["interpreter"], t["selector"], t["alpha"]): t for t in robustness_table(rows)}
    cell = table[("vebi", "random", 1.0)]
    assert (cell["defined"], cell["total"]) == (19, 20)  # 2 rates in 10-50 % x 10 classes, one undefined
    per_rate = [np.mean([r["phi"] for r in rows if (r["interpreter"], r["selector"], r["alpha"], r["rate"]) ==
                         ("vebi", "random", 1.0, rate) and np.isfinite(r["phi"])]) for rate in (0.1, 0.5)]
    assert cell["phi_mean"] == pytest.approx(np.mean(per_rate)) and cell["phi_std"] == pytest.approx(np.std(per_rate))
    assert table[("topic", "random", 1.0)]["floor"] > 0 and table[("ice", "random", 1.0)]["floor"] == 0
    said = warnings(rows)["undefined"]
    assert len(said) == 1 and "R and R' share no layer in 1 of 40 (class, coreset) pairs: random ρ = 0.1 (1/10)" \
        in said[0]


def test_flat_accuracy_and_unconverged_fits_are_said(results):
    rows = _rows(results)
    for r in rows:
        if r["interpreter"] == "ice":
            r["accuracy"] = 1.0
    said = warnings(rows)
    assert any(s.startswith("ICE on demo-vgg: the accuracy does not change with ρ") and "own class" in s
               for s in said["flat"])
    import re

    def unconverged(interp):
        found = [s for s in warnings(rows)["unconverged"] if s.startswith(f"{interp} on demo-vgg")]
        return int(re.search(r": (\d+) of", found[0]).group(1)) if found else 0

    before = unconverged("VEBI")
    fit = next(r for r in rows if r["interpreter"] == "vebi" and r["selector"] == "random" and r["converged"])
    for r in rows:  # one fit, every α row of it
        if all(r[k] == fit[k] for k in ("interpreter", "selector", "rate", "seed", "class")):
            r["converged"] = False
    assert unconverged("VEBI") == before + 1


def test_report_writes_its_files_and_keeps_everything_else(results, tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "figures").mkdir()
    (out / "figures" / "notes.md").write_text("also mine")
    page = write_report(results, out)
    assert (out / "keep.txt").read_text() == "mine" and (out / "figures" / "notes.md").read_text() == "also mine"
    assert page == out / "report.html" and (out / "table1.csv").is_file() and (out / "table1.md").is_file()
    assert {p.name for p in (out / "figures").glob("*.png")} >= {"phi_alpha1.png", "phi_alpha0.5.png",
                                                                 "accuracy.png", "fit_seconds.png", "vebi_units.png"}
    assert not [p for p in out.rglob(".*.tmp")]
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<link" not in text  # self-contained
    for needed in ("What was run", "What the numbers say", "Warnings", "Table 1", "noise floor", "Provenance"):
        assert needed in text


@pytest.mark.parametrize(("content", "message"), [
    ("model,interpreter,selector,rate,alpha,phi,accuracy\ndemo,ice,random,0.1,1,0.2,1\n", "made by an older actstore"),
    ("a,b\n1,2\n", "not an actstore results table"),
])
def test_old_or_foreign_results_files_are_refused(tmp_path, content, message):
    path = tmp_path / "results.csv"
    path.write_text(content)
    with pytest.raises(ResultsError, match=message):
        write_report(path)
    proc = subprocess.run([sys.executable, "-m", "actstore.cli", "report", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1


def test_a_truncated_results_file_is_an_error_naming_the_line(results):
    text = results.read_text()
    results.write_text(text[: len(text) - 40])  # cut mid-row
    with pytest.raises(ResultsError, match=r"line \d+ is cut short"):
        write_report(results)


@pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (Debian: apt-get install chromium)")
def test_the_page_as_a_person_sees_it_in_chromium(results, tmp_path):
    page = write_report(results)
    seen = look_at(page, width=1400, screenshot=tmp_path / "shot.png")
    assert seen["errors"] == [] and seen["title"].startswith("Coreset-based interpretation")
    assert len(seen["images"]) >= 8
    for img in seen["images"]:
        assert img["decoded"] and img["natural"] > 0, img
        assert img["spread"] > 30, img  # not a blank image
        assert img["shown"] >= 0.8 * img["natural"], img  # legible: no figure shrunk below 80 %
        assert img["caption"] > 40, img  # every figure says what it shows
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def _row(selector, rate, phi, floor=0.0, interpreter="topic"):
    return {"model": "m", "interpreter": interpreter, "selector": selector, "rate": rate, "seed": 0, "class": "c",
            "alpha": 1.0, "phi": phi, "phi_floor": floor, "phi_layers": 1, "units": 3.0}


def test_phi_below_the_floor_and_exact_zeros_are_said_in_words():
    """A Φ under the interpreter's own seed-to-seed variation, or exactly 0, must not read as a small, good number."""
    from actstore.report.narrative import findings
    from actstore.report.tables import robustness_table

    rows = [_row("full", 1.0, 0.0, floor=0.4), _row("random", 0.1, 0.2), _row("random", 0.5, 0.1)]
    text = " ".join(findings(rows, robustness_table(rows)))
    assert "0.5× the run-to-run variation — below the floor" in text and "within the interpreter's own" in text
    rows = [_row(s, r, phi, interpreter="vebi") for s, r, phi in
            (("full", 1.0, 0.0), ("random", 0.1, 0.3), ("random", 0.5, 0.0), ("kcenter", 0.5, 0.0))]
    text = " ".join(findings(rows, robustness_table(rows)))
    assert "2 of 3 Φ are exactly 0" in text and "below the floor" not in text
