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


def _parts_table() -> list[str]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("| part | what it holds | tested in |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def _listed_modules(rows: list[str]) -> set[str]:
    """Module paths named in the first cell of each row: a full path (``speakerdb/x/y.py``), or
    a folder (``speakerdb/x/``) followed by its files' names (``y.py``, ``z.py``)."""
    import re

    listed = set()
    for row in rows:
        folder = ""
        for token in re.findall(r"`([^`]+)`", row.split("|")[1]):
            if token.endswith("/"):
                folder = token
            elif token.endswith(".py"):
                listed.add(token if "/" in token else folder + token)
    return listed


def _modules_with_code() -> set[str]:
    """Every module of the package and the migrations environment; an ``__init__.py`` counts
    when it defines a function or a class."""
    import ast

    root = README.parent
    found = set()
    for path in [*sorted((root / "speakerdb").rglob("*.py")), root / "migrations" / "env.py"]:
        rel = path.relative_to(root).as_posix()
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if not any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in tree.body):
                continue
        found.add(rel)
    return found


def test_parts_table_lists_every_module():
    listed = _listed_modules(_parts_table())
    missing = sorted(_modules_with_code() - listed)
    assert not missing, f"README's table of parts does not list: {', '.join(missing)}"


def test_parts_table_names_only_what_exists():
    import re

    root = README.parent
    rows = _parts_table()
    gone = sorted(p for p in _listed_modules(rows) if not (root / p).is_file())
    assert not gone, f"README's table of parts lists missing modules: {', '.join(gone)}"
    for row in rows:
        for pattern in re.findall(r"`(tests/[^`]+)`", row.split("|")[3]):
            assert list(root.glob(pattern.rstrip("/") or ".")), \
                f"README's table of parts names tests that do not exist: {pattern}"
