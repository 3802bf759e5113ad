"""Read a results CSV strictly: a file cut mid-row or otherwise malformed is an error naming the line.

``csv.DictReader`` quietly pads a short row with None and keeps a half-written last line, so a
results file cut by a full disk or a kill reads as fewer (or wrong) rows and the report comes out
empty or wrong with exit code 0. Here every row must have exactly the header's fields, the file
must end with a newline (the writer ends every row with one), and it must hold at least one row.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import ResultsFileError

__all__ = ["read_results_csv"]


def read_results_csv(path: str | os.PathLike[str], required: Sequence[str] = ()) -> list[dict[str, str]]:
    """The rows of the results CSV at ``path`` as dicts of strings, header order kept.

    Raises :class:`ResultsFileError` naming the file and line when the file is missing, not text,
    empty, truncated (no final newline, or a row cut short), has a row with too many fields, a
    repeated or empty column name, or lacks one of the ``required`` columns.
    """
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise ResultsFileError(f"{path}: the results file is empty; rerun the experiment to write it")
    if not text.endswith(("\n", "\r")):
        last = text.count("\n") + 1
        raise ResultsFileError(f"{path}: line {last} is cut short (the file does not end with a newline): the "
                               "file was truncated while being written; rerun the experiment (it resumes)")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        _check_header(path, header, required)
        rows = [_row(path, reader.line_num, header, fields) for fields in reader if fields]
    except csv.Error as exc:
        raise ResultsFileError(f"{path}: line {reader.line_num} is not valid CSV ({exc})") from None
    if not rows:
        raise ResultsFileError(f"{path}: the results file has a header but no rows; rerun the experiment")
    return rows


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such results file") from None
    except OSError as exc:
        raise ResultsFileError(f"{path}: cannot read the results file ({exc.strerror})") from None
    if b"\0" in data:
        raise ResultsFileError(f"{path}: not a text file (it holds NUL bytes: damaged or not a CSV)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ResultsFileError(f"{path}: line {line} is not UTF-8 text (damaged or not a CSV)") from None


def _check_header(path: Path, header: list[str], required: Sequence[str]) -> None:
    if any(not name.strip() for name in header):
        raise ResultsFileError(f"{path}: line 1 (the header) has an empty column name")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ResultsFileError(f"{path}: line 1 (the header) repeats column(s) {', '.join(repeated)}")
    missing = [name for name in required if name not in header]
    if missing:
        raise ResultsFileError(f"{path}: line 1 (the header) lacks column(s) {', '.join(missing)}")


def _row(path: Path, line: int, header: list[str], fields: list[str]) -> dict[str, str]:
    if len(fields) != len(header):
        what = "cut short" if len(fields) < len(header) else "too long"
        raise ResultsFileError(f"{path}: line {line} is {what}: {len(fields)} field(s) where the header has "
                               f"{len(header)}; the file is truncated or damaged: rerun the experiment")
    return dict(zip(header, fields, strict=True))
