"""Synthetic conversations and the diarization measures: deterministic builds, references
that agree with the audio, DER parts and naming shares against hand-counted values."""

from __future__ import annotations

import numpy as np
import pytest

from speakerdb.diarize.turns import Turn
from speakerdb.eval.conversations import (SpeakerPool, build_conversation, conversations,
                                          split_speakers)
from speakerdb.eval.diarization import naming_counts
from tests.synth import RATE, voice


def _pools(n=8):
    return {f"s{k}": SpeakerPool(f"s{k}", [f"s{k}/enroll.wav"], voice(k, 0, 9.0))
            for k in range(n)}


def test_conversations_are_deterministic_and_match_their_reference():
    pools = _pools()
    enrolled = {"s0", "s2", "s4", "s6"}
    a = list(conversations(pools, enrolled, sizes=(2, 3), per_size=3, overlap_share=0.5))
    b = list(conversations(pools, enrolled, sizes=(2, 3), per_size=3, overlap_share=0.5))
    assert [c.name for c in a] == [f"conv-{k}spk-{j:03d}" for k in (2, 3) for j in range(3)]
    for x, y in zip(a, b):
        assert np.array_equal(x.samples, y.samples) and x.reference == y.reference
    for c in a:
        assert len(set(c.speakers)) == len(c.speakers) == len({t.speaker for t in c.reference})
        assert set(c.enrolled) == set(c.speakers) & enrolled
        want = {"all": len(c.speakers), "none": 0, "some": len(c.speakers) // 2}[c.enrolment]
        assert len(c.enrolled) == want
        for t, u in zip(c.reference, c.reference[1:]):
            assert t.speaker != u.speaker and 1.0 <= t.duration <= 8.0 + 1e-3
            if not c.overlap:
                assert u.start >= t.end + 0.2 - 1e-3
        # speech where the reference says so, silence in the pauses
        for t, u in zip(c.reference, c.reference[1:]):
            mid = c.samples[int(t.start * RATE) + 100: int(t.end * RATE) - 100]
            assert np.sqrt(np.mean(mid ** 2)) > 0.02
            if u.start - t.end > 0.1:
                gap = c.samples[int(t.end * RATE) + 20: int(u.start * RATE) - 20]
                assert np.abs(gap).max() == 0
    assert any(c.overlap for c in a) and any(
        u.start < t.end for c in a for t, u in zip(c.reference, c.reference[1:]))


def test_build_conversation_seeded():
    pools = list(_pools(2).values())
    x1, r1 = build_conversation("c", pools, 6, False, 7)
    x2, r2 = build_conversation("c", pools, 6, False, 8)
    assert r1 != r2 and len(r1) == 6


def test_speaker_split_is_disjoint_and_stable():
    names = [f"spk{i}" for i in range(60)]
    s = split_speakers(names)
    assert not set(s["dev"]) & set(s["test"]) and sorted(s["dev"] + s["test"]) == sorted(names)
    assert 10 <= len(s["dev"]) <= 30
    assert split_speakers(names[:30])["dev"] == [n for n in s["dev"] if n in names[:30]]


def test_naming_counts_by_hand():
    ref = [Turn(0, 4, "alice"), Turn(5, 9, "bob"), Turn(8, 10, "carol")]
    hyp = [Turn(0, 3, "alice"), Turn(3, 4, "unknown-1"), Turn(5, 8, "unknown-2"),
           Turn(8, 9, "alice"), Turn(9, 10, "alice")]
    c = naming_counts(ref, hyp, enrolled={"alice"}, names={"alice", "dave"})
    # alice 4 s, 3 named right; bob 5-8 alone (3 s) called unknown; carol 9-10 alone named
    assert c["enrolled_s"] == pytest.approx(4.0) and c["named_right_s"] == pytest.approx(3.0)
    assert c["held_out_s"] == pytest.approx(4.0)
    assert c["unknown_s"] == pytest.approx(3.0) and c["misnamed_s"] == pytest.approx(1.0)


def test_der_parts_by_hand():
    pytest.importorskip("pyannote.metrics")
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    from speakerdb.eval.diarization import _annotation, der_parts

    ref = _annotation([Turn(0, 10, "A"), Turn(10, 20, "B")], "c")
    uem = Timeline([Segment(0, 20)])
    perfect = DiarizationErrorRate(collar=0.25, skip_overlap=True)
    perfect(ref, _annotation([Turn(0, 10, "x"), Turn(10, 20, "y")], "c"), uem=uem)
    assert der_parts(perfect)["der"] == 0.0
    m = DiarizationErrorRate(collar=0.25, skip_overlap=True)
    m(ref, _annotation([Turn(0, 15, "x"), Turn(15, 20, "y")], "c"), uem=uem)
    d = der_parts(m)
    # pyannote's collar=0.25 is its whole width: 0.125 s each side of 10 and inside 0 and 20
    # are not scored (19.5 s left), 4.875 s of them confused
    assert d["reference_s"] == pytest.approx(19.5)
    assert d["confusion"] == pytest.approx(4.875 / 19.5, abs=1e-4) and d["der"] == d["confusion"]
    assert d["missed"] == 0 and d["false_alarm"] == 0
