"""A damaged store and a full disk: each says what happened in one line (never "internal
error"); check exits 1 on a damaged store; identify needs no free space."""

from __future__ import annotations

import errno
import os
import random
import shutil
import sqlite3

import pytest

from tests.synth import write_corpus


def _not_a_database(path):
    data = bytearray(path.read_bytes())
    data[:16] = b"garbage garbage!"
    path.write_bytes(bytes(data))


def _malformed(path):
    data = bytearray(path.read_bytes())
    rng = random.Random(1)
    for i in range(4096 * 3, len(data)):
        data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))


def _short_vector(path):
    with sqlite3.connect(path) as con:
        con.execute("UPDATE segments SET vector = x'0000803f' WHERE id = "
                    "(SELECT max(id) FROM segments)")


@pytest.mark.parametrize("damage", [_not_a_database, _malformed, _short_vector])
def test_a_damaged_store_is_named_and_check_exits_1(cli, built, home_copy, damage):
    damage(home_copy / "speakerdb.sqlite")
    doc = cli("check", "--home", home_copy, "--json", expect=1).json()
    assert doc["ok"] is False
    [problem] = doc["problems"]
    assert "the store is damaged" in problem and "backup" in problem
    text = cli("check", "--home", home_copy, expect=1).stdout
    assert "the store is damaged" in text and "check FAILED" in text
    if damage is _short_vector:  # the rows are readable; their vectors are not
        return
    for args in (["stats"], ["identify", built.files["spk00"][0]], ["speakers", "list"]):
        line = cli(*args, "--home", home_copy, "--json", expect=2).error_line()
        assert "the store is damaged" in line and "internal error" not in line


@pytest.fixture
def full_store(monkeypatch):
    """SQLite may not grow the store file past its size: 'database or disk is full'."""
    import speakerdb.store.engine as engine

    real = engine._sqlite_pragmas

    def pragmas(dbapi_conn, record):
        real(dbapi_conn, record)
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(engine, "_sqlite_pragmas", pragmas)


@pytest.fixture
def full_disk(monkeypatch):
    """Saving a file fails as on a full disk (fsync: ENOSPC)."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_store_says_the_disk_is_full(cli, home_copy, tmp_path, full_store):
    write_corpus(tmp_path / "more", speakers=3, utterances=20, first_speaker=10)
    line = cli("ingest", tmp_path / "more", "--home", home_copy, "-q", expect=2).error_line()
    assert "the disk is full" in line and str(home_copy) in line
    assert "internal error" not in line


def test_a_full_disk_during_an_index_save_says_so(cli, home_copy, tmp_path, full_disk):
    write_corpus(tmp_path / "more", speakers=1, first_speaker=10)
    line = cli("ingest", tmp_path / "more", "--home", home_copy, "-q", expect=2).error_line()
    assert "no space left on the device" in line and "internal error" not in line


def test_identify_needs_no_free_space(cli, home_copy, tmp_path, new_utterances, monkeypatch):
    saved = tmp_path / "saved-indexes"
    saved.mkdir()
    for p in [*home_copy.glob("vectors*"), *home_copy.glob("screen-*")]:
        shutil.copy2(p, saved / p.name)
    extra = write_corpus(tmp_path / "extra", speakers=1, first_speaker=9)
    cli("ingest", tmp_path / "extra", "--home", home_copy, "-q")
    for p in saved.iterdir():  # indexes behind the store: opening them means catching up
        shutil.copy2(p, home_copy / p.name)

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    res = cli("identify", extra["spk09"][0], *new_utterances.values(), "--home", home_copy,
              "--json").json()["results"]
    assert [r["speaker"] for r in res] == ["spk09", *new_utterances]
    assert not [p for p in home_copy.iterdir() if p.name.endswith(".tmp")]
    assert (home_copy / "vectors.json").read_bytes() == (saved / "vectors.json").read_bytes()
