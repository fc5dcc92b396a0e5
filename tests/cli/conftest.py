"""Fixtures for the command-line tests: an in-process runner that keeps stdout and stderr
apart, a tiny synthetic corpus and one database built from it through the CLI itself.

Every invocation passes ``--home`` explicitly; ``SPEAKERDB_HOME`` points at a directory that
does not exist so that a forgotten ``--home`` can never touch ``indexes/default``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speakerdb.cli.main import app
from tests.synth import RATE, voice, write_corpus

ERROR_PREFIX = "speakerdb: error: "


@dataclass
class Run:
    args: list[str]
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        """stdout must be exactly one JSON document (whitespace around it allowed)."""
        text = self.stdout.strip()
        assert text.startswith("{") and text.endswith("}"), f"not one JSON object: {self.stdout!r}"
        return json.loads(self.stdout)  # raises on a second document or any extra text

    def error_line(self) -> str:
        """stderr is exactly one line, ``speakerdb: error: ...``; returns it."""
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
        assert lines[0].startswith(ERROR_PREFIX), lines[0]
        return lines[0]


class Cli:
    def __init__(self, runner: CliRunner):
        self.runner = runner

    def __call__(self, *args, expect: int | None = 0) -> Run:
        argv = [str(a) for a in args]
        result = self.runner.invoke(app, argv)
        run = Run(argv, result.exit_code, result.stdout, result.stderr)
        exc = result.exception
        if exc is not None and not isinstance(exc, SystemExit):
            raise AssertionError(f"speakerdb {' '.join(argv)} raised {exc!r}") from exc
        assert "Traceback" not in run.stdout + run.stderr, run
        if expect is not None:
            assert run.exit_code == expect, (
                f"speakerdb {' '.join(argv)}: exit {run.exit_code}, expected {expect}\n"
                f"stdout: {run.stdout}\nstderr: {run.stderr}"
            )
        return run


@pytest.fixture(scope="session")
def no_home(tmp_path_factory) -> Path:
    """A path where no database exists (and none is ever created by the tests)."""
    return tmp_path_factory.mktemp("nothing") / "no-such-home"


@pytest.fixture(scope="session")
def cli(no_home) -> Cli:
    return Cli(CliRunner(env={"SPEAKERDB_HOME": str(no_home), "SPEAKERDB_DEBUG": None}))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    """4 synthetic speakers x 3 utterances of 1.5 s: (root, {speaker: [paths]})."""
    root = tmp_path_factory.mktemp("cli-corpus") / "corpus"
    return root, write_corpus(root)


@dataclass
class Built:
    home: Path
    corpus: Path
    files: dict[str, list[Path]]
    init_doc: dict
    ingest_doc: dict


@pytest.fixture(scope="session")
def built(tmp_path_factory, cli, corpus) -> Built:
    """A database made with ``speakerdb init`` + ``speakerdb ingest`` of the tiny corpus.

    Shared by many tests: never change it; copy it (``home_copy``) to tamper with it.
    """
    root, files = corpus
    home = tmp_path_factory.mktemp("cli-built") / "home"
    init_doc = cli("init", "--home", home, "--json").json()
    ingest_doc = cli("ingest", root, "--home", home, "--json", "-q").json()
    return Built(home, root, files, init_doc, ingest_doc)


@pytest.fixture
def home_copy(built, tmp_path) -> Path:
    """A private copy of the built database (SQLite file, indexes, home.json)."""
    dst = tmp_path / "home-copy"
    shutil.copytree(built.home, dst)
    return dst


@pytest.fixture(scope="session")
def new_utterances(tmp_path_factory) -> dict[str, Path]:
    """An unseen utterance (number 99) of each corpus speaker: {speaker: path}."""
    import soundfile as sf

    d = tmp_path_factory.mktemp("cli-new")
    out = {}
    for k in range(4):
        p = d / f"new-spk{k:02d}.wav"
        sf.write(p, voice(k, 99), RATE, subtype="PCM_16")
        out[f"spk{k:02d}"] = p
    return out


@pytest.fixture(scope="session")
def stranger(tmp_path_factory) -> Path:
    """A synthetic voice of a speaker that is not in the corpus (far from all of them)."""
    import soundfile as sf

    p = tmp_path_factory.mktemp("cli-stranger") / "stranger.wav"
    sf.write(p, voice(8, 0), RATE, subtype="PCM_16")
    return p
