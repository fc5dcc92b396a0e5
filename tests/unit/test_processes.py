"""Several processes on one home: the writer lock (wait with a message, or --no-wait), two
ingests of overlapping sources at once, a long-lived instance (like ``serve``) that sees what
other processes write, index files never regressed by a stale process, a unique-key race
that is a skip, and the store generation that tells a process something changed."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from speakerdb.audio import Waveform
from speakerdb.config import CascadeConfig
from tests.synth import RATE, voice, write_corpus

REPO = Path(__file__).resolve().parents[2]


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k != "SPEAKERDB_HOME"}
    e["SPEAKERDB_MODEL"] = "spectral"
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speakerdb", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env(),
                          check=False)


def cli_async(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "speakerdb", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


class Lines:
    """The lines of a child's pipe, read by a thread (select() cannot see Python's buffer)."""

    def __init__(self, stream):
        self.queue: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.queue.put(line)
        self.queue.put(None)

    def until(self, wanted: str, timeout: float = 60) -> str:
        """Lines up to the first containing ``wanted`` (AssertionError on timeout or EOF)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            if wanted in line:
                return "".join(self.seen)
        raise AssertionError(f"{wanted!r} not seen in {''.join(self.seen)!r}")

    def rest(self, timeout: float = 120) -> str:
        """Everything read, up to the end of the stream."""
        out = []
        while True:
            line = self.queue.get(timeout=timeout)
            if line is None:
                return "".join(self.seen + out)
            out.append(line)


def manifest(path: Path, files: dict[str, list[Path]]) -> Path:
    path.write_text("path,speaker\n" + "".join(
        f"{p},{spk}\n" for spk, ps in files.items() for p in ps))
    return path


def snapshot(home: Path) -> tuple[int, int, list]:
    from speakerdb.api import SpeakerDB

    with SpeakerDB.open(home, catch_up=False) as db:
        c = db.store.counts()
        assert db.check().ok, db.check().problems
        return c["recordings"], c["segments"], [(s.label, s.recordings) for s in db.speakers()]


@pytest.fixture
def home(tmp_path, spectral_embedder) -> Path:
    from speakerdb.api import SpeakerDB

    h = tmp_path / "home"
    SpeakerDB.create(h, model="spectral", embedder=spectral_embedder).close()
    return h


# the writer lock --------------------------------------------------------------------------------
def test_a_second_writer_waits_saying_for_whom_or_fails_with_no_wait(home, tmp_path):
    a = write_corpus(tmp_path / "a", speakers=4, utterances=3)
    b = write_corpus(tmp_path / "b", speakers=2, utterances=2, first_speaker=6)
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.ingest_child", str(home), str(tmp_path / "a"), "2", "30",
         "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        Lines(holder.stdout).until("paused")  # one batch in, the lock held
        p = cli("ingest", tmp_path / "b", "--home", home, "--no-wait", "--json", "-q")
        assert p.returncode == 3, p
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("speakerdb: error: "), lines
        assert f"pid {holder.pid}" in lines[0] and "writing" in lines[0], lines[0]
        assert p.stdout == ""
        for args in (("speakers", "delete", "spk00"), ("recordings", "delete", "x"),
                     ("enroll", "x", str(b["spk06"][0])), ("calibrate",)):
            q = cli(*args, "--home", home, "--no-wait")
            assert q.returncode == 3 and f"pid {holder.pid}" in q.stderr, (args, q)

        waiter = cli_async("ingest", tmp_path / "b", "--home", home, "--json", "-q")
        waiter_err = Lines(waiter.stderr)
        said = waiter_err.until("waiting for")
        assert f"pid {holder.pid} (ingest_child.py" in said and str(home) in said, said
        assert waiter.poll() is None  # still waiting
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder never leaves the lock held
        holder.wait(30)
    out = waiter.stdout.read()
    waiter.wait(120)
    assert waiter.returncode == 0, waiter_err.rest()
    doc = json.loads(out)
    assert (doc["added"], doc["segments"], doc["skipped"]) == (4, 4, 0)
    p = cli("ingest", tmp_path / "a", "--home", home, "--json", "-q")
    doc = json.loads(p.stdout)
    assert doc["added"] + doc["skipped"] == 12 and doc["skipped"] >= 2  # the child's batch
    recordings, segments, _ = snapshot(home)
    assert (recordings, segments) == (16, 16)
    assert sum(len(v) for v in a.values()) == 12


