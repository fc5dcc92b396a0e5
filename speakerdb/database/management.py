"""Speaker management over a ``SpeakerDB``: rename, merge, delete, enroll (listing is one
store query: ``Store.speaker_infos``).

Every operation is one store transaction followed by the index change it needs (deletes only;
rename and merge change labels, never vectors) and the invalidation of the scorer's cached
speaker state (centroids, cohorts), all under ``db.lock``.

Locking: every operation that writes first takes the home's writer lock against other
processes (``db.writing()``, ``speakerdb/database/processes.py``). ``db.lock`` (a ``threading.RLock``)
guards the in-memory FAISS indexes, which are changed in place. Writers hold it around each
store commit plus the index change that follows it (one ingest or enroll batch, a delete, a rename, a merge) and around index saves, rebuilds
and cache invalidation; ``identify`` holds it only around the search, the look-up of the hits'
labels and the aggregation (never while decoding or embedding). So a reader never sees an index
being changed nor index ids whose store rows were just deleted, and readers in other threads go
on while one thread ingests (SQLite in WAL mode serves their store reads meanwhile).

Enroll goes through the ingest path (reader → gate → runner → writer) with the inputs held in
memory: each is checked by ``audio.inputs.audio_input`` (so it fails as decode would), a path
or file object is read once, a ``Waveform`` is written as a float32 WAV in memory
(``audio.wav``; so its content hash is that WAV's sha256; the same samples enrolled twice are
recognised, a file with the same samples in another encoding is not).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from speakerdb.audio import AudioInput, Waveform, decode, describe
from speakerdb.audio.inputs import AudioSource, audio_input
from speakerdb.audio.wav import wav_bytes
from speakerdb.errors import AudioError, UsageError
from speakerdb.database.results import EnrollResult, SpeakerInfo

__all__ = ["ENROLL_SOURCE", "LockedWriter", "delete_recording", "delete_speaker", "enroll",
           "merge_speakers", "rename_speaker"]

ENROLL_SOURCE = "enroll"  # the ``source`` of enrolled recordings


class LockedWriter:
    """An ingest writer whose store commit and index update run under ``lock``; after a batch
    that changed labels, ``relabelled()`` (the scorer's invalidation, as after a rename)."""

    def __init__(self, writer, lock, relabelled=None):
        self.writer, self.lock, self.relabelled = writer, lock, relabelled

    def write(self, recordings, failures, labels=()):
        with self.lock:
            if not labels:
                return self.writer.write(recordings, failures)
            written = self.writer.write(recordings, failures, labels)
            if written.labels and self.relabelled is not None:
                self.relabelled()
            return written


def rename_speaker(db, old: str, new: str) -> SpeakerInfo:
    with db.writing(), db.lock:
        info = db.store.rename_speaker(old, new)
        db.scorer.invalidate()
    return info


def merge_speakers(db, source: str, target: str) -> SpeakerInfo:
    with db.writing(), db.lock:
        info = db.store.merge_speakers(source, target)
        db.scorer.invalidate()
        db.indexes.owners_changed(db.store.speaker_segment_ids(target))
    return info


def _delete(db, store_delete, key: str) -> int:
    """Run one store delete (it returns the removed segment ids), then drop them from the
    indexes and the cached speaker state, all under the lock."""
    with db.writing(), db.lock:
        db.indexes.ensure_open()
        removed = store_delete(key)
        db.scorer.invalidate()
        db.indexes.remove(removed)
    return len(removed)


def delete_speaker(db, label: str) -> int:
    return _delete(db, db.store.delete_speaker, label)


def delete_recording(db, key: str) -> int:
    return _delete(db, db.store.delete_recording, key)


# enroll ---------------------------------------------------------------------------------------
@dataclass
class _Input:
    name: str
    data: bytes | None = None
    error: AudioError | None = None


def _read(x: AudioInput, name: str) -> _Input:
    """The bytes of ``x`` (a float32 WAV for a Waveform), or the AudioError of reading it."""
    try:
        src = audio_input(x, name)
        if src.waveform is not None:
            w = decode(src, name)
            return _Input(name, wav_bytes(w.samples, w.sample_rate))
        return _Input(name, src.read_bytes())
    except AudioError as e:
        return _Input(name, error=e)


def _inputs(audio) -> list:
    """``audio`` as a list of inputs: one input (of any type, also one no reader takes, so
    that it fails like the others) or an iterable of them."""
    if isinstance(audio, (str, os.PathLike, bytes, bytearray, memoryview, Waveform,
                          AudioSource)) or hasattr(audio, "read"):
        return [audio]
    try:
        return list(audio)
    except TypeError:
        return [audio]


def _names(audio: list, names: list[str] | None) -> list[str]:
    if names is None:  # anonymous inputs (waveforms, unnamed streams) get their position
        many = len(audio) > 1
        return [f"{d[:-1]} #{k + 1}>" if many and d.startswith("<") else d
                for k, d in enumerate(describe(x) for x in audio)]
    if len(names) != len(audio):
        raise UsageError(f"enroll: {len(names)} names for {len(audio)} audio inputs")
    return [str(n) for n in names]


def enroll(db, speaker: str, audio, names: list[str] | None = None,
           min_duration_s: float | None = None) -> EnrollResult:
    """Add the recordings ``audio`` (paths, bytes, binary file objects, Waveforms) labelled
    ``speaker``: one store transaction, indexes updated like ingest. Content already stored
    (same sha256) or repeated in ``audio`` is skipped with the reason; inputs that cannot be
    read, are too short or silent fail with ingest's reasons (and are stored as failures
    like ingest's, except those that could not even be read)."""
    from speakerdb.store.speakers import check_label

    check_label(speaker)
    db.require_writable("enroll")
    with db.writing():  # the home's writer lock (speakerdb/processes.py)
        return _enroll(db, speaker, audio, names, min_duration_s)


def _enroll(db, speaker, audio, names, min_duration_s) -> EnrollResult:
    from speakerdb.audio.gates import gate_seconds
    from speakerdb.ingest.engine import IngestJob, ingest_engine
    from speakerdb.ingest.sources import SourceItem
    from speakerdb.ingest.writer import StoreWriter

    gate = gate_seconds(min_duration_s, db.gates.min_enroll_s)
    audio = _inputs(audio)
    inputs = [_read(x, n) for x, n in zip(audio, _names(audio, names))]
    failed = [{"input": i.name, "reason": i.error.reason, "error": str(i.error)}
              for i in inputs if i.error is not None]
    readable = [(i, hashlib.sha256(i.data).hexdigest()) for i in inputs if i.error is None]
    stored = db.store.recording_labels(sha for _, sha in readable)
    skipped, first, items = [], {}, []
    for i, sha in readable:
        if sha in stored:
            as_ = stored[sha] if stored[sha] is not None else "unlabelled"
            skipped.append({"input": i.name, "reason": f"already in the database as {as_}"})
        elif sha in first:
            skipped.append({"input": i.name, "reason": f"same audio as {first[sha]}"})
        else:
            first[sha] = i.name
            items.append(SourceItem(AudioSource(i.name, data=i.data), speaker, ENROLL_SOURCE))
    if not items:
        return EnrollResult(speaker, 0, 0, skipped, failed)
    embedder = db.embedder
    job = IngestJob(items, embedder, db.policy, gate, lambda shas: set(),
                    files_per_batch=len(items), embed_batch=16)
    with db.lock:
        db.indexes.ensure_open()
    writer = LockedWriter(StoreWriter(db.store, db.indexes, None), db.lock)
    try:
        stats = ingest_engine("local").run(job, writer)
        with db.lock:
            db.indexes.flush(force=True)
            db.fit_rotation()
    finally:
        with db.lock:
            db.scorer.invalidate()
    failed += stats.failures
    return EnrollResult(speaker, stats.added, stats.segments, skipped, failed)
