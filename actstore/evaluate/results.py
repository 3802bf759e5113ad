"""The experiment's results table: its columns (what each number means), written atomically, read back
checked (a truncated, foreign or older table is an error that says what to do).

Columns, one row per model x interpreter x selector x ρ x seed x class x α:

- ``phi``: Φ (rad) between the full data's and the coreset's interpretation maps of the class on the
  validation data (paper Eq. 1); NaN where it is undefined (VEBI: R and R' share no layer; a map
  without variance). 0 on the full-data rows (Z against itself). ``phi_layers``: layers averaged.
- ``phi_floor``: Φ between two full-data fits that differ only in the interpreter's seed, the
  run-to-run variation a coreset's Φ should be compared with; 0 for deterministic interpreters
  (VEBI; ICE when its initialisation's SVD is exact), NaN when the floor was not asked for.
- ``accuracy``: top-1 through the head on the class's validation rows after the interpretation;
  ``accuracy_all_layers``: VEBI's units off in every ReLU call (NaN elsewhere).
- ``units``: VEBI's relevant units of the class, ICE's non-zero components, the topic model's kept
  topics. ``n_iter``, ``converged``: the fit behind the class's interpretation. ``mu``: the μ VEBI
  used (calibrated from ``units_per_class`` or given; NaN for other interpreters).
- ``fit_seconds``, ``bytes_read``: the fit's own cost; ``peak_rss_MB``: of the interpret call.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import ResultsError
from ..results_io import read_results_csv

__all__ = ["RESULT_COLUMNS", "NUMERIC_COLUMNS", "write_results", "read_results", "BASELINES"]

RESULT_COLUMNS = ["model", "interpreter", "selector", "source_model", "rate", "seed", "class", "alpha", "phi",
                  "phi_floor", "phi_layers", "accuracy", "accuracy_all_layers", "units", "n_iter", "converged", "mu",
                  "fit_seconds", "bytes_read", "peak_rss_MB", "train_store", "val_store", "features"]
NUMERIC_COLUMNS = ("rate", "seed", "alpha", "phi", "phi_floor", "phi_layers", "accuracy", "accuracy_all_layers",
                   "units", "n_iter", "mu", "fit_seconds", "bytes_read", "peak_rss_MB")
BASELINES = ("unmodified", "random-units")  # reference rows next to VEBI's (paper §4.2), not coresets


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as ``path`` (CSV), written atomically."""
    write_csv(path, rows, RESULT_COLUMNS, "the results table")


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str], what: str) -> None:
    """``rows`` as a CSV at ``path``, written atomically (:mod:`actstore.atomic`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue(), what=what, hint="rerun the experiment: it reuses every artifact")


def read_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The results CSV as dicts with numbers parsed; an error for a table that is not a whole one of ours
    (truncated or malformed: :func:`actstore.results_io.read_results_csv`; foreign; or from an older actstore)."""
    path = Path(path)
    rows = read_results_csv(path)
    header = list(rows[0])
    if "phi" not in header or "interpreter" not in header:
        raise ResultsError(f"{path}: not an actstore results table (no interpreter/phi columns)")
    missing = [c for c in RESULT_COLUMNS if c not in header]
    if missing:
        raise ResultsError(f"{path}: made by an older actstore (no column(s) {', '.join(missing)}); "
                           "rerun the experiment to get them (it reuses every artifact it can)")
    return [_parsed(path, i + 2, r) for i, r in enumerate(rows)]


def _parsed(path: Path, line: int, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(row)
    for k in NUMERIC_COLUMNS:
        try:
            out[k] = float(row[k]) if row[k] not in ("", "nan") else math.nan
        except ValueError:
            raise ResultsError(f"{path}: line {line}: {k} is '{row[k]}', not a number") from None
    out["converged"] = {"True": True, "False": False}.get(row["converged"])
    return out