def test_two_ingests_of_overlapping_sources_at_once(home, tmp_path):
    files = write_corpus(tmp_path / "c", speakers=6, utterances=3)
    spks = sorted(files)
    m1 = manifest(tmp_path / "one.csv", {s: files[s] for s in spks[:4]})
    m2 = manifest(tmp_path / "two.csv", {s: files[s] for s in spks[2:]})
    runs = [cli_async("ingest", m, "--home", home, "--json", "-q", "--batch", "2")
            for m in (m1, m2)]
    docs = []
    for r in runs:
        out, err = r.communicate(timeout=180)
        assert r.returncode == 0, err
        assert "Traceback" not in err and "IntegrityError" not in err
        docs.append(json.loads(out))
    assert sum(d["added"] for d in docs) == 18  # every file once
    assert sum(d["skipped"] for d in docs) == 6  # the overlap, skipped by whoever came second
    assert all(d["added"] == d["segments"] for d in docs)  # one segment per 1.5 s file
    recordings, segments, speakers = snapshot(home)
    assert (recordings, segments) == (18, 18)
    assert speakers == [(s, 3) for s in spks]


# a long-lived process sees the others ------------------------------------------------------------
def test_an_open_database_sees_what_another_process_writes(home, tmp_path, spectral_embedder):
    from speakerdb.api import SpeakerDB

    write_corpus(tmp_path / "a", speakers=4, utterances=3)
    new = write_corpus(tmp_path / "n", speakers=2, utterances=2, first_speaker=7)
    with SpeakerDB.open(home, embedder=spectral_embedder) as served:  # like `serve`
        served.ingest([tmp_path / "a"])
        probe = new["spk08"][0]
        before = served.identify(probe)
        assert before.speaker != "spk08"
        assert served.refresh() is False  # nothing changed: one cheap query

        assert cli("ingest", tmp_path / "n", "--home", home, "-q").returncode == 0
        after = served.identify(probe)
        assert after.decision == "match" and after.speaker == "spk08"
        assert after.score == pytest.approx(1.0, abs=1e-5)
        assert "spk08" in [s.label for s in served.speakers()]

        assert cli("speakers", "delete", "spk08", "--home", home).returncode == 0
        gone = served.identify(probe)
        assert all(c.speaker != "spk08" for c in gone.candidates)
        centroid = CascadeConfig(aggregation="centroid")
        assert served.identify(new["spk07"][1], cascade=centroid).speaker == "spk07"  # cached
        assert cli("speakers", "rename", "spk07", "seven", "--home", home).returncode == 0
        assert served.identify(new["spk07"][1], cascade=centroid).speaker == "seven"

        # this process now writes: its saved indexes hold every vector of the store
        served.enroll("late", [Waveform(voice(11, 0), RATE)])
        n_store = served.store.counts()["segments"]
    from speakerdb.index import IndexSet

    info = IndexSet.state(home)
    assert info.ntotal == n_store and n_store == 12 + 2 + 1
    assert snapshot(home)[1] == n_store


