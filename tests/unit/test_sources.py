from pathlib import Path

import pytest

from speakerdb.errors import ManifestError, UsageError
from speakerdb.ingest.sources import detect_layout, discover


def touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_folders_layout(tmp_path):
    touch(tmp_path / "ann" / "a.wav")
    touch(tmp_path / "ann" / "sub" / "b.flac")
    touch(tmp_path / "bob" / "c.WAV")
    touch(tmp_path / "loose.wav")
    touch(tmp_path / "ann" / "notes.txt")
    touch(tmp_path / ".hidden" / "x.wav")
    items = discover([tmp_path])
    got = [(str(i.path.relative_to(tmp_path)), i.speaker, i.source) for i in items]
    assert got == [
        ("ann/a.wav", "ann", "folders"),
        ("ann/sub/b.flac", "ann", "folders"),
        ("bob/c.WAV", "bob", "folders"),
        ("loose.wav", None, "folders"),
    ]


def test_voxceleb_layout_detected(tmp_path):
    touch(tmp_path / "id10001" / "vidA" / "00001.wav")
    touch(tmp_path / "id10002" / "vidB" / "00002.m4a")
    assert detect_layout(tmp_path) == "voxceleb"
    items = discover([tmp_path])
    assert [(i.speaker, i.source) for i in items] == [("id10001", "voxceleb:vidA"),
                                                      ("id10002", "voxceleb:vidB")]


def test_voxceleb_layout_rejects_shallow_files(tmp_path):
    touch(tmp_path / "id10001" / "00001.wav")
    with pytest.raises(UsageError, match="VoxCeleb layout"):
        discover([tmp_path], "voxceleb")


def test_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("path,speaker,extra\na/1.wav,ann,x\nb/2.wav,,y\n")
    items = discover([tmp_path / "m.csv"])
    assert [(i.path, i.speaker) for i in items] == [(tmp_path / "a/1.wav", "ann"),
                                                    (tmp_path / "b/2.wav", None)]


def test_manifest_errors_name_file_and_line(tmp_path):
    (tmp_path / "m.csv").write_text("file,speaker\n")
    with pytest.raises(ManifestError, match=r"m.csv: line 1: no 'path' column"):
        discover([tmp_path / "m.csv"])
    (tmp_path / "n.csv").write_text("path,speaker\nok.wav,a\n,b\n")
    with pytest.raises(ManifestError, match=r"n.csv: line 3: empty path"):
        discover([tmp_path / "n.csv"])


def test_missing_source_and_bad_layout(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        discover([tmp_path / "nope"])
    with pytest.raises(UsageError, match="--layout"):
        discover([tmp_path], "zip")


def test_each_path_once(tmp_path):
    touch(tmp_path / "ann" / "a.wav")
    assert len(discover([tmp_path, tmp_path, tmp_path / "ann" / "a.wav"])) == 1
