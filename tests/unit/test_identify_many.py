"""``SpeakerDB.identify_many``: batches of inputs share model calls, answers come in input
order and equal ``identify``'s, failures are answers, options are checked before any input is
read; the outcomes and the tally of a run."""

from __future__ import annotations

import pytest

from speakerdb.api import SpeakerDB
from speakerdb.errors import UsageError
from speakerdb.ingest.sources import SourceItem
from speakerdb.search.bulk import OUTCOMES, Answer, Tally, Timings, outcome, probe_items


class Counting:
    """The spectral embedder, counting the waveforms of each model call."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        for k in ("name", "sha256", "dims", "raw_dim", "sample_rate", "default_threshold"):
            setattr(self, k, getattr(inner, k))

    def __call__(self, waves):
        self.calls.append(len(waves))
        return self.inner(waves)


@pytest.fixture
def home(tmp_path, tiny_corpus, spectral_embedder):
    h = tmp_path / "home"
    with SpeakerDB.create(h, model="spectral", embedder=spectral_embedder) as db:
        db.ingest([tiny_corpus])
    return h


def _open(home, spectral_embedder):
    emb = Counting(spectral_embedder)
    return SpeakerDB.open(home, embedder=emb), emb


def _same(a, b) -> bool:
    da, db_ = a.as_dict(), b.as_dict()
    da.pop("seconds"), db_.pop("seconds")
    return da == db_


def test_answers_in_order_equal_identify_with_shared_model_calls(home, tiny_corpus,
                                                                  spectral_embedder):
    files = sorted(tiny_corpus.rglob("*.wav"))[::-1]  # not the order anything sorts them in
    db, emb = _open(home, spectral_embedder)
    with db:
        timings = Timings()
        answers = list(db.identify_many(files, batch=5, timings=timings))
        assert emb.calls == [5, 5, 2]  # 12 one-segment inputs in batches of 5
        emb.calls.clear()
        singles = [db.identify(f) for f in files]
        assert emb.calls == [1] * 12
    assert [a.input for a in answers] == [str(f) for f in files]
    assert all(a.error is None and a.truth is None and a.outcome is None for a in answers)
    assert all(_same(a.result, s) for a, s in zip(answers, singles))
    assert timings.decode_s > 0 and timings.embed_s > 0 and timings.search_s > 0


def test_failures_are_answers_in_place(home, tiny_corpus, spectral_embedder, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nothing like audio")
    good = sorted(tiny_corpus.rglob("*.wav"))[:2]
    items = [SourceItem(good[0], "spk00", "folders"), SourceItem(bad, "spk01", "folders"),
             SourceItem(tmp_path / "gone.wav", None, "folders", "dangling symbolic link"),
             SourceItem(good[1], "someone", "folders")]
    db, emb = _open(home, spectral_embedder)
    with db:
        answers = list(db.identify_many(items))
    assert emb.calls == [2]
    assert [a.input for a in answers] == [str(good[0]), str(bad), str(tmp_path / "gone.wav"),
                                          str(good[1])]
    assert [a.outcome for a in answers] == ["correct_match", None, None, "false_accept"]
    assert str(answers[1].error) == f"{bad}: not audio (no known audio format)"
    assert str(answers[2].error) == f"{tmp_path / 'gone.wav'}: dangling symbolic link"
    assert answers[1].as_dict() == {"input": str(bad), "error": str(answers[1].error),
                                    "truth": "spk01", "outcome": None, "correct": None}
    tally = Tally()
    for a in answers:
        tally.add(a)
    assert (tally.inputs, tally.answered, tally.failed) == (4, 2, 2)
    assert tally.accuracy()["correct"] == {"count": 1, "rate": 0.5}


def test_bad_options_raise_before_any_input_is_read(home, spectral_embedder):
    def never():
        raise AssertionError("an input was read")
        yield

    db, emb = _open(home, spectral_embedder)
    with db:
        with pytest.raises(UsageError, match="batch must be a positive number"):
            db.identify_many(never(), batch=0)
        with pytest.raises(UsageError, match="score_norm"):
            db.identify_many(never(), score_norm="zscore")
        with pytest.raises(UsageError, match="min_margin"):
            db.identify_many(never(), min_margin=float("nan"))
    assert emb.calls == []


@pytest.mark.parametrize("decision, speaker, truth, enrolled, want", [
    ("match", "a", "a", True, "correct_match"),
    ("match", "b", "a", True, "wrong_match"),
    ("unknown", None, "a", True, "miss"),
    ("unknown", None, "z", False, "correct_rejection"),
    ("match", "a", "z", False, "false_accept"),
])
def test_outcome(decision, speaker, truth, enrolled, want):
    assert outcome(decision, speaker, truth, enrolled) == want


def test_tally_counts_and_rates():
    tally = Tally()
    for name, n in zip(OUTCOMES, (5, 2, 1, 3, 1)):
        for _ in range(n):
            tally.add(Answer("x", "t", result=object(), outcome=name))
    tally.add(Answer("y", result=object()))  # answered, no truth
    s = tally.summary(Timings(1.0, 2.0, 0.5), wall_s=4.0)
    assert (s["inputs"], s["answered"], s["failed"], s["probes_per_s"]) == (13, 13, 0, 3.25)
    assert s["seconds"] == {"decode": 1.0, "embed": 2.0, "search": 0.5, "wait": 0.0}
    assert s["accuracy"] == {
        "with_truth": 12, "enrolled": 8, "not_enrolled": 4,
        "correct_matches": {"count": 5, "rate": 0.625},
        "wrong_matches": {"count": 2, "rate": 0.25},
        "misses": {"count": 1, "rate": 0.125},
        "correct_rejections": {"count": 3, "rate": 0.75},
        "false_accepts": {"count": 1, "rate": 0.25},
        "correct": {"count": 8, "rate": 0.666667},
    }
    assert Tally().accuracy() is None


def test_probe_items_expand_folders_and_manifests_and_keep_files(tiny_corpus, tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("path,speaker\na.wav,spk07\nb.wav,\n", encoding="utf-8")
    items, listed = probe_items([tiny_corpus / "spk01", csv, tmp_path / "missing.wav"])
    assert listed
    assert [(it.path, it.speaker) for it in items] == \
        [(tiny_corpus / "spk01" / f"utt{j}.wav", None) for j in range(3)] + \
        [(tmp_path / "a.wav", "spk07"), (tmp_path / "b.wav", None),
         (tmp_path / "missing.wav", None)]
    items, listed = probe_items([tiny_corpus / "spk01" / "utt0.wav"])
    assert not listed and [it.path for it in items] == [tiny_corpus / "spk01" / "utt0.wav"]
    with pytest.raises(UsageError, match="no-folder: no such file or directory"):
        probe_items([tmp_path / "no-folder"])
