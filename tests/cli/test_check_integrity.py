"""`check` compares every vector and the checksums of the saved rows; `check --quick` samples;
opening a database never maps a vector file shorter than ``vectors.json`` says, and rebuilds a
home saved in the layout before ``vectors.json``."""

from __future__ import annotations

import json
import shutil

import numpy as np

WIDTH = 256  # floats per row of vectors-<epoch>.f32


def _info(home) -> dict:
    return json.loads((home / "vectors.json").read_text())


def _rows(home) -> tuple[str, list[int]]:
    """(name of the rows file, the segment id of each row in order)."""
    epoch = _info(home)["matrix"]["epoch"]
    ids = np.fromfile(home / f"vectors-{epoch}.ids", dtype="<i8")
    return f"vectors-{epoch}.f32", [int(i) for i in ids]


def _overwrite_row(home, segment: int, source: int) -> str:
    """Write the saved row of segment ``source`` over that of ``segment`` (in place); returns
    the checksum line of the part that holds it."""
    name, order = _rows(home)
    row, src = order.index(segment), order.index(source)
    path = home / name
    data = bytearray(path.read_bytes())
    size = WIDTH * 4
    assert data[row * size:(row + 1) * size] != data[src * size:(src + 1) * size]
    data[row * size:(row + 1) * size] = data[src * size:(src + 1) * size]
    path.write_bytes(bytes(data))
    [(a, b)] = [(a, b) for a, b, _ in _info(home)["matrix"]["parts"] if a <= row < b]
    return f"vectors: {name}: rows {a}-{b - 1} do not match their recorded checksum"


def _segment_ids(home) -> list[int]:
    import sqlite3

    with sqlite3.connect(home / "speakerdb.sqlite") as con:
        return [r[0] for r in con.execute("SELECT id FROM segments ORDER BY id")]


def test_an_overwritten_row_fails_check_and_repair_fixes_it(cli, built, home_copy,
                                                            monkeypatch):
    import speakerdb.index.faiss_tier

    ids = _segment_ids(home_copy)
    assert _rows(home_copy)[1] == ids  # rows in the order ingest added them
    victim = ids[5]
    checksum = _overwrite_row(home_copy, victim, ids[0])
    differs = f"vectors: vector of segment {victim} differs from the store"

    monkeypatch.setattr(speakerdb.index.faiss_tier, "_SAMPLE", 2)  # the first and last ids
    quick = cli("check", "--home", home_copy, "--quick", "--json").json()
    assert quick["ok"] is True and quick["mode"] == "quick"  # the sample misses it
    monkeypatch.setattr(speakerdb.index.faiss_tier, "_SAMPLE", len(ids))  # samples every id
    quick = cli("check", "--home", home_copy, "--quick", "--json", expect=1).json()
    assert quick["problems"] == [differs]  # no file is hashed by a quick check

    doc = cli("check", "--home", home_copy, "--json", expect=1).json()
    assert doc["ok"] is False and doc["mode"] == "full" and doc["seconds"] >= 0
    assert doc["problems"] == [differs, checksum] and doc["notes"] == []
    text = cli("check", "--home", home_copy, expect=1).stdout
    assert f"problem: {differs}\nproblem: {checksum}\ncheck FAILED" in text
    assert "(full check, " in text

    doc = cli("check", "--home", home_copy, "--repair", "--json").json()
    assert doc["ok"] is True and doc["repaired"] is True
    assert doc["problems"] == [differs, checksum]  # what was found, before the repair
    assert cli("check", "--home", home_copy, "--json").json()["problems"] == []


