"""Speaker management through ``SpeakerDB``: list, rename, merge, delete, enroll, and reads
from other threads while one thread ingests."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import func, select

from speakerdb.audio import Waveform
from speakerdb.config import CascadeConfig, IngestConfig
from speakerdb.errors import AmbiguousKey, NotFound, UsageError
from speakerdb.index import IndexSet
from speakerdb.store.models import Recording, Segment, Speaker
from tests.synth import RATE, voice, write_corpus

def test_delete_recording_key_is_literal_and_ambiguity_is_its_own_error(gallery):
    with gallery.store.session() as s:
        shas = sorted(s.scalars(select(Recording.sha256)))
    n = len(shas)
    for key in ("%" + shas[0][-12:], "_" + shas[0][1:12], "%", "_", ""):
        with pytest.raises(NotFound):
            gallery.delete_recording(key)
    assert gallery.store.counts()["recordings"] == n
    a, b = next((a, b) for a, b in zip(shas, shas[1:]) if a[0] == b[0])
    common = next(a[:k] for k in range(len(a), 0, -1) if b.startswith(a[:k]))
    with pytest.raises(AmbiguousKey, match=f"recording '{common}' is ambiguous: 2 recordings"):
        gallery.delete_recording(common)
    assert gallery.store.counts()["recordings"] == n
    assert gallery.delete_recording(a[: len(common) + 1]) == 1
    assert_consistent(gallery)


CENTROID = CascadeConfig(aggregation="centroid")


def wave(speaker: int, utt: int, seconds: float = 1.5) -> Waveform:
    return Waveform(voice(speaker, utt, seconds), RATE)


def assert_consistent(db) -> None:
    """check() green, the indexes hold exactly the store's ids, no speaker without recordings."""
    report = db.check()
    assert report.ok, report.problems
    assert db.indexes.plan() == "current"
    assert np.array_equal(db.indexes.set.ids(), db.store.segment_ids())
    assert np.array_equal(IndexSet.load(db.home).ids(), db.store.segment_ids())
    with db.store.session() as s:
        empty = s.scalars(select(Speaker.label).where(
            ~select(Recording.id).where(Recording.speaker_id == Speaker.id).exists())).all()
    assert empty == []


def direct_sums(db) -> dict[str, tuple[int, int, float]]:
    """{label: (recordings, segments, seconds)} summed row by row in Python."""
    with db.store.session() as s:
        recs = s.execute(select(Recording.id, Recording.duration_s, Speaker.label)
                         .join(Speaker, Recording.speaker_id == Speaker.id)).all()
        segs = s.execute(select(Segment.recording_id)).scalars().all()
    out: dict[str, list] = {}
    for rid, dur, label in recs:
        e = out.setdefault(label, [0, 0, 0.0])
        e[0] += 1
        e[1] += sum(1 for r in segs if r == rid)
        e[2] += dur
    return {k: tuple(v) for k, v in out.items()}


@pytest.fixture
def gallery(db, tmp_path):
    """4 speakers x 3 utterances, a 35 s recording of spk00 (3 segments) and one unlabelled
    recording (manifest with an empty speaker)."""
    files = write_corpus(tmp_path / "corpus")
    sf.write(tmp_path / "corpus" / "spk00" / "long.wav", voice(0, 7, 35.0), RATE)
    sf.write(tmp_path / "anon.wav", voice(6, 0), RATE)
    (tmp_path / "m.csv").write_text("path,speaker\nanon.wav,\n")
    db.ingest([tmp_path / "corpus", tmp_path / "m.csv"])
    db.files = files
    return db


def test_speakers_lists_labelled_speakers_with_direct_sums(gallery):
    infos = gallery.speakers()
    assert [i.label for i in infos] == ["spk00", "spk01", "spk02", "spk03"]
    sums = direct_sums(gallery)
    for i in infos:
        assert (i.recordings, i.segments) == sums[i.label][:2]
        assert i.seconds == pytest.approx(sums[i.label][2])
    assert infos[0].recordings == 4 and infos[0].segments == 3 + 4  # 35 s: 4 segments
    assert infos[1].seconds == pytest.approx(4.5)
    assert infos[0].as_dict() == {"label": "spk00", "recordings": 4, "segments": 7,
                                  "seconds": pytest.approx(39.5)}
    assert gallery.store.counts()["unlabelled_recordings"] == 1


