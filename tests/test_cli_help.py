"""`--help` as a new user reads it, for every command: flags shown as flags, usage lines without `{...}`
placeholders, and a --catalog that says what it does for that verb."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from actstore.cli import app

RUNS = "Where runs register what they make, and where names are looked up"  # verbs that make artifacts
READS = "The catalog to look names up in"  # read-only verbs
LISTS = "The catalog to list"
CHANGES = "The catalog to change"
CATALOG_HELP = {
    "extract": RUNS, "select": RUNS, "interpret": RUNS, "experiment": RUNS, "demo": RUNS,
    "info": READS, "verify": READS, "report": READS, "catalog show": READS, "coreset show": READS,
    "coreset export": READS,
    "catalog ls": LISTS, "coreset ls": LISTS,
    "catalog rm": CHANGES, "catalog compact": CHANGES,
}


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, sub in getattr(group, "commands", {}).items():
        out += _commands(sub, (*prefix, name))
    return out


COMMANDS = _commands(typer.main.get_command(app))


def _help(args: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "160"}, prog_name="actstore")
    assert result.exit_code == 0, result.output
    return result.output


def _flat(text: str) -> str:
    """The help with its boxes and line wraps taken out, so phrases read as one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_every_command_is_checked() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"", "extract", "info", "verify", "select", "interpret", "experiment", "report", "demo", "catalog",
            "catalog ls", "catalog show", "catalog rm", "catalog compact", "coreset", "coreset ls", "coreset show",
            "coreset export"} <= names


@pytest.mark.parametrize("args", COMMANDS, ids=lambda c: " ".join(c) or "actstore")
def test_help_shows_flags_as_flags_and_plain_usage(args: tuple[str, ...]) -> None:
    text = _help(args)
    assert "<bool>" not in text and "[default: False]" not in text and "[default: True]" not in text, text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    assert "<list[" not in text, text  # a repeatable option shows the type of one value
    for line in text.splitlines():  # a flag's row has no value type after it
        assert not re.search(r"--(help|json|units|overwrite|delete|full|paper-rates|allow-nonfinite)\s+<", line), line


@pytest.mark.parametrize("args", [c for c in COMMANDS if "--catalog" in _help(c)], ids=" ".join)
def test_catalog_option_says_what_it_does_for_the_verb(args: tuple[str, ...]) -> None:
    text = _flat(_help(args))
    wording = CATALOG_HELP[" ".join(args)]  # a new verb with --catalog must say which kind it is
    assert wording in text, text
    if wording != RUNS:
        assert "register" not in text.split("--catalog", 1)[1].split("--", 1)[0], text


def test_usage_names_arguments_in_capitals() -> None:
    assert "Usage: actstore verify [OPTIONS] STORE" in _help(("verify",))
    assert "Usage: actstore info [OPTIONS] [STORE]" in _help(("info",))
    assert "Usage: actstore catalog show [OPTIONS] KIND NAME" in _help(("catalog", "show"))


def test_the_installed_command_shows_the_same_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "actstore.cli", "extract", "--help"], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "160"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: actstore extract [OPTIONS]" in proc.stdout and "<bool>" not in proc.stdout
    assert RUNS in _flat(proc.stdout)
