"""The SpeakerDB facade: create/open, model binding, --db-url, catch-up on open."""

import json

import numpy as np
import pytest

from speakerdb.api import SpeakerDB
from speakerdb.audio import Waveform
from speakerdb.errors import DatabaseNotFound, ModelMismatchError
from speakerdb.model.spectral import SpectralEmbedder
from tests.synth import voice, write_corpus


def test_open_missing_database(tmp_path):
    with pytest.raises(DatabaseNotFound, match="no speakerdb database"):
        SpeakerDB.open(tmp_path / "nothing")


def test_db_url_elsewhere_is_remembered(tmp_path, tiny_corpus):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    with SpeakerDB.create(tmp_path / "home", db_url=url) as db:
        db.ingest([tiny_corpus])
    assert (tmp_path / "elsewhere.sqlite").exists()
    assert not (tmp_path / "home" / "speakerdb.sqlite").exists()
    assert json.loads((tmp_path / "home" / "home.json").read_text())["db_url"] == url
    with SpeakerDB.open(tmp_path / "home") as db:
        assert db.store.counts()["recordings"] == 12


def test_lost_home_file_of_a_store_elsewhere_is_rebuilt_with_its_url(tmp_path, tiny_corpus):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    home = tmp_path / "home"
    with SpeakerDB.create(home, db_url=url) as db:
        db.ingest([tiny_corpus])
    (home / "home.json").unlink()
    with pytest.raises(DatabaseNotFound, match=r"home.json is missing .* --db-url URL`"):
        SpeakerDB.open(home)
    with pytest.raises(ModelMismatchError, match="bound to spectral"):
        SpeakerDB.create(home, db_url=url, embedder=SpectralEmbedder(seed=7))
    assert not (home / "home.json").exists()
    with SpeakerDB.create(home, db_url=url) as db:
        assert db.store.counts()["recordings"] == 12 and db.check().ok
    assert json.loads((home / "home.json").read_text()) == {"db_url": url,
                                                           "model_spec": "spectral",
                                                           "vectors": "faiss", "vad": "energy"}


def test_a_database_never_mixes_models(tmp_path, tiny_corpus):
    home = tmp_path / "home"
    SpeakerDB.create(home).close()
    other = SpectralEmbedder(seed=7)
    with pytest.raises(ModelMismatchError, match="spectral"):
        SpeakerDB.create(home, embedder=other)
    with pytest.raises(ModelMismatchError):
        SpeakerDB.open(home, embedder=other)
    with SpeakerDB.create(home) as db:  # same model: opens the existing database
        assert db.model.name == "spectral"


def test_indexes_behind_the_store_catch_up_on_open(db, tmp_path):
    write_corpus(tmp_path / "a", speakers=2)
    db.ingest([tmp_path / "a"])
    # a second batch reaches the store but not the saved indexes (as after a crash)
    write_corpus(tmp_path / "b", speakers=2, first_speaker=5)
    from speakerdb.ingest.reader import Reader
    from speakerdb.ingest.runner import Runner
    from speakerdb.ingest.sources import discover

    class StoreOnly:
        def write(self, recordings, failures):
            return len(db.store.write_batch(None, recordings, failures)[0])

    Runner(Reader(discover([tmp_path / "b"]), db.store.known_recordings), db.embedder,
           StoreOnly()).run()
    db.close()
    with SpeakerDB.open(db.home, catch_up=False) as stale:
        assert stale.indexes.plan() == "append"
        report = stale.check()  # catches up first: behind is not a disagreement
        assert report.ok and report.problems == [] and "behind the store" in report.notes[0]
    with SpeakerDB.open(db.home, catch_up=False) as caught_up:
        assert caught_up.indexes.plan() == "current"
    with SpeakerDB.open(db.home) as fresh:
        assert fresh.check().ok
        r = fresh.identify(Waveform(voice(5, 0), 16000))
        assert r.speaker == "spk05" and r.score == pytest.approx(1.0, abs=1e-5)


def test_verify_and_embed(db):
    a, b, c = (Waveform(voice(k, j), 16000) for k, j in ((1, 0), (1, 1), (2, 0)))
    s_same, s_diff = db.verify(a, b), db.verify(a, c)
    assert set(s_same.scores) == {64, 128, 192, 256}
    assert s_same.score > s_diff.score
    e = db.embed(a)
    raw = db.embedder([voice(1, 0)])[0]
    np.testing.assert_allclose(e.nested[128], raw[:128] / np.linalg.norm(raw[:128]), rtol=1e-5)


def test_stray_temporaries_of_a_killed_save_are_removed_on_open(db, tiny_corpus):
    import os
    import subprocess
    import sys

    db.ingest([tiny_corpus])
    home = db.home
    db.close()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)  # a process that has ended
    stray = [home / ".index-64.faiss.k2j3h4ab.tmp",  # written before temporaries named a pid
             home / f".index-128.faiss.{dead}.q8w7e6r5.tmp",
             home / f".index-64.json.{dead}.abcdefgh.tmp",
             home / "home.json.tmp"]
    live = home / f".index-256.faiss.{os.getpid()}.zzzzzzzz.tmp"  # a save under way
    for p in stray + [live]:
        p.write_bytes(b"partial")
    SpeakerDB.open(home).close()
    assert [p.name for p in stray if p.exists()] == []
    assert live.exists()
    with SpeakerDB.open(home) as again:
        assert again.check().ok
