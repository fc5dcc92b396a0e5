"""The README documents every command of the CLI, and every command has help text."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main

from speakerdb.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"
COMMANDS = typer.main.get_command(app).commands


def test_there_are_commands():
    assert {"init", "ingest", "identify", "verify", "embed", "check", "stats"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_in_readme(name):
    assert README.is_file(), f"{README} is missing"
    assert f"speakerdb {name}" in README.read_text(encoding="utf-8"), (
        f"README.md does not show `speakerdb {name}`"
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_has_help(name):
    cmd = COMMANDS[name]
    text = (cmd.help or "").strip()
    assert text, f"`speakerdb {name}` has no help text"
    assert (cmd.short_help or text.splitlines()[0]).strip()
    for param in cmd.params:
        if param.param_type_name == "option" and param.name != "help":
            assert (param.help or "").strip(), f"`speakerdb {name}` option {param.opts} has no help"


def test_ci_runs_the_readme_test_command():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    blocks = re.findall(r"```bash\n(.*?)\n```", (root / "README.md").read_text(), re.S)
    assert len(blocks) >= 2, "README opens with the main-job command and the test command"
    assert "pytest" in blocks[1]
    assert blocks[1].strip() in (root / ".ci" / "run").read_text()


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python API example, run as written (model `spectral`, a fresh home)."""
    import re

    root = Path(__file__).resolve().parents[1]
    speech = root.parent / "shared" / "data" / "speech-dev"
    if not (speech / "manifest.csv").exists():
        pytest.skip(f"real speech not found at {speech}")
    block = re.search(r"```python\n(.*?)\n```", README.read_text(), re.S).group(1)
    assert 'SpeakerDB.create("indexes/example"' in block
    monkeypatch.chdir(root)
    code = block.replace('"indexes/example"', repr(str(tmp_path / "example")))
    code = code.replace('"../shared/data/speech-dev"', repr(str(speech)))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the documented example
    assert scope["best"].speaker == "vctk-p225" and scope["same"].decision == "same"
    # the test model cannot tell 63 speakers apart at FPIR 1 %: its learned threshold says so
    assert scope["result"].threshold_source.startswith("learned fpir=0.01 for 63 speakers")
    assert scope["stats"].added == len((speech / "manifest.csv").read_text().splitlines()) - 1
