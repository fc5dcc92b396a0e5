"""Every library error reaches the user the way it should, through both shells.

All of ``speakerdb`` is imported, every subclass of ``SpeakerDBError`` is collected, and each
one is raised inside the command line's error shell (``speakerdb.cli.shell.shell``) and inside a
route of the HTTP app (``speakerdb.server.app.create_app``). The CLI must exit with the class's
code after one stderr line and no traceback; the server must answer with the class's status and
the JSON error body. ``EXPECTED`` is the mapping: an error class missing from it fails the test,
so a new error is mapped (and its codes decided) when it is added.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import speakerdb
from speakerdb.errors import SpeakerDBError

# class name -> (CLI exit code, HTTP status)
EXPECTED = {
    "SpeakerDBError": (2, 400),
    "UsageError": (2, 400),
    "AudioError": (2, 400),
    "TooShortError": (2, 400),
    "SilentAudioError": (2, 400),
    "TooLongError": (2, 400),
    "ManifestError": (2, 400),
    "CheckpointFormatError": (2, 400),
    "ModelMismatchError": (2, 409),
    "DatabaseNotFound": (2, 404),
    "DatabaseExistsError": (2, 409),
    "StoreError": (2, 500),
    "ReadOnlyError": (2, 409),
    "DiskFullError": (2, 507),
    "DamagedStoreError": (2, 500),
    "StoreDriverMissing": (2, 500),
    "StoreUnavailable": (2, 503),
    "IndexOutOfDateError": (2, 500),
    "NotFound": (2, 404),
    "AmbiguousKey": (2, 409),
    "Busy": (3, 409),
    "WeightsUnavailable": (2, 400),
    "DownloadError": (2, 400),
    "UnknownEngineError": (2, 400),
    "EngineMissing": (2, 500),
    "VectorEngineMissing": (2, 500),
    "VectorEngineUnavailable": (2, 503),
}


def _import_everything() -> list[str]:
    """Import every module of the package (``__main__`` runs the CLI, so not that one); a module
    whose optional heavy dependency is missing is left out, and named."""
    missing = []
    for info in pkgutil.walk_packages(speakerdb.__path__, "speakerdb."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except ImportError as e:
            missing.append(f"{info.name} ({e})")
    return missing


def _subclasses(cls) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


_UNIMPORTABLE = _import_everything()
ERRORS = sorted({SpeakerDBError, *_subclasses(SpeakerDBError)}, key=lambda c: c.__name__)


def _instance(cls) -> SpeakerDBError:
    """An instance of ``cls`` whose message spans lines (the shells must make it one)."""
    params = [p for p in inspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.default is p.empty
              and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) == 2:  # AudioError and its kind: (where, message)
        return cls("corpus/a.wav", f"{cls.__name__} happened\n  in the second line")
    return cls(f"{cls.__name__} happened\n  in the second line")


def test_every_module_imports():
    if _UNIMPORTABLE:  # their errors would be missed: say which
        pytest.skip("not imported, optional dependency missing: " + "; ".join(_UNIMPORTABLE))


def test_collects_the_errors_of_every_module():
    names = {c.__name__ for c in ERRORS}
    assert {"SpeakerDBError", "UsageError", "AudioError", "Busy", "StoreError"} <= names


def test_every_library_error_lives_in_errors_module():
    from speakerdb import errors

    assert {c.__module__ for c in ERRORS} == {"speakerdb.errors"}
    assert sorted(c.__name__ for c in ERRORS) == sorted(errors.__all__)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_every_error_class_is_mapped(cls):
    assert cls.__name__ in EXPECTED, (
        f"{cls.__module__}.{cls.__name__} has no entry in EXPECTED: decide its exit code and "
        "HTTP status and add it")
    assert (cls.exit_code, cls.http_status) == EXPECTED[cls.__name__]


def test_main_classes_have_their_codes():
    by_name = {c.__name__: c for c in ERRORS}
    assert by_name["UsageError"].exit_code == 2 and by_name["UsageError"].http_status == 400
    assert by_name["Busy"].exit_code == 3 and by_name["Busy"].http_status == 409
    assert by_name["DatabaseNotFound"].http_status == 404
    assert by_name["NotFound"].http_status == 404
    assert by_name["ModelMismatchError"].http_status == 409
    assert by_name["StoreError"].http_status == 500
    assert by_name["DiskFullError"].http_status == 507
    assert by_name["TooShortError"].http_status == 400


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_cli_shell_gives_exit_code_and_one_line(cls, capsys, monkeypatch):
    import typer

    from speakerdb.cli.shell import shell

    monkeypatch.delenv("SPEAKERDB_DEBUG", raising=False)
    exc = _instance(cls)

    @shell
    def command():
        raise exc

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == EXPECTED[cls.__name__][0]
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == f"speakerdb: error: {exc}\n"
    assert "Traceback" not in out.err and "second line" in out.err
    assert out.err.count("\n") == 1


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from speakerdb.server.app import create_app

    app = create_app(None)
    by_name = {c.__name__: c for c in ERRORS}

    @app.get("/raise/{name}")
    def raise_error(name: str):
        raise _instance(by_name[name])

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_server_gives_status_and_json_body(cls, client):
    status = EXPECTED[cls.__name__][1]
    r = client.get(f"/raise/{cls.__name__}")
    assert r.status_code == status
    assert 400 <= status < 600
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"error": {"type": cls.__name__, "message": str(_instance(cls))}}
    assert "\n" not in r.json()["error"]["message"]
