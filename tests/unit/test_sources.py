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
    with pytest.raises(UsageError, match="layout .zip.: choose one of"):
        discover([tmp_path], "zip")


def test_each_path_once(tmp_path):
    touch(tmp_path / "ann" / "a.wav")
    assert len(discover([tmp_path, tmp_path, tmp_path / "ann" / "a.wav"])) == 1


def _unreadable(monkeypatch, d: Path) -> None:
    """Make listing ``d`` fail with EACCES (root reads anything, so its listing is refused
    the way it would be for any other user)."""
    import errno
    import os

    d.chmod(0)
    if os.geteuid() == 0:
        real = os.scandir

        def scandir(p="."):
            if Path(p) == d:
                raise PermissionError(errno.EACCES, "Permission denied", str(p))
            return real(p)

        monkeypatch.setattr(os, "scandir", scandir)


def test_what_is_in_the_way_becomes_a_failure_with_its_reason(tmp_path, monkeypatch):
    root = tmp_path / "src"
    good = touch(root / "ann" / "a.wav")
    (root / "ann" / "gone.wav").symlink_to(root / "ann" / "nowhere.wav")
    (root / "ann" / "self.wav").symlink_to(root / "ann" / "self.wav")
    (root / "bob").mkdir()
    (root / "bob" / "up").symlink_to(root)  # a folder that contains itself
    (root / "bob" / "alias.wav").symlink_to(good)  # a good link is followed
    (root / "ann" / "notes.txt").symlink_to(root / "missing.txt")  # not audio by name: ignored
    locked = root / "cara"
    touch(locked / "c.wav")
    _unreadable(monkeypatch, locked)
    try:
        items = discover([root])
    finally:
        locked.chmod(0o755)
    got = {str(i.path.relative_to(root)): (i.speaker, i.error) for i in items}
    assert got.pop("ann/a.wav") == ("ann", None)
    assert got.pop("bob/alias.wav") == ("bob", None)
    assert set(got) == {"ann/gone.wav", "ann/self.wav", "bob/up", "cara"}
    assert "dangling symbolic link" in got["ann/gone.wav"][1]
    assert "nowhere.wav" in got["ann/gone.wav"][1]
    assert "symbolic link loop" in got["ann/self.wav"][1]
    assert "symbolic link loop" in got["bob/up"][1]
    assert got["cara"][1] == "cannot list the folder (Permission denied)"


def test_linked_folders_are_followed(tmp_path):
    touch(tmp_path / "store" / "x.wav")
    (tmp_path / "src" / "dan").mkdir(parents=True)
    (tmp_path / "src" / "dan" / "takes").symlink_to(tmp_path / "store")
    items = discover([tmp_path / "src"])
    assert [(i.path.relative_to(tmp_path / "src").as_posix(), i.speaker, i.error)
            for i in items] == [("dan/takes/x.wav", "dan", None)]


def test_manifest_path_with_two_speakers_is_a_failure(tmp_path):
    (tmp_path / "m.csv").write_text(
        "path,speaker\na.wav,ann\nb.wav,bob\na.wav,cara\nb.wav,bob\nc.wav,\nc.wav,dan\n")
    items = discover([tmp_path / "m.csv"])
    got = [(i.path.name, i.speaker, i.error, i.reason) for i in items]
    assert got[1] == ("b.wav", "bob", None, "unreadable")
    assert [g[0] for g in got] == ["a.wav", "b.wav", "c.wav"]
    for name, labels in (("a.wav", "'ann', 'cara'"), ("c.wav", "(none), 'dan'")):
        item = next(g for g in got if g[0] == name)
        assert item[1] is None and item[3] == "conflicting_labels"
        assert item[2] == f"listed with different speakers ({labels}); give it once"


def test_bad_labels_are_failures_of_their_inputs_in_manifests_and_folders(tmp_path):
    import csv

    from tests.labels import BAD_LABELS, FOLDER_LABELS, message

    rows = [("ok.wav", "ann")] + [(f"f{k}.wav", lab) for k, lab in enumerate(BAD_LABELS)]
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "speaker"), *rows])
    items = {i.path.name: i for i in discover([tmp_path / "m.csv"])}
    assert items["ok.wav"].error is None and items["ok.wav"].speaker == "ann"
    for k, label in enumerate(BAD_LABELS):
        it = items[f"f{k}.wav"]
        assert (it.reason, it.error) == ("bad_label", message(label))
    tree = tmp_path / "tree"
    touch(tree / "ann" / "a.wav")
    for label in FOLDER_LABELS:
        touch(tree / label / "a.wav")
    items = {i.speaker: i for i in discover([tree])}
    assert items["ann"].error is None
    for label in FOLDER_LABELS:
        assert (items[label].reason, items[label].error) == ("bad_label", message(label))
