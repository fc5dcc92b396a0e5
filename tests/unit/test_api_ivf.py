"""A database whose screen outgrows flat search: IVF recorded, reopened without a rebuild,
identify and check unchanged (thresholds lowered so a small corpus crosses them)."""

import pytest

import speakerdb.index.choose as choose
from speakerdb.api import SpeakerDB
from speakerdb.index.faiss_tier import FaissTier
from tests.synth import write_corpus


@pytest.fixture
def small_thresholds(monkeypatch):
    monkeypatch.setattr(choose, "FLAT_MAX_VECTORS", 20)
    monkeypatch.setattr(choose, "MIN_LISTS", 8)


def test_grown_database_screens_with_ivf_and_reopens_without_rebuild(
        tmp_path, tmp_home, spectral_embedder, small_thresholds, monkeypatch):
    corpus = tmp_path / "corpus"
    files = write_corpus(corpus, speakers=6, utterances=5)
    with SpeakerDB.create(tmp_home, model="spectral", embedder=spectral_embedder) as db:
        db.ingest([corpus])
        stats = db.stats()
    want = choose.choose_index(30, 64, 64)
    assert want.nlist == choose.ivf_lists(30)
    screen = stats["vectors"]["screen"]
    assert (screen["dim"], screen["index_key"], screen["index_param"]) == (64, want.key,
                                                                          want.param)
    assert screen["bytes"] > 0 and stats["vectors"]["rows_bytes"] == 30 * (256 * 4 + 8 + 3 * 4)

    def no_rebuild(self):
        raise AssertionError("indexes rebuilt on open although nothing changed")

    monkeypatch.setattr(FaissTier, "rebuild", no_rebuild)
    with SpeakerDB.open(tmp_home, embedder=spectral_embedder) as db:
        assert db.indexes.set.by_dim[64].choice == want
        assert db.check().ok
        for speaker, paths in files.items():
            result = db.identify(paths[0])
            assert result.candidates[0].speaker == speaker
            assert result.mode == "cascade"
