"""Library errors name parameters in library terms (``agg_k``), never command-line flags
(``--agg-k``): HTTP clients read them too. The CLI shell writes the flags when it prints."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from speakerdb.cli.shell import cli_message, flag
from speakerdb.errors import SpeakerDBError, UsageError

ROOT = Path(__file__).resolve().parents[2] / "speakerdb"
SHELLS = ("cli", "server")  # these speak in flags and fields on purpose
PENDING: set[str] = set()  # modules not converted yet
FLAG = re.compile(r"(?<![\w-])--[a-z]")
# a whole command suggested in backticks may carry its flags
COMMAND = re.compile(r"`(?:speakerdb [^`]*|check --repair)`")


def _text(node: ast.AST) -> str:
    """The literal text of the strings in ``node``, f-string fields as ``{}``."""
    parts = []
    for n in ast.walk(node):
        if isinstance(n, ast.JoinedStr):
            parts.append("".join(v.value if isinstance(v, ast.Constant) else "{}"
                                 for v in n.values))
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            parts.append(n.value)
    return " ".join(parts)


def _errors(tree: ast.AST):
    """Every raise statement and every ``...Error(...)`` built to be raised or returned."""
    for n in ast.walk(tree):
        if isinstance(n, ast.Raise) and n.exc is not None:
            yield n
        elif isinstance(n, ast.Call):
            name = getattr(n.func, "id", getattr(n.func, "attr", ""))
            if name.endswith(("Error", "NotFound")):
                yield n


def flagged(source: str) -> list[str]:
    """The messages in ``source``'s errors that name a command-line flag."""
    out = []
    for node in _errors(ast.parse(source)):
        text = COMMAND.sub("", _text(node))
        if FLAG.search(text):
            out.append(f"line {node.lineno}: {text}")
    return out


def test_library_errors_name_no_cli_flags():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.split("/")[0] in SHELLS or rel in PENDING:
            continue
        found += [f"speakerdb/{rel}: {f}" for f in flagged(path.read_text())]
    assert not found, "\n".join(found)


def test_the_check_catches_a_flag_and_allows_command_suggestions():
    assert flagged('raise UsageError(f"--agg-k must be positive, got {k}")')
    assert flagged('return AudioError(name, "too long (--max-duration)")')
    assert not flagged('raise UsageError(f"agg_k must be positive, got {k}")')
    assert not flagged('raise DatabaseNotFound(f"{h}: run `speakerdb init --home {h}`")')
    assert not flagged('raise StoreError("damaged: `check --repair` records it")')


@pytest.mark.parametrize("error, printed", [
    (UsageError("agg_k must be a positive integer, got 0", option="agg_k"),
     "--agg-k must be a positive integer, got 0"),
    (UsageError("device cuda: no CUDA GPU is available (use device cpu)", option="device"),
     "--device cuda: no CUDA GPU is available (use --device cpu)"),
    (UsageError("score_norm asnorm without a database needs cohort FILE", option="score_norm",
                also=("cohort",)), "--score-norm asnorm without a database needs --cohort FILE"),
    (UsageError("cohort_top must be in 1..4 (the cohort size), got 9", option="cohort_top"),
     "--cohort-top must be in 1..4 (the cohort size), got 9"),
    (UsageError("local applies to campplus only; give a release file as model",
                option="local", also=("model",)),
     "--from applies to campplus only; give a release file as --model"),
    (UsageError("min_margin must be a finite number, got nan", option="min_margin"),
     "--margin must be a finite number, got nan"),
    (UsageError("shortlist sizes must shrink: got 10 20 5", option="shortlist"),
     "shortlist sizes must shrink: got 10 20 5"),
    (SpeakerDBError("agg_k is not rewritten without an option"),
     "agg_k is not rewritten without an option"),
])
def test_the_cli_prints_library_parameters_as_its_flags(error, printed):
    assert cli_message(error) == printed


def test_flags_of_library_parameters():
    assert flag("db_url") == "--db-url" and flag("local") == "--from"
    assert flag("shortlist") is None
