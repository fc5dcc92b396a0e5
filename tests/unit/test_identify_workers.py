"""``identify_many`` with decoding workers: the same answers in the same order as decoding in
the model's process, failures included; a worker that dies costs no input; workers import no
torch."""

from __future__ import annotations

import os
import pickle

import pytest

from speakerdb.api import SpeakerDB
from speakerdb.errors import AudioError, TooLongError, TooShortError, UsageError
from speakerdb.search.bulk import Timings, probe_items
from speakerdb.search.decoding import decoded


@pytest.fixture
def home(tmp_path, tiny_corpus, spectral_embedder):
    h = tmp_path / "home"
    with SpeakerDB.create(h, model="spectral", embedder=spectral_embedder) as db:
        db.ingest([tiny_corpus], )
    return h


def _inputs(tiny_corpus, tmp_path):
    """The corpus's files (with their truth) and bad ones: missing, empty, not audio."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "empty.wav").write_bytes(b"")
    (tmp_path / "bad" / "text.wav").write_text("not audio")
    items, _ = probe_items([tiny_corpus])
    bad = [tmp_path / "bad" / "empty.wav", tmp_path / "missing.wav", tmp_path / "bad" / "text.wav"]
    return items[:5] + bad[:1] + items[5:9] + bad[1:] + items[9:]


def _view(answer) -> dict:
    d = answer.as_dict()
    if d.get("result") is not None:
        d["result"].pop("seconds", None)
    d.pop("seconds", None)
    return d


def test_workers_answer_as_the_models_process_does(home, tiny_corpus, tmp_path,
                                                   spectral_embedder):
    inputs = _inputs(tiny_corpus, tmp_path)
    with SpeakerDB.open(home, embedder=spectral_embedder) as db:
        alone, pooled = Timings(), Timings()
        want = list(db.identify_many(inputs, batch=3, workers=0, timings=alone))
        got = list(db.identify_many(inputs, batch=3, workers=2, timings=pooled))
    assert [a.input for a in got] == [a.input for a in want]
    assert [_view(a) for a in got] == [_view(a) for a in want]
    assert sum(a.error is not None for a in got) == 3
    assert sum(a.outcome == "correct_match" for a in got) >= len(inputs) - 3 - 2
    assert (alone.workers, pooled.workers) == (0, 2)
    assert pooled.decode_s > 0 and alone.wait_s == 0


def test_default_workers_follow_the_inputs(home, tiny_corpus, spectral_embedder, monkeypatch):
    import speakerdb.ingest.pool as pool

    monkeypatch.setattr(pool, "default_workers", lambda: 3)
    files = sorted(tiny_corpus.rglob("*.wav"))
    with SpeakerDB.open(home, embedder=spectral_embedder) as db:
        # more than a batch: a pool; one batch, or an iterator of unknown length: none
        for inputs, n, want in ((files, len(files), 3), (files[:4], 4, 0),
                                (iter(files), len(files), 0)):
            t = Timings()
            assert len(list(db.identify_many(inputs, batch=4, timings=t))) == n
            assert t.workers == want
        for bad in (-1, 1.5, True):
            with pytest.raises(UsageError, match="workers"):
                db.identify_many(files, workers=bad)


class DiesWhenSent:
    """An input that kills the worker process it is sent to (unpickled there)."""

    def __reduce__(self):
        return os._exit, (3,)


def test_a_dead_worker_costs_no_input(home, tiny_corpus, spectral_embedder):
    files = sorted(tiny_corpus.rglob("*.wav"))
    inputs = files[:4] + [DiesWhenSent()] + files[4:]
    with SpeakerDB.open(home, embedder=spectral_embedder) as db:
        want = [_view(a) for a in db.identify_many(files, batch=2, workers=0)]
        got = list(db.identify_many(inputs, batch=2, workers=2))
    assert len(got) == len(inputs)
    assert isinstance(got[4].error, AudioError)  # read here instead: not audio
    assert [_view(a) for a in got[:4] + got[5:]] == want


def test_audio_errors_cross_processes_whole():
    for e in (AudioError("a.wav", "no such file"), TooShortError("b.wav", "0.2 s"),
              TooLongError("c.wav", "5 h")):
        e.seconds = 1.5
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e)
        assert (back.where, back.message, back.reason, back.seconds) == \
            (e.where, e.message, e.reason, 1.5)


def _heavy(_):
    from speakerdb.ingest.pool import heavy_modules

    return heavy_modules()


def test_decoding_workers_import_no_torch(tiny_corpus):
    from speakerdb.audio import AudioPolicy
    from speakerdb.ingest.pool import start_pool

    files = sorted(tiny_corpus.rglob("*.wav"))[:4]
    out = list(decoded(files, AudioPolicy(), 0.5, 2, 2, Timings()))
    assert [p.error for p in out] == [None] * 4
    pool = start_pool(1)
    try:
        import speakerdb.search.decoding  # noqa: F401 - what the workers import

        assert pool.submit(_heavy, None).result(timeout=60) == []
    finally:
        pool.shutdown()
