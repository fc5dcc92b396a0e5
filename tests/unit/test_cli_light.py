"""The command line stays light: importing it loads no heavy library, ``--help`` is quick,
and it runs as ``python -m speakerdb.cli.main``, ``python cli.py`` and the ``speakerdb`` script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ["torch", "faiss", "sqlalchemy", "numpy", "soundfile", "soxr", "av", "alembic", "tqdm"]
COMMANDS = ["init", "ingest", "identify", "verify", "embed", "check", "stats"]


def _python(*args, timeout=60):
    env = {k: v for k, v in os.environ.items() if k != "SPEAKERDB_DEBUG"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("module", ["speakerdb", "speakerdb.cli.main"])
def test_import_loads_no_heavy_module(module):
    code = (f"import json, sys, {module}\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    p = _python("-c", code)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []


def test_help_loads_no_heavy_module():
    code = ("import json, sys\n"
            "from speakerdb.cli.main import app\n"
            "try:\n"
            "    app(['--help'])\n"
            "except SystemExit:\n"
            "    pass\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)")
    p = _python("-c", code)
    assert json.loads(p.stderr.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("entry", [["-m", "speakerdb.cli.main"], ["cli.py"]])
def test_help_runs(entry):
    p = _python(*entry, "--help")
    assert p.returncode == 0, p.stderr
    assert "Usage:" in p.stdout
    for c in COMMANDS:
        assert c in p.stdout
    assert "Traceback" not in p.stderr


def test_no_arguments_shows_help():
    p = _python("cli.py")
    assert "Usage:" in p.stdout + p.stderr
    assert "Traceback" not in p.stderr


def test_console_script():
    exe = shutil.which("speakerdb", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the speakerdb console script is not installed next to this Python")
    p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "identify" in p.stdout


def test_usage_errors_are_one_line_from_the_console_script(tmp_path):
    import subprocess
    import sys

    for args in (["identify"], ["identify", "--top-k", "0", "x.wav"], ["nosuch"]):
        out = subprocess.run([sys.executable, "-m", "speakerdb", *args], capture_output=True,
                             text=True, cwd=tmp_path)
        assert out.returncode == 2, args
        assert out.stdout == ""
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("speakerdb: error: speakerdb"), out.stderr


def test_json_output_never_holds_nan_or_infinity(capsys):
    import math

    import numpy as np

    from speakerdb.cli.shell import print_json

    print_json({"a": float("nan"), "b": [1.5, float("inf"), {"c": np.float64(-np.inf)}],
                 "d": (np.float32(2.0), "nan"), "e": None})

    def refuse(name):
        raise AssertionError(f"{name} in JSON output")

    doc = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert doc == {"a": None, "b": [1.5, None, {"c": None}], "d": [2.0, "nan"], "e": None}
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in doc["b"])
