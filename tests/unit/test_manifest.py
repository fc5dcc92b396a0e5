"""One CSV manifest reader (``speakerdb.ingest.manifest``) for ingest and evaluation."""

from __future__ import annotations

import pytest

from speakerdb.errors import ManifestError, UsageError
from speakerdb.eval.trials import labelled_files
from speakerdb.ingest.manifest import read_manifest
from speakerdb.ingest.sources import discover


def _write(tmp_path, text: str, name: str = "m.csv", encoding: str = "utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def _both(p):
    """(ingest's (rel path, speaker) pairs, evaluation's) for the manifest ``p``."""
    ingest = sorted((i.path.relative_to(p.parent).as_posix(), i.speaker)
                    for i in discover([p], "manifest"))
    root, files = labelled_files(p)
    assert root == p.parent
    return ingest, sorted((f.path, f.speaker) for f in files)


def test_bom_quoted_comma_and_backslash_path(tmp_path):
    p = _write(tmp_path, "\ufeffpath,speaker,source\n"
                         'a\\one.wav,ann,"made, with a comma"\n'
                         '"b, c/two.wav", bob ,x\n\n', encoding="utf-8")
    m = read_manifest(p)
    assert m.columns == ["path", "speaker", "source"]
    assert [(r.line, r.rel, r.get("speaker"), r.get("source")) for r in m.rows] == [
        (2, "a/one.wav", "ann", "made, with a comma"), (3, "b, c/two.wav", "bob", "x")]
    assert m.rows[0].path == tmp_path / "a" / "one.wav"
    ingest, evaluation = _both(p)
    assert ingest == evaluation == [("a/one.wav", "ann"), ("b, c/two.wav", "bob")]


def test_paths_are_relative_to_the_manifest_folder(tmp_path):
    (tmp_path / "lists").mkdir()
    p = _write(tmp_path / "lists", "path,speaker\n./x/../y.wav,ann\n")
    [row] = read_manifest(p).rows
    assert row.path == tmp_path / "lists" / "x" / ".." / "y.wav"
    ingest, evaluation = _both(p)
    assert ingest == evaluation == [("x/../y.wav", "ann")]


@pytest.mark.parametrize("text, message", [
    ("file,speaker\na.wav,ann\n", r"m.csv: line 1: no 'path' column \(found: file, speaker\)"),
    ("path,speaker\na.wav,ann\n ,bob\n", r"m.csv: line 3: empty path"),
    ("path,speaker\na.wav,ann\nb.wav,bob,extra\n", r"m.csv: line 3: 3 fields, the header names 2"),
    ("path,speaker\na.wav,ann\n\"b\"x.wav,bob\n", r"m.csv: line 3: not a valid CSV file"),
    ("path,speaker\na.wav,ann\nb.wav,\"bob\n", r"m.csv: line 3: not a valid CSV file"),
])
def test_bad_manifests_name_file_and_line_in_both_callers(tmp_path, text, message):
    p = _write(tmp_path, text)
    for read in (read_manifest, lambda p: discover([p], "manifest"), labelled_files):
        with pytest.raises(ManifestError, match=message):
            read(p)


def test_missing_speaker_column_only_matters_to_evaluation(tmp_path):
    p = _write(tmp_path, "path\na.wav\n")
    assert [i.speaker for i in discover([p], "manifest")] == [None]
    with pytest.raises(ManifestError, match=r"m.csv: line 1: no 'speaker' column"):
        labelled_files(p)


def test_not_utf8(tmp_path):
    p = _write(tmp_path, "path,speaker\n\xe9.wav,ann\n", encoding="latin-1")
    with pytest.raises(ManifestError, match="m.csv: not a UTF-8 CSV file"):
        read_manifest(p)


def test_library_messages_name_no_cli_flags(tmp_path):
    with pytest.raises(UsageError) as e:
        discover([tmp_path], "nope")
    assert str(e.value).startswith("layout 'nope': choose one of") and "--" not in str(e.value)
    for call in (lambda: discover([tmp_path], "manifest"),
                 lambda: labelled_files(tmp_path, "manifest")):
        with pytest.raises(UsageError, match="a manifest layout needs a CSV file") as e:
            call()
        assert "--" not in str(e.value)
