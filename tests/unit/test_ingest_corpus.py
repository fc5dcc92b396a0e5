"""Ingest of the bad-input corpus through the library: each file's documented outcome."""

import pytest
from sqlalchemy import select

from speakerdb.store.models import Recording, Segment
from speakerdb.audio.names import display_name
from tests.audio_corpus import EXPECTED, write_bad_corpus

REASONS = {  # what the failures table says for each bad file
    "empty.wav": "unreadable",
    "text.wav": "unreadable",
    "truncated_header.wav": "unreadable",
    "truncated_data.wav": "unreadable",
    "nan.wav": "unreadable",
    "short.wav": "too_short",
    "sparse.wav": "too_short",
    "silence.wav": "silent",
    "rate1hz.wav": "unreadable",  # below the 4 kHz floor
    "rate20hz.wav": "unreadable",
    "random.mp3": "unreadable",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    write_bad_corpus(root / "spk")
    return root


def test_each_file_gets_its_documented_outcome(db, corpus):
    stats = db.ingest([corpus])
    ok = {display_name(n): segs for n, (kind, segs) in EXPECTED.items() if kind == "ok"}
    failed = {f["input"].rsplit("/", 1)[1]: f["reason"] for f in stats.failures}
    assert failed == REASONS
    assert all(f["error"].startswith(f["input"] + ": ") for f in stats.failures)
    assert stats.added == len(ok) and stats.failed == len(REASONS)
    with db.store.session() as s:
        rows = s.execute(select(Recording.path, Recording.sample_rate, Recording.channels,
                                Recording.id)).all()
        counts = {
            path.rsplit("/", 1)[1]: len(
                s.scalars(select(Segment.id).where(Segment.recording_id == rid)).all())
            for path, _rate, _ch, rid in rows
        }
    rates = {p.rsplit("/", 1)[1]: (r, c) for p, r, c, _ in rows}
    assert counts == ok
    assert rates["rate8k.wav"] == (8000, 1) and rates["stereo.wav"] == (16000, 2)
    assert {f["reason"] for f in db.store.failures()} == set(REASONS.values())
    assert db.check().ok


def test_rerun_is_a_no_op_and_long_file_is_searchable(db, corpus):
    db.ingest([corpus])
    before = db.store.counts()
    again = db.ingest([corpus])
    assert again.added == 0 and again.failed == 0 and again.skipped == again.inputs
    assert db.store.counts() | {"ingest_runs": 0} == before | {"ingest_runs": 0}
    # a piece from the middle of the 10-minute file finds a segment of that file
    import soundfile as sf

    long, rate = sf.read(corpus / "spk" / "long.wav", dtype="float32")
    from speakerdb.audio import Waveform

    piece = Waveform(long[rate * 200 : rate * 210], rate)
    for exhaustive in (False, True):
        result = db.identify(piece, exhaustive=exhaustive)
        assert result.speaker == "spk" and result.score == pytest.approx(1.0, abs=1e-4)