def test_a_checksum_mismatch_is_a_problem(cli, home_copy):
    p = home_copy / "vectors.json"
    info = json.loads(p.read_text())
    name, order = _rows(home_copy)
    [[a, b, _]] = info["matrix"]["parts"]
    assert (a, b) == (0, len(order))
    info["matrix"]["parts"][0][2] = "f" * 64
    p.write_text(json.dumps(info))
    doc = cli("check", "--home", home_copy, "--json", expect=1).json()
    assert doc["problems"] == [f"vectors: {name}: rows 0-{b - 1} do not match their recorded "
                               "checksum"]
    assert cli("check", "--home", home_copy, "--quick", "--json").json()["ok"] is True
    assert cli("check", "--home", home_copy, "--repair", "--json").json()["ok"] is True
    assert cli("check", "--home", home_copy, "--json").json()["problems"] == []
    assert _info(home_copy)["matrix"]["parts"][0][2] != "f" * 64


def _to_legacy_layout(home) -> None:
    """Make ``home`` look saved before vectors.json: per-dimension index files only."""
    for p in home.glob("vectors*"):
        p.unlink()
    (home / "index-64.json").write_text(json.dumps({"dim": 64, "ntotal": 12, "sha256": ""}))
    (home / "index-64.faiss").write_bytes(b"IxF2" + b"\0" * 60)


def _vector_files(home) -> list[str]:
    return sorted(p.name for p in home.iterdir() if p.name.startswith(("index-", "vectors")))


def test_a_home_in_the_layout_before_vectors_json_is_rebuilt(cli, built, home_copy, tmp_path):
    from speakerdb.api import SpeakerDB

    _to_legacy_layout(home_copy)
    other = tmp_path / "other-copy"
    shutil.copytree(home_copy, other)
    missing = f"{home_copy / 'vectors.json'}: description of the vectors is missing"

    doc = cli("check", "--home", home_copy, "--json", expect=1).json()
    assert doc["ok"] is False and doc["problems"] == [missing] and doc["notes"] == []
    assert f"problem: {missing}\ncheck FAILED" in cli("check", "--home", home_copy,
                                                      expect=1).stdout
    doc = cli("check", "--home", home_copy, "--repair", "--json").json()
    assert doc["ok"] is True and doc["repaired"] is True and doc["problems"] == [missing]
    assert _vector_files(home_copy) == ["vectors-1.f32", "vectors-1.ids", "vectors-1.norms",
                                        "vectors.json"]
    assert cli("check", "--home", home_copy, "--json").json()["problems"] == []

    with SpeakerDB.open(other, catch_up=False) as db:  # opening rebuilds it
        assert db.indexes.open(catch_up=True) == "rebuild"
    assert _vector_files(other) == ["vectors-1.f32", "vectors-1.ids", "vectors-1.norms",
                                    "vectors.json"]
    assert _info(other)["ntotal"] == len(_segment_ids(other))
    [r] = cli("identify", built.files["spk02"][1], "--home", other, "--json").json()["results"]
    assert r["speaker"] == "spk02"
    assert cli("check", "--home", other, "--json").json()["ok"] is True


def test_open_rebuilds_a_file_shorter_than_its_description(cli, built, home_copy):
    from speakerdb.api import SpeakerDB

    name, order = _rows(home_copy)
    p = home_copy / name
    need = len(order) * WIDTH * 4
    assert p.stat().st_size == need
    p.write_bytes(p.read_bytes()[:need - WIDTH * 4])  # one row short
    doc = cli("check", "--home", home_copy, "--json", expect=1).json()
    assert doc["problems"] == [f"{p}: {need - WIDTH * 4} bytes, its description needs {need}"]

    epoch = _info(home_copy)["matrix"]["epoch"]
    with SpeakerDB.open(home_copy, catch_up=False) as db:
        assert db.indexes.open(catch_up=True) == "rebuild"
    info = _info(home_copy)
    assert info["matrix"]["epoch"] == epoch + 1 and info["matrix"]["rows"] == len(order)
    assert (home_copy / f"vectors-{epoch + 1}.f32").stat().st_size == need
    assert not p.exists()  # the files of the short save are removed
    [r] = cli("identify", built.files["spk02"][1], "--home", home_copy,
              "--json").json()["results"]
    assert r["speaker"] == "spk02"
    assert cli("check", "--home", home_copy, "--json").json()["ok"] is True