def test_a_stale_process_never_saves_over_newer_index_files(home, tmp_path, spectral_embedder):
    from speakerdb.api import SpeakerDB
    from speakerdb.index import IndexSet

    write_corpus(tmp_path / "a", speakers=3, utterances=2)
    write_corpus(tmp_path / "b", speakers=3, utterances=2, first_speaker=5)
    with SpeakerDB.open(home, embedder=spectral_embedder) as stale:
        stale.ingest([tmp_path / "a"])
        assert cli("ingest", tmp_path / "b", "--home", home, "-q").returncode == 0
        assert IndexSet.state(home).ntotal == 12
        assert stale.indexes.flush(force=True) is False  # behind the files: not saved
        assert IndexSet.state(home).ntotal == 12
        assert stale.refresh() is True and stale.indexes.set.ntotal == 12
        assert stale.indexes.flush(force=True) is True
    assert IndexSet.state(home).ntotal == 12
    assert snapshot(home)[1] == 12


def test_a_reader_does_not_save_while_another_process_writes(home, tmp_path):
    from speakerdb.store.home_lock import HomeLock

    write_corpus(tmp_path / "a", speakers=2, utterances=2)
    assert cli("ingest", tmp_path / "a", "--home", home, "-q").returncode == 0
    for p in home.glob("vectors*"):
        p.unlink()  # a reader would rebuild them on open
    with HomeLock(home).hold():  # "another process" writing (another open file in this one)
        p = cli("identify", tmp_path / "a" / "spk00" / "utt1.wav", "--home", home, "--json")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["results"][0]["speaker"] == "spk00"
        assert not list(home.glob("vectors*"))  # caught up in memory only
    p = cli("identify", tmp_path / "a" / "spk00" / "utt1.wav", "--home", home, "--json")
    assert p.returncode == 0 and (home / "vectors.json").is_file()


# the store ---------------------------------------------------------------------------------------
def test_the_generation_changes_with_every_write_and_only_then(db, tiny_corpus):
    store = db.store
    g = [store.generation()]

    def changed() -> bool:
        g.append(store.generation())
        return g[-1] > g[-2]

    db.ingest([tiny_corpus])
    assert changed()
    store.counts(), store.segment_ids(), db.speakers(), store.get_setting("x")
    run = store.start_run(["x"], "folders")
    store.finish_run(run, "done", {})
    assert not changed()  # reads and run bookkeeping only
    db.rename_speaker("spk00", "zero")
    assert changed()
    db.merge_speakers("zero", "spk01")
    assert changed()
    ref = next(iter(store.segment_refs(store.segment_ids()[:1]).values()))
    db.delete_recording(ref.path)
    assert changed()
    db.delete_speaker("spk03")
    assert changed()
    store.set_setting("threshold", 0.5)
    assert changed()


def test_a_unique_key_race_is_a_skip(store_url, tmp_path, spectral_embedder):
    """Another process stores a recording between this batch's look-up and its insert (on
    PostgreSQL the clash aborts the transaction: the batch is written again without it)."""
    from speakerdb.api import SpeakerDB
    from speakerdb.store.engine import make_engine
    from speakerdb.store.store import Store

    url = None if store_url.startswith("sqlite") else store_url
    db = SpeakerDB.create(tmp_path / "home", model="spectral", db_url=url,
                          embedder=spectral_embedder)
    write_corpus(tmp_path / "c", speakers=2, utterances=2)
    other = Store(make_engine(db.store.url))
    store, seen, raced = db.store, {}, []
    original_write, original_ids = store._write_batch, store._speaker_ids

    def write(run_id, recordings, failures, *rest):
        seen["batch"] = recordings
        return original_write(run_id, recordings, failures, *rest)

    def speaker_ids(s, labels):
        if not raced and seen.get("batch"):
            raced.append(seen["batch"][0].sha256)
            other.write_batch(None, seen["batch"][:1], [])  # commits while `s` has not written
        return original_ids(s, labels)

    store._write_batch, store._speaker_ids = write, speaker_ids
    try:
        stats = db.ingest([tmp_path / "c"])
    finally:
        del store._write_batch, store._speaker_ids
        other.engine.dispose()
    assert raced
    assert (stats.added, stats.skipped, stats.segments) == (3, 1, 3)
    assert db.store.counts()["recordings"] == 4
    assert db.refresh() and db.indexes.set.ntotal == 4  # the other's segment is followed
    db.indexes.flush(force=True)
    assert db.check().ok
    db.close()


