import numpy as np
import pytest
from sqlalchemy import inspect

from speakerdb.errors import ModelMismatchError, NotFound, StoreError, UsageError
from speakerdb.store.engine import make_engine, sqlite_url
from speakerdb.store.migrate import current_revision, head_revision, upgrade
from speakerdb.store.records import FailureIn, RecordingIn
from speakerdb.store.store import Store


@pytest.fixture
def store(store_url):
    engine = make_engine(store_url)
    upgrade(engine)
    s = Store(engine)
    s.bind_model("m", "a" * 64, (64, 128, 192, 256), 256)
    yield s
    engine.dispose()


def rec(sha, speaker="ann", n=2, seed=0):
    raw = np.random.default_rng(seed).standard_normal((n, 256)).astype(np.float32)
    return RecordingIn(sha, f"/x/{sha}.wav", speaker, 2.0 * n, 16000, 1, "folders",
                       [2.0 * i for i in range(n)], [2.0 * i + 2 for i in range(n)], raw)


def test_migrations_create_every_table_and_are_at_head(store):
    names = set(inspect(store.engine).get_table_names())
    assert {"models", "speakers", "recordings", "segments", "ingest_runs", "failures",
            "settings", "alembic_version"} <= names
    assert current_revision(store.engine) == head_revision()


def test_sqlite_uses_wal(store):
    if store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_write_batch_round_trips_vectors(store):
    r1, r2 = rec("1" * 64, seed=1), rec("2" * 64, "bob", n=3, seed=2)
    ids, raw = store.write_batch(None, [r1, r2], [])
    assert len(ids) == 5 and raw.shape == (5, 256)
    sids, sraw = store.all_vectors()
    np.testing.assert_array_equal(sids, ids)
    np.testing.assert_array_equal(sraw, np.concatenate([r1.raw, r2.raw]))
    refs = store.segment_refs(ids)
    assert refs[int(ids[3])].speaker == "bob" and refs[int(ids[3])].start_s == 2.0
    assert store.counts()["speakers"] == 2 and store.counts()["segments"] == 5


def test_known_content_is_skipped_not_duplicated(store):
    store.write_batch(None, [rec("1" * 64)], [])
    ids, _ = store.write_batch(None, [rec("1" * 64), rec("3" * 64, seed=3)], [])
    assert len(ids) == 2
    assert store.counts()["recordings"] == 2
    assert store.known_recordings(["1" * 64, "9" * 64]) == {"1" * 64}


def test_failures_are_recorded_once(store):
    f = FailureIn("/x/bad.wav", "b" * 64, "too_short", "/x/bad.wav: too short")
    store.write_batch(None, [], [f, f])
    store.write_batch(None, [], [f])
    assert store.failures() == [{"input": "/x/bad.wav", "reason": "too_short",
                                 "error": "/x/bad.wav: too short"}]
    assert store.known_failures(["b" * 64]) == {"b" * 64}


def test_ids_are_never_reused_after_delete(store):
    ids1, _ = store.write_batch(None, [rec("1" * 64, "ann")], [])
    store.delete_speaker("ann")
    ids2, _ = store.write_batch(None, [rec("2" * 64, "ann")], [])
    assert ids2.min() > ids1.max()


def test_delete_speaker_and_recording(store):
    store.write_batch(None, [rec("1" * 64, "ann"), rec("2" * 64, "bob", n=3)], [])
    removed = store.delete_recording("2" * 10)
    assert len(removed) == 3
    assert len(store.delete_speaker("ann")) == 2
    assert store.counts() | {"duration_s": 0} == {  # bob went with his last recording
        "speakers": 0, "recordings": 0, "unlabelled_recordings": 0, "segments": 0,
        "failures": 0, "ingest_runs": 0, "duration_s": 0}
    with pytest.raises(NotFound):
        store.delete_speaker("ann")
    with pytest.raises(NotFound):
        store.delete_recording("nothing")



def test_recording_segments_give_each_recordings_content_path_and_segments(store):
    ids, _ = store.write_batch(None, [rec("1" * 64, "ann", n=2), rec("2" * 64, None, n=3),
                                      rec("3" * 64, "bob", n=1)], [])
    store.delete_recording("3" * 64)
    got = store.recording_segments()
    assert [(sha, path, segs.tolist()) for sha, path, segs in got.values()] == [
        ("1" * 64, f"/x/{'1' * 64}.wav", ids[:2].tolist()),
        ("2" * 64, f"/x/{'2' * 64}.wav", ids[2:5].tolist())]
    refs = store.segment_refs(ids[:5])
    for segs in (v[2] for v in got.values()):
        assert len({refs[int(i)].path for i in segs}) == 1
        assert segs.dtype == np.int64

def test_model_binding(store):
    assert store.bind_model("m", "a" * 64, (64,), 256).name == "m"
    with pytest.raises(ModelMismatchError, match="bound to model m"):
        store.bind_model("other", "c" * 64, (64,), 256)


def test_settings(store):
    assert store.get_setting("threshold", 0.5) == 0.5
    store.set_setting("threshold", {"value": 0.7, "method": "eer"})
    store.set_setting("threshold", {"value": 0.6, "method": "far"})
    assert store.get_setting("threshold") == {"value": 0.6, "method": "far"}


def test_bad_urls(tmp_path):
    with pytest.raises(UsageError, match="not a database URL"):
        make_engine("::::")
    with pytest.raises(StoreError, match="does not exist"):
        make_engine(sqlite_url(tmp_path / "no" / "dir" / "x.sqlite"))