def test_rename_then_identify_returns_the_new_label(gallery):
    assert gallery.identify(wave(1, 5), cascade=CENTROID).speaker == "spk01"  # fills the centroid cache
    info = gallery.rename_speaker("spk01", "alice")
    assert (info.label, info.recordings, info.segments) == ("alice", 3, 3)
    assert [i.label for i in gallery.speakers()] == ["alice", "spk00", "spk02", "spk03"]
    assert gallery.identify(wave(1, 5)).speaker == "alice"
    assert gallery.identify(wave(1, 5), cascade=CENTROID).speaker == "alice"
    assert_consistent(gallery)


def test_rename_errors(gallery):
    with pytest.raises(NotFound, match="speaker 'nobody' is not in the database"):
        gallery.rename_speaker("nobody", "x")
    with pytest.raises(UsageError, match="'spk02' exists already; use merge") as e:
        gallery.rename_speaker("spk01", "spk02")
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError):
        gallery.rename_speaker("spk01", "  ")
    assert [i.label for i in gallery.speakers()] == ["spk00", "spk01", "spk02", "spk03"]
    assert gallery.rename_speaker("spk01", "spk01").recordings == 3
    assert_consistent(gallery)


def test_merge_moves_recordings_and_deletes_the_source(gallery):
    before = {i.label: i for i in gallery.speakers()}
    assert gallery.identify(wave(2, 5), cascade=CENTROID).speaker == "spk02"
    ids_before = gallery.store.segment_ids()
    info = gallery.merge_speakers("spk02", "spk03")
    assert info.label == "spk03"
    assert info.recordings == before["spk02"].recordings + before["spk03"].recordings
    assert info.segments == before["spk02"].segments + before["spk03"].segments
    assert info.seconds == pytest.approx(before["spk02"].seconds + before["spk03"].seconds)
    assert [i.label for i in gallery.speakers()] == ["spk00", "spk01", "spk03"]
    assert gallery.store.counts()["speakers"] == 3
    assert np.array_equal(gallery.store.segment_ids(), ids_before)  # no vector changed
    assert gallery.identify(wave(2, 5)).speaker == "spk03"
    assert gallery.identify(wave(2, 5), cascade=CENTROID).speaker == "spk03"
    assert_consistent(gallery)


def test_merge_errors(gallery):
    with pytest.raises(NotFound, match="'ghost'"):
        gallery.merge_speakers("ghost", "spk01")
    with pytest.raises(NotFound, match="'ghost'"):
        gallery.merge_speakers("spk01", "ghost")
    with pytest.raises(UsageError, match="into itself"):
        gallery.merge_speakers("spk01", "spk01")
    assert len(gallery.speakers()) == 4
    assert_consistent(gallery)


def test_delete_recording_removes_a_speaker_left_empty(gallery):
    paths = gallery.files["spk03"]
    for p in paths[:2]:
        assert gallery.delete_recording(str(p)) == 1
        assert "spk03" in [i.label for i in gallery.speakers()]
        assert_consistent(gallery)
    with gallery.store.session() as s:
        sha = s.scalar(select(Recording.sha256).where(Recording.path == str(paths[2])))
    assert gallery.delete_recording(sha[:16]) == 1
    assert [i.label for i in gallery.speakers()] == ["spk00", "spk01", "spk02"]
    assert gallery.store.counts()["speakers"] == 3
    with pytest.raises(NotFound, match="spk03"):
        gallery.delete_speaker("spk03")
    with pytest.raises(NotFound, match="recording 'nope' is not in the database"):
        gallery.delete_recording("nope")
    assert_consistent(gallery)