def test_lock_file_says_who_holds_it(tmp_path):
    from speakerdb.errors import Busy
    from speakerdb.store.home_lock import HomeLock

    a, b = HomeLock(tmp_path), HomeLock(tmp_path)
    with a.hold():
        with a.hold():  # re-entrant
            assert a.depth == 2
        assert f"pid {os.getpid()}" in b.holder()
        with pytest.raises(Busy, match=f"pid {os.getpid()}"):
            with b.hold(wait_s=0):
                pass
        t0 = time.monotonic()
        with pytest.raises(Busy, match="still writing to this database after 0.3 s"):
            with b.hold(wait_s=0.3):
                pass
        assert time.monotonic() - t0 >= 0.3
        with b.try_hold() as got:
            assert got is False
    assert (tmp_path / "writer.lock").read_text() == ""
    with b.try_hold() as got:
        assert got is True


def test_the_holder_line_never_shows_options(monkeypatch):
    from speakerdb.store import home_lock

    monkeypatch.setattr(sys, "argv", ["/x/speakerdb/__main__.py", "serve", "--token", "s3cret"])
    assert "(speakerdb serve) since" in home_lock._who() and "s3cret" not in home_lock._who()
    monkeypatch.setattr(sys, "argv", ["/bin/speakerdb", "ingest", "corpus", "--batch", "2"])
    assert f"pid {os.getpid()} (speakerdb ingest corpus) since" in home_lock._who()


def test_an_open_database_takes_over_a_rotation_fitted_elsewhere(tmp_path):
    from speakerdb.api import SpeakerDB
    from tests.synth import Flat192

    write_corpus(tmp_path / "c", speakers=3, utterances=3)
    probe = Waveform(voice(2, 1), RATE)
    with SpeakerDB.create(tmp_path / "h", model="flat192", embedder=Flat192()) as served:
        served.ingest([tmp_path / "c"])
        before = served.identify(probe)
        assert served.space.name == "identity"
        with SpeakerDB.open(tmp_path / "h", embedder=Flat192()) as other:  # another writer
            assert other.fit_rotation(force=True)
            rotated = other.space.name
        after = served.identify(probe)
        assert served.space.name == rotated != "identity"
        assert after.speaker == before.speaker == "spk02"
        assert after.score == pytest.approx(before.score, abs=1e-5)
        assert served.indexes.set.info is None or served.indexes.set.space == rotated
        assert served.check().ok


def test_open_reads_again_when_another_save_removes_the_files_it_was_about_to_map(
        home, tmp_path, spectral_embedder, monkeypatch):
    """Another process rebuilds (new epoch, old files removed) after this open read the
    description but before it mapped the rows: the open reads the new description instead of
    rebuilding itself."""
    from speakerdb.api import SpeakerDB
    from speakerdb.index import IndexSet
    from speakerdb.index.faiss_tier import FaissTier
    from speakerdb.index.matrix import VectorMatrix

    write_corpus(tmp_path / "a", speakers=3, utterances=2)
    assert cli("ingest", tmp_path / "a", "--home", home, "-q").returncode == 0
    epoch = IndexSet.state(home).matrix.epoch
    real_load, real_rebuild = VectorMatrix.load.__func__, FaissTier.rebuild
    others = []

    def load(cls, directory, dims, state):
        if not others:
            with SpeakerDB.open(home, embedder=spectral_embedder, catch_up=False) as other:
                others.append(other.indexes)
                other.rebuild_indexes()
        return real_load(cls, directory, dims, state)

    def rebuild(self, save=True):
        if self not in others:
            raise AssertionError("rebuilt although the other process's save was usable")
        return real_rebuild(self, save)

    monkeypatch.setattr(VectorMatrix, "load", classmethod(load))
    monkeypatch.setattr(FaissTier, "rebuild", rebuild)
    with SpeakerDB.open(home, embedder=spectral_embedder) as db:
        db.indexes.ensure_open()
        assert len(others) == 1
        assert db.indexes.set.ntotal == db.store.counts()["segments"]
    assert IndexSet.state(home).matrix.epoch == epoch + 1
    assert not list(home.glob(f"vectors-{epoch}.*"))


