"""`check` compares every vector and each index file's checksum; `check --quick` samples;
opening a database never uses an index file whose size differs from its JSON."""

from __future__ import annotations

import json


def _overwrite_row(home, dim: int, segment: int, source: int) -> None:
    """Write the vector of segment ``source`` over that of ``segment`` in the saved file."""
    import faiss

    path = home / f"index-{dim}.faiss"
    index = faiss.read_index(str(path))
    old = index.reconstruct(int(segment)).astype("<f4").tobytes()
    new = index.reconstruct(int(source)).astype("<f4").tobytes()
    data = bytearray(path.read_bytes())
    at = data.find(old)
    assert at > 0 and data.find(old, at + 1) < 0
    data[at:at + len(new)] = new
    path.write_bytes(bytes(data))


def _segment_ids(home) -> list[int]:
    import sqlite3

    with sqlite3.connect(home / "speakerdb.sqlite") as con:
        return [r[0] for r in con.execute("SELECT id FROM segments ORDER BY id")]


def test_an_overwritten_row_fails_check_and_repair_fixes_it(cli, built, home_copy,
                                                            monkeypatch):
    import speakerdb.index.faiss_tier

    monkeypatch.setattr(speakerdb.index.faiss_tier, "_SAMPLE", 2)  # samples the first and last ids
    ids = _segment_ids(home_copy)
    victim = ids[5]
    _overwrite_row(home_copy, 256, victim, ids[0])

    quick = cli("check", "--home", home_copy, "--quick", "--json").json()
    assert quick["ok"] is True and quick["mode"] == "quick"  # the sample misses it

    doc = cli("check", "--home", home_copy, "--json", expect=1).json()
    assert doc["ok"] is False and doc["mode"] == "full" and doc["seconds"] >= 0
    assert f"index-256: vector of segment {victim} differs from the store" in doc["problems"]
    assert any(p.startswith("index-256: index-256.faiss does not match the checksum")
               for p in doc["problems"])
    text = cli("check", "--home", home_copy, expect=1).stdout
    assert "check FAILED" in text and "(full check, " in text

    doc = cli("check", "--home", home_copy, "--repair", "--json").json()
    assert doc["ok"] is True and doc["repaired"] is True
    assert cli("check", "--home", home_copy, "--json").json()["problems"] == []


def test_a_checksum_mismatch_is_a_problem(cli, home_copy):
    p = home_copy / "index-192.json"
    info = json.loads(p.read_text())
    info["sha256"] = "f" * 64
    p.write_text(json.dumps(info))
    doc = cli("check", "--home", home_copy, "--json", expect=1).json()
    assert doc["problems"] == ["index-192: index-192.faiss does not match the checksum in "
                               "index-192.json (sha256 ffffffffffff…)"]
    assert cli("check", "--home", home_copy, "--quick", "--json").json()["ok"] is True
    assert cli("check", "--home", home_copy, "--repair", "--json").json()["ok"] is True
    assert cli("check", "--home", home_copy, "--json").json()["problems"] == []


def test_jsons_without_checksum_are_noted_and_repair_records_them(cli, home_copy):
    for p in home_copy.glob("index-*.json"):
        info = json.loads(p.read_text())
        del info["sha256"]
        p.write_text(json.dumps(info))
    doc = cli("check", "--home", home_copy, "--json").json()
    assert doc["ok"] is True and doc["problems"] == []
    assert len(doc["notes"]) == 4 and all("no checksum recorded" in n for n in doc["notes"])
    assert "note: index-64: no checksum recorded" in cli("check", "--home", home_copy).stdout
    doc = cli("check", "--home", home_copy, "--repair", "--json").json()
    assert doc["ok"] is True and doc["repaired"] is True
    assert cli("check", "--home", home_copy, "--json").json()["notes"] == []
    assert all(json.loads(p.read_text())["sha256"] for p in home_copy.glob("index-*.json"))


def test_open_rebuilds_a_file_whose_size_differs_from_its_json(cli, built, home_copy):
    from speakerdb.api import SpeakerDB

    p = home_copy / "index-128.faiss"
    p.write_bytes(p.read_bytes() + b"\0" * 64)  # FAISS reads it as before: the tail is ignored
    with SpeakerDB.open(home_copy, catch_up=False) as db:
        assert db.indexes.open(catch_up=True) == "rebuild"
    info = json.loads((home_copy / "index-128.json").read_text())
    assert info["size_bytes"] == p.stat().st_size
    [r] = cli("identify", built.files["spk02"][1], "--home", home_copy,
              "--json").json()["results"]
    assert r["speaker"] == "spk02"
    assert cli("check", "--home", home_copy, "--json").json()["ok"] is True