def test_delete_speaker_removes_its_vectors(gallery):
    n = gallery.speakers()[0].segments
    before = gallery.store.counts()["segments"]
    assert gallery.delete_speaker("spk00") == n
    assert gallery.store.counts()["segments"] == before - n
    assert [i.label for i in gallery.speakers()] == ["spk01", "spk02", "spk03"]
    assert gallery.identify(wave(0, 5), cascade=CENTROID).speaker != "spk00"
    assert_consistent(gallery)


def test_enroll_adds_in_one_transaction_and_is_identified(gallery):
    calls = []
    original = gallery.store.write_batch

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    gallery.store.write_batch = counting
    assert gallery.identify(wave(9, 5), cascade=CENTROID).speaker != "bob"
    buf = io.BytesIO()
    sf.write(buf, voice(9, 1), RATE, format="WAV", subtype="PCM_16")
    buf.seek(0)
    r = gallery.enroll("bob", [wave(9, 0), buf, wave(9, 2, 35.0)])
    assert calls == [1]
    assert (r.speaker, r.added, r.segments, r.skipped, r.failed) == ("bob", 3, 1 + 1 + 4, [], [])
    bob = next(i for i in gallery.speakers() if i.label == "bob")
    assert (bob.recordings, bob.segments) == (3, 6)
    assert bob.seconds == pytest.approx(1.5 + 1.5 + 35.0)
    assert gallery.identify(wave(9, 5)).speaker == "bob"
    assert gallery.identify(wave(9, 5), cascade=CENTROID).speaker == "bob"
    with gallery.store.session() as s:
        sources = set(s.scalars(select(Recording.source).join(Speaker)
                                .where(Speaker.label == "bob")))
    assert sources == {"enroll"}
    assert_consistent(gallery)


def test_enroll_skips_stored_and_repeated_audio_with_reasons(gallery, tmp_path):
    first = gallery.enroll("bob", [wave(9, 0)], names=["bob-0"])
    assert first.added == 1
    n = gallery.store.counts()["segments"]
    r = gallery.enroll("bob", [wave(9, 0), gallery.files["spk01"][0], tmp_path / "anon.wav",
                               wave(9, 3), wave(9, 3)])
    assert r.added == 1 and r.failed == []
    assert r.skipped == [
        {"input": "<waveform #1>", "reason": "already in the database as bob"},
        {"input": str(gallery.files["spk01"][0]), "reason": "already in the database as spk01"},
        {"input": str(tmp_path / "anon.wav"), "reason": "already in the database as unlabelled"},
        {"input": "<waveform #5>", "reason": "same audio as <waveform #4>"},
    ]
    assert gallery.store.counts()["segments"] == n + 1
    assert r.as_dict()["skipped"] == r.skipped
    assert_consistent(gallery)


def test_enroll_rejects_silent_short_and_unreadable_audio(gallery, tmp_path):
    (tmp_path / "text.wav").write_text("not audio\n")
    n = gallery.store.counts()
    r = gallery.enroll("carol", [Waveform(np.zeros(RATE * 2, np.float32), RATE),
                                 wave(5, 0, 0.2), tmp_path / "text.wav",
                                 tmp_path / "missing.wav"],
                       names=["silence", "blip", "text", "missing"])
    assert r.added == 0 and r.segments == 0 and r.skipped == []
    got = {f["input"]: f["reason"] for f in r.failed}
    assert got == {"silence": "silent", "blip": "too_short", "text": "unreadable",
                   "missing": "unreadable"}
    assert all(f["error"].startswith(f["input"] + ": ") for f in r.failed)
    assert "carol" not in [i.label for i in gallery.speakers()]
    assert gallery.store.counts()["recordings"] == n["recordings"]
    assert gallery.store.counts()["failures"] == n["failures"] + 3  # not the missing file
    mixed = gallery.enroll("carol", [wave(5, 0), wave(5, 1, 0.2)])
    assert mixed.added == 1 and [f["reason"] for f in mixed.failed] == ["too_short"]
    assert mixed.as_dict()["failed"][0]["input"] == "<waveform #2>"
    assert_consistent(gallery)


