"""Diarization with the spectral embedder on generated voices: turns recovered at known
boundaries, named from the database or unknown-k; windows, clustering and RTTM files."""

from __future__ import annotations

import numpy as np
import pytest

from speakerdb.audio import Waveform
from speakerdb.diarize.cluster import cluster_windows
from speakerdb.diarize.run import windows_of
from speakerdb.diarize.turns import Turn, label_frames, frames_to_turns, read_rttm, write_rttm
from speakerdb.errors import ManifestError, TooShortError, UsageError
from tests.synth import RATE, voice, write_corpus

PAUSE_S = 0.6


def conversation(plan):
    """(samples, reference turns [(start, end, speaker)]) of ``plan`` [(speaker, seconds)]
    with PAUSE_S of silence after each turn."""
    parts, ref, t = [], [], 0.0
    for i, (spk, d) in enumerate(plan):
        parts += [voice(spk, 20 + i, d), np.zeros(int(PAUSE_S * RATE), np.float32)]
        ref.append((t, t + d, spk))
        t += d + PAUSE_S
    return np.concatenate(parts), ref


@pytest.fixture
def enrolled(tmp_path, spectral_embedder):
    from speakerdb.api import SpeakerDB

    write_corpus(tmp_path / "c", speakers=3, utterances=3, seconds=3.0)
    with SpeakerDB.create(tmp_path / "h", model="spectral", embedder=spectral_embedder) as db:
        db.ingest([tmp_path / "c"])
        yield db


def test_two_enrolled_voices_are_recovered_at_their_boundaries(enrolled):
    x, ref = conversation([(0, 3.0), (1, 4.0), (0, 2.5), (1, 3.0)])
    r = enrolled.diarize(Waveform(x, RATE), name="talk.wav")
    assert [t.speaker for t in r.turns] == ["spk00", "spk01", "spk00", "spk01"]
    for got, (a, b, _) in zip(r.turns, ref):
        assert got.start == pytest.approx(a, abs=0.1) and got.end == pytest.approx(b, abs=0.1)
    assert [s.speaker for s in r.speakers] == ["spk00", "spk01"]
    assert all(s.decision == "match" and s.score > 0.8 for s in r.speakers)
    assert r.speakers[0].speech_s == pytest.approx(5.5, abs=0.2)
    assert r.speech_s == pytest.approx(12.5, abs=0.2) and r.duration_s == pytest.approx(14.9)
    doc = r.as_dict()
    assert doc["turns"][1] == {"start": pytest.approx(3.6, abs=0.1),
                               "end": pytest.approx(7.6, abs=0.1), "speaker": "spk01",
                               "score": pytest.approx(r.speakers[1].score, abs=1e-4)}


def test_a_voice_not_in_the_database_is_unknown(enrolled):
    x, _ = conversation([(1, 3.0), (9, 4.0), (1, 2.5), (9, 3.0)])
    r = enrolled.diarize(Waveform(x, RATE), num_speakers=2)
    assert [t.speaker for t in r.turns] == ["spk01", "unknown-1", "spk01", "unknown-1"]
    assert r.speakers[1].decision == "unknown"


def test_one_voice_is_one_speaker_and_counts_are_checked(enrolled):
    x, _ = conversation([(2, 3.0), (2, 3.0)])
    r = enrolled.diarize(Waveform(x, RATE), max_speakers=3)
    # one speaker's two turns with a short pause between them: one turn
    assert [(t.speaker, t.start) for t in r.turns] == [("spk02", pytest.approx(0.0, abs=0.1))]
    assert r.turns[0].end == pytest.approx(len(x) / RATE, abs=0.6)
    with pytest.raises(UsageError, match="not both"):
        enrolled.diarize(Waveform(x, RATE), num_speakers=2, max_speakers=3)
    with pytest.raises(UsageError, match="num_speakers must be"):
        enrolled.diarize(Waveform(x, RATE), num_speakers=0)
    with pytest.raises(TooShortError, match="s of speech"):
        enrolled.diarize(Waveform(np.zeros(3 * RATE, np.float32), RATE), name="quiet.wav")


def test_windows_cover_each_region():
    w = windows_of([(0.0, 1.0), (2.0, 5.0), (6.0, 6.1)])
    assert w[0] == (0.0, 1.0)
    assert w[1:] == [(2.0, 3.5), (2.75, 4.25), (3.5, 5.0)]


def test_clustering_finds_the_groups_and_takes_a_count():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 32))
    x = np.concatenate([c + 0.1 * rng.standard_normal((10, 32)) for c in centres])
    labels = cluster_windows(x, 0.3)
    assert list(labels) == [0] * 10 + [1] * 10 + [2] * 10
    assert len(set(cluster_windows(x, 0.3, num_speakers=2))) == 2
    assert len(set(cluster_windows(x, 0.3, max_speakers=2))) == 2
    # a cluster of one stray window joins the nearest
    y = np.concatenate([x[:20], centres[2:3] * 0.2 + x[:1]])
    assert len(set(cluster_windows(y, 0.3, min_share=0.1))) == 2


def test_overlapping_windows_are_split_at_the_centres():
    frames = label_frames(4.0, [(0.0, 4.0)], [(0.0, 1.5), (0.75, 2.25), (1.5, 3.0), (2.5, 4.0)],
                          [0, 0, 1, 1])
    turns = frames_to_turns(frames, {0: "a", 1: "b"})
    # centres 0.75, 1.5 | 2.25, 3.25: the change is half way between 1.5 and 2.25
    assert [(t.speaker, t.start, t.end) for t in turns] == [
        ("a", 0.0, pytest.approx(1.88, abs=0.011)), ("b", pytest.approx(1.88, abs=0.011), 4.0)]


def test_short_pauses_inside_one_speakers_turn_are_joined():
    # a 1 s, pause 0.3 s, a 1 s, pause 0.8 s, a 0.5 s, b 1 s (10 ms frames)
    frames = np.array([0] * 100 + [-1] * 30 + [0] * 100 + [-1] * 80 + [0] * 50 + [1] * 100)
    got = [(t.speaker, round(t.start, 2), round(t.end, 2))
           for t in frames_to_turns(frames, {0: "a", 1: "b"}, join_gap_s=0.5)]
    assert got == [("a", 0.0, 2.3), ("a", 3.1, 3.6), ("b", 3.6, 4.6)]
    assert len(frames_to_turns(frames, {0: "a", 1: "b"})) == 4  # without: every pause splits


def test_rttm_round_trip(tmp_path):
    turns = [Turn(0.0, 1.25, "alice", 0.9), Turn(1.5, 3.0, "unknown-1"),
             Turn(3.0, 4.5, "Mary Ann")]
    write_rttm(tmp_path / "a.rttm", turns, "my talk")
    text = (tmp_path / "a.rttm").read_text().splitlines()
    assert text[0] == "SPEAKER my_talk 1 0.000 1.250 <NA> <NA> alice <NA> <NA>"
    back = read_rttm(tmp_path / "a.rttm")["my_talk"]
    assert [(t.start, t.end, t.speaker) for t in back] == [
        (0.0, 1.25, "alice"), (1.5, 3.0, "unknown-1"), (3.0, 4.5, "Mary_Ann")]
    (tmp_path / "b.rttm").write_text("SPEAKER f 1 x 1.0 <NA> <NA> a <NA> <NA>\n")
    with pytest.raises(ManifestError, match="b.rttm:1"):
        read_rttm(tmp_path / "b.rttm")