def test_a_write_that_bypasses_the_generation_is_still_caught_up(home, tmp_path):
    """Opening trusts saved vectors whose store generation is the store's only while the
    store's segment count and largest id agree too: a row deleted behind the library's back
    (no generation bump) makes the open rebuild instead of serving a vector the store lost."""
    from sqlalchemy import delete, func, select

    from speakerdb.api import SpeakerDB
    from speakerdb.store.models import Segment

    write_corpus(tmp_path / "a", speakers=2, utterances=2)
    assert cli("ingest", tmp_path / "a", "--home", home, "-q").returncode == 0
    with SpeakerDB.open(home, catch_up=False) as db:
        assert db.indexes.plan() == "current"
        generation = db.store.generation()
        with db.store.engine.begin() as c:
            top = c.execute(select(func.max(Segment.id))).scalar()
            c.execute(delete(Segment).where(Segment.id == top))
        assert db.store.generation() == generation
        assert db.indexes.plan() == "rebuild"
    with SpeakerDB.open(home) as db:
        assert db.check().ok and db.indexes.set.ntotal == db.store.counts()["segments"]


def test_saved_vectors_missing_ids_another_writer_interleaved_are_appended_not_rebuilt(
        home, tmp_path, spectral_embedder):
    """Several homes on one store: the segments another writer committed can sit between this
    home's saved ids. Every saved id is still in the store (ids are never reused), so open and
    ``check`` add what is missing to the saved vectors instead of rebuilding them."""
    import numpy as np

    from speakerdb.api import SpeakerDB
    from speakerdb.index import IndexSet

    write_corpus(tmp_path / "a", speakers=3, utterances=2)
    assert cli("ingest", tmp_path / "a", "--home", home, "-q").returncode == 0
    with SpeakerDB.open(home, embedder=spectral_embedder) as db:
        ids = db.store.segment_ids()
        db.indexes.set.remove(ids[1:3])  # as if another writer had committed these meanwhile
        db.indexes._dirty = True
        db.indexes.flush(force=True)
        saved = db.indexes.saved_generation()
    with SpeakerDB.open(home, embedder=spectral_embedder, catch_up=False) as db:
        # saved at the store's generation, yet lacking segments: damage, which check reports
        assert db.indexes.plan() == "append" and saved == db.store.generation()
        assert not db.check(quick=True).ok
        db.store.set_setting("touched", 1)  # ...the other writer's commit came after the save
    with SpeakerDB.open(home, embedder=spectral_embedder, catch_up=False) as db:
        assert db.indexes.plan() == "append"
    epoch = IndexSet.state(home).matrix.epoch
    done = cli("check", "--home", home, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["notes"] == [
        f"the saved vectors were behind the store: caught up to {ids.size} vectors"]
    assert IndexSet.state(home).matrix.epoch == epoch  # appended to, not rewritten
    with SpeakerDB.open(home, embedder=spectral_embedder) as db:
        assert db.indexes.plan() == "current"
        np.testing.assert_array_equal(db.indexes.set.ids(), ids)
        assert db.check().ok
    with SpeakerDB.open(home, embedder=spectral_embedder) as db:  # an id the store lost: rebuild
        db.indexes.set.add(np.array([ids[-1] + 100]), np.ones((1, 256), np.float32) / 16)
        db.indexes._dirty = True
        db.indexes.flush(force=True)
    with SpeakerDB.open(home, embedder=spectral_embedder, catch_up=False) as db:
        assert db.indexes.plan() == "rebuild"