def test_enroll_usage_errors(gallery):
    with pytest.raises(UsageError, match="speaker label"):
        gallery.enroll("", [wave(9, 0)])
    with pytest.raises(UsageError, match="2 names for 1 audio"):
        gallery.enroll("bob", [wave(9, 0)], names=["a", "b"])
    assert "bob" not in [i.label for i in gallery.speakers()]


def watch_index_changes(db, pause_s: float = 0.01) -> list[str]:
    """Make every change of the in-memory indexes last ``pause_s`` longer and record each
    search or rescoring that runs meanwhile (in the returned list)."""
    overlaps: list[str] = []
    changing = threading.Event()
    db.indexes.ensure_open()
    index_set = db.indexes.set

    def changer(fn):
        def change(*args, **kwargs):
            changing.set()
            try:
                time.sleep(pause_s)
                return fn(*args, **kwargs)
            finally:
                changing.clear()
        return change

    def reader(fn, what):
        def read(*args, **kwargs):
            if changing.is_set():
                overlaps.append(what)
            return fn(*args, **kwargs)
        return read

    index_set.add, index_set.remove = changer(index_set.add), changer(index_set.remove)
    for d, index in index_set.by_dim.items():
        index.search = reader(index.search, f"search {d}")
        index.score = reader(index.score, f"score {d}")
    return overlaps


def test_identify_in_threads_while_one_thread_ingests(db, tmp_path):
    write_corpus(tmp_path / "seed", speakers=2)
    db.ingest([tmp_path / "seed"])
    write_corpus(tmp_path / "more", speakers=8, utterances=4, first_speaker=2)
    overlaps = watch_index_changes(db)
    errors: list[BaseException] = []
    done = threading.Event()
    results = []

    def writer():
        try:
            db.ingest([tmp_path / "more"], config=IngestConfig(files_per_batch=2,
                                                                index_flush_s=0.0))
            db.enroll("late", [wave(11, k) for k in range(3)])
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
        finally:
            done.set()

    def reader(k: int):
        try:
            i = 0
            while not done.is_set() or i < 3:
                r = db.identify(wave(k, 50 + i), cascade=CascadeConfig((50, 20, 10)))
                results.append(r)
                names = [s.label for s in db.speakers()]
                assert names == sorted(names)
                i += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert overlaps == []  # no search ever ran while an index was being changed
    assert len(results) >= 6
    for r in results:
        assert r.decision in ("match", "unknown")
        assert r.candidates and all(c.speaker for c in r.candidates)
        assert [c.score for c in r.candidates] == sorted((c.score for c in r.candidates),
                                                          reverse=True)
        assert r.segments_scored > 0
    assert db.store.counts()["recordings"] == 6 + 32 + 3
    assert db.identify(wave(11, 9)).candidates[0].speaker == "late"
    assert_consistent(db)


def test_reads_are_excluded_while_the_indexes_change(db, tmp_path):
    """The lock is really taken: a search that would run while a writer holds it waits."""
    write_corpus(tmp_path / "c", speakers=2)
    db.ingest([tmp_path / "c"])
    started, finished = threading.Event(), threading.Event()

    def identify():
        started.set()
        db.identify(wave(0, 5))
        finished.set()

    with db.lock:
        t = threading.Thread(target=identify)
        t.start()
        assert started.wait(10)
        assert not finished.wait(0.5)
    assert finished.wait(30)
    t.join()


def test_direct_sums_of_the_counts_helper(gallery):
    with gallery.store.session() as s:
        total = s.scalar(select(func.count(Segment.id)))
    assert sum(i.segments for i in gallery.speakers()) == total - 1  # the unlabelled one


def test_a_waveform_has_one_content_hash():
    from speakerdb.audio.wav import wav_bytes

    a = wav_bytes(voice(3, 0), RATE)
    time.sleep(1.1)  # a time-stamped header would differ now
    assert wav_bytes(voice(3, 0), RATE) == a
    samples, rate = sf.read(io.BytesIO(a), dtype="float32")
    assert rate == RATE and np.array_equal(samples, voice(3, 0))
