"""Ingest with worker processes (speakerdb/ingest/pool.py): the same batches and the same
database as the in-process reader, long inputs decoded in process, dead workers survived,
workers without torch."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal

import numpy as np
import pytest
import soundfile as sf

from speakerdb.api import SpeakerDB
from speakerdb.config import IngestConfig
from tests.audio_corpus import speechlike, write_bad_corpus
from tests.synth import write_corpus

R = 16000


@pytest.fixture
def mixed(tmp_path):
    """Sources with good files, bad ones (empty, corrupt, too short, silent, NaN, ...), a
    missing one (manifest) and duplicates within the run (two copies of one file)."""
    root = tmp_path / "mixed"
    write_corpus(root / "c", speakers=4, utterances=4)
    write_bad_corpus(root / "c" / "bad", include_long=False)
    shutil.copy(root / "c" / "spk00" / "utt0.wav", root / "c" / "spk01" / "dup.wav")
    shutil.copy(root / "c" / "spk02" / "utt1.wav", root / "c" / "spk03" / "zz_dup.wav")
    (root / "m.csv").write_text(f"path,speaker\n{root / 'gone.wav'},spk09\n"
                                f"{root / 'c' / 'spk00' / 'utt1.wav'},spk00\n")
    return [root / "c", root / "m.csv"]


def _snapshot(db):
    """{(path, start_s): (speaker, end_s, vector)}, the failures, the counts."""
    ids, raw = db.store.all_vectors()
    refs = db.store.segment_refs(ids.tolist())
    rows = {(refs[i].path, refs[i].start_s): (refs[i].speaker, refs[i].end_s, v)
            for i, v in zip(ids.tolist(), raw)}
    failures = sorted((f["input"], f["reason"], f["error"]) for f in db.store.failures())
    counts = db.store.counts()
    counts.pop("ingest_runs")
    return rows, failures, counts


def _same(a, b):
    rows_a, fail_a, counts_a = a
    rows_b, fail_b, counts_b = b
    assert set(rows_a) == set(rows_b)
    for k, (spk, end, v) in rows_a.items():
        assert (spk, end) == rows_b[k][:2]
        np.testing.assert_allclose(v, rows_b[k][2], rtol=0, atol=1e-6)
    assert fail_a == fail_b
    counts_a, counts_b = dict(counts_a), dict(counts_b)
    # the store sums durations in the order the batches were written (any order, with workers)
    assert counts_a.pop("duration_s") == pytest.approx(counts_b.pop("duration_s"), abs=1e-9)
    assert counts_a == counts_b


def _ingest(home, sources, embedder, workers, batch=3, **kw):
    with SpeakerDB.create(home, model="spectral", embedder=embedder) as db:
        stats = db.ingest(sources, config=IngestConfig(files_per_batch=batch, workers=workers),
                          **kw)
        assert db.check().ok
        return stats, _snapshot(db)


def _counts(stats):
    return (stats.inputs, stats.added, stats.segments, stats.skipped, stats.failed,
            sorted((f["input"], f["reason"], f["error"]) for f in stats.failures))


def test_workers_build_the_database_the_in_process_reader_builds(tmp_path, mixed,
                                                                 spectral_embedder):
    s0, db0 = _ingest(tmp_path / "w0", mixed, spectral_embedder, 0)
    s2, db2 = _ingest(tmp_path / "w2", mixed, spectral_embedder, 2)
    assert _counts(s0) == _counts(s2)
    assert s0.skipped == 2  # the second copy of each of two files
    failures = _counts(s0)[-1]
    assert {f[1] for f in failures} >= {"too_short", "silent", "unreadable"}
    assert any(f[2].endswith("gone.wav: no such file") for f in failures)
    _same(db0, db2)
    assert (s0.workers, s2.workers) == (0, 2)
    assert s2.wait_s > 0 and s2.decode_s > 0 and s2.embed_s > 0


def _signature(batch):
    return (batch.n_inputs, batch.skipped,
            tuple((d.item.path, d.sha256, d.prepared.duration_s, d.prepared.sample_rate,
                   tuple((s.start_s, s.end_s, s.samples.tobytes()) for s in d.prepared.segments))
                  for d in batch.decoded),
            tuple(batch.failures), tuple(batch.labels))


def _readers(items, known=lambda shas: set(), labels=None, **kw):
    from speakerdb.ingest.pool import PoolReader
    from speakerdb.ingest.reader import Reader

    return (Reader(items, known, files_per_batch=3, labels=labels),
            PoolReader(items, known, files_per_batch=3, workers=2, labels=labels, **kw))


def test_each_batch_is_the_batch_the_in_process_reader_gives(mixed, db):
    from speakerdb.ingest.sources import discover

    db.ingest([mixed[0] / "spk00"], config=IngestConfig(workers=0))  # some are known
    items = discover(mixed)
    known = db.store.known_recordings
    reader, pool = _readers(items, known, db.store.recording_labels)
    want = sorted(map(_signature, reader), key=repr)
    got = sorted(map(_signature, pool), key=repr)
    assert got == want and len(got) == -(-len(items) // 3)


def test_the_pool_reader_lets_go_of_each_batch(mixed):
    import gc
    import weakref

    from speakerdb.ingest.sources import discover

    _, pooled = _readers(discover(mixed))
    refs = [weakref.ref(batch) for batch in pooled]
    gc.collect()
    assert len(refs) > 4 and all(r() is None for r in refs)  # the audio is not kept


def test_long_inputs_are_decoded_in_process_embedding_as_read(tmp_path, monkeypatch,
                                                              spectral_embedder):
    import speakerdb.ingest.reader as reader_module
    from speakerdb.ingest.pool import PoolReader
    from speakerdb.ingest.runner import embed_segments
    from speakerdb.ingest.sources import discover

    monkeypatch.setattr(reader_module, "LONG_SEGMENTS", 2)
    write_corpus(tmp_path / "c", speakers=2, utterances=3)
    sf.write(tmp_path / "c" / "spk01" / "talk.wav", speechlike(45.0, R, seed=3), R,
             subtype="PCM_16")
    embed = lambda segs: embed_segments(spectral_embedder, segs, 16)  # noqa: E731
    items = discover([tmp_path / "c"])
    want = {d.item.path: d for b in reader_module.Reader(items, lambda s: set(), embed=embed)
            for d in b.decoded}
    batches = list(PoolReader(items, lambda s: set(), files_per_batch=3, workers=2, embed=embed))
    got = {d.item.path: d for b in batches for d in b.decoded}
    assert set(got) == set(want) and len(got) == 7
    talk = got[tmp_path / "c" / "spk01" / "talk.wav"]
    assert talk.raw is not None and talk.raw.shape[0] > 2
    np.testing.assert_allclose(talk.raw, want[talk.item.path].raw, rtol=0, atol=1e-6)
    assert all(len(s.samples) == 0 for s in talk.prepared.segments)
    assert talk.prepared.signal_s == want[talk.item.path].prepared.signal_s
    assert sum(b.embed_s for b in batches) > 0
    assert all(d.raw is None for p, d in got.items() if p != talk.item.path)

    s0, db0 = _ingest(tmp_path / "w0", [tmp_path / "c"], spectral_embedder, 0)
    s2, db2 = _ingest(tmp_path / "w2", [tmp_path / "c"], spectral_embedder, 2)
    assert _counts(s0) == _counts(s2) and s0.segments > 7
    _same(db0, db2)


def _kill_workers():
    for p in multiprocessing.active_children():
        os.kill(p.pid, signal.SIGKILL)


@pytest.mark.parametrize("restarts", [3, 0])
def test_dead_workers_cost_no_input(mixed, monkeypatch, restarts):
    import speakerdb.ingest.pool as pool
    from speakerdb.ingest.sources import discover

    monkeypatch.setattr(pool, "MAX_RESTARTS", restarts)
    items = discover(mixed)
    reader, pooled = _readers(items)
    want = sorted(map(_signature, reader), key=repr)
    got = []
    for batch in pooled:
        if not got:
            _kill_workers()
        got.append(_signature(batch))
    assert sorted(got, key=repr) == want
    assert pooled.broken == 1 and pooled.restarts == min(1, restarts)
    assert multiprocessing.active_children() == []  # the pool is shut down


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_run_stops_the_workers_and_resumes_without_duplicates(
        tmp_path, mixed, monkeypatch, spectral_embedder, error):
    from speakerdb.ingest.writer import StoreWriter

    _, whole = _ingest(tmp_path / "w0", mixed, spectral_embedder, 0)
    write, calls = StoreWriter.write, []

    def failing(self, *args, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise error("disk full")
        return write(self, *args, **kw)

    home = tmp_path / "w2"
    with SpeakerDB.create(home, model="spectral", embedder=spectral_embedder) as db:
        monkeypatch.setattr(StoreWriter, "write", failing)
        with pytest.raises(error, match="disk full"):
            db.ingest(mixed, config=IngestConfig(files_per_batch=3, workers=2))
        assert multiprocessing.active_children() == []
        monkeypatch.setattr(StoreWriter, "write", write)
        assert 0 < db.store.counts()["recordings"] < whole[2]["recordings"]
        again = db.ingest(mixed, config=IngestConfig(files_per_batch=3, workers=2))
        assert again.added > 0 and db.check().ok
        _same(_once(_snapshot(db)), _once(whole))


def _once(snapshot):
    """``snapshot`` with each failure once: an input that cannot even be hashed (gone.wav) has
    no content to be known by, so each run records it again (with or without workers), and
    batches finish in any order, so the failed run may have recorded it already."""
    rows, failures, counts = snapshot
    counts = {k: v for k, v in counts.items() if k != "failures"}
    return rows, sorted(set(failures)), counts


def test_workers_do_not_import_torch(tmp_path):
    from speakerdb.audio import AudioPolicy
    from speakerdb.ingest.pool import decode_chunk, hash_chunk, heavy_modules, start_pool
    from speakerdb.ingest.sources import discover

    write_corpus(tmp_path / "c", speakers=1, utterances=2)
    items = discover([tmp_path / "c"])
    pool = start_pool(1)
    try:
        hashed, _ = pool.submit(hash_chunk, items).result()
        todo = [(it, sha, data) for it, (sha, data) in zip(items, hashed)]
        decoded, _ = pool.submit(decode_chunk, todo, AudioPolicy(), 32).result()
        assert len(decoded) == 2 and all(d.prepared.segments for d in decoded)
        assert pool.submit(heavy_modules).result() == []
    finally:
        pool.shutdown()


def test_workers_resolve_from_the_cores_and_the_inputs():
    from speakerdb.errors import UsageError
    from speakerdb.ingest.engine import IngestJob, LocalEngine
    from speakerdb.ingest.pool import default_workers, resolve_workers

    assert resolve_workers(None, 100, 32) == default_workers() >= 1
    assert resolve_workers(None, 32, 32) == 0  # one batch: nothing to overlap
    assert resolve_workers(0, 100, 32) == 0 and resolve_workers(3, 1, 32) == 3
    job = IngestJob([], None, None, 1.0, lambda s: set(), workers=-1)
    with pytest.raises(UsageError, match="workers -1"):
        LocalEngine().run(job, None)
