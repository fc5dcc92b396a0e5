"""The metadata store: every function one transaction, plain values in and out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from speakerdb.errors import AmbiguousKey, ModelMismatchError, NotFound, StoreError
from speakerdb.store.engine import (lock_store, retried_on_conflict, store_error, upsert,
                                    writers_conflicted)
from speakerdb.store.models import (
    Failure,
    IngestRun,
    ModelRow,
    Recording,
    Segment,
    Setting,
    Speaker,
    utcnow,
)
from speakerdb.store.generation import CHANGE, read_generation, track_writes
from speakerdb.store.records import BoundModel, FailureIn, LabelIn, RecordingIn, SegmentRef
from speakerdb.store.speakers import SpeakerQueries

__all__ = ["Store"]


class Store(SpeakerQueries):
    """Typed access to one metadata store. ``engine`` must already be migrated; speaker
    management queries come from ``SpeakerQueries`` (``store/speakers.py``)."""

    def __init__(self, engine: Engine, name: str | None = None):
        self.engine = engine
        self.name = name or engine.url.render_as_string()  # what messages call this store
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        track_writes(self._sessions)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the store (with any password: ``engine.redact`` for
        messages)."""
        return self.engine.url.render_as_string(hide_password=False)

    def close(self) -> None:
        """Close the store's connections (the store can be used again: they reopen)."""
        self.engine.dispose()

    def generation(self) -> int:
        """The store generation (``store/generation.py``): it changes with every write
        transaction of any process, so an unchanged number means nothing to catch up."""
        try:
            return read_generation(self.engine)
        except SQLAlchemyError as e:
            raise store_error(self.name, e) from e

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        try:
            with self._sessions.begin() as s:
                yield s
        except SQLAlchemyError as e:
            raise store_error(self.name, e) from e

    # model binding -------------------------------------------------------------------------
    def bound_model(self) -> BoundModel | None:
        with self.session() as s:
            row = s.scalars(select(ModelRow).order_by(ModelRow.id)).first()
            if row is None:
                return None
            return BoundModel(row.name, row.sha256, tuple(row.dims), row.raw_dim)

    def bind_model(self, name: str, sha256: str, dims: Iterable[int], raw_dim: int) -> BoundModel:
        """Bind an empty database to a model; a bound one must match (else ModelMismatchError)."""
        current = self.bound_model()
        if current is None:  # several processes may bind one new store at once: one does
            try:
                with self.session() as s:
                    lock_store(s)
                    if s.scalars(select(ModelRow.id)).first() is None:
                        s.add(ModelRow(name=name, sha256=sha256, dims=list(dims),
                                       raw_dim=raw_dim))
            except StoreError as e:
                if not isinstance(e.__cause__, IntegrityError):
                    raise
            current = self.bound_model()
        if current.sha256 != sha256:
            raise ModelMismatchError(
                f"database is bound to model {current.name} ({current.sha256[:12]}), "
                f"not {name} ({sha256[:12]})"
            )
        return current

    # settings ------------------------------------------------------------------------------
    def get_setting(self, key: str, default=None):
        with self.session() as s:
            row = s.get(Setting, key)
            return default if row is None else row.value

    def set_setting(self, key: str, value) -> None:
        with self.session() as s:
            s.execute(upsert(s, Setting, {"key": key, "value": value}, ("key",)))

    # ingest --------------------------------------------------------------------------------
    def known_recordings(self, shas: Iterable[str]) -> set[str]:
        """The given content hashes that are stored recordings."""
        return self._present(Recording.sha256, shas)

    def known_failures(self, shas: Iterable[str]) -> set[str]:
        """The given content hashes already recorded as failed inputs."""
        return self._present(Failure.sha256, shas)

    def _present(self, column, values: Iterable[str]) -> set[str]:
        values = list(set(values))
        found: set[str] = set()
        with self.session() as s:
            for i in range(0, len(values), 500):
                found.update(s.scalars(select(column).where(column.in_(values[i : i + 500]))))
        return found

    def start_run(self, sources: list[str], layout: str) -> int:
        with self.session() as s:
            run = IngestRun(sources=sources, layout=layout, status="running")
            s.add(run)
            s.flush()
            return run.id

    def finish_run(self, run_id: int, status: str, summary: dict) -> None:
        with self.session() as s:
            run = s.get(IngestRun, run_id)
            if run is not None:
                run.status, run.summary, run.finished_at = status, summary, utcnow()

    def write_batch(
        self, run_id: int | None, recordings: list[RecordingIn], failures: list[FailureIn],
        counts: dict | None = None, labels: list[LabelIn] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Write one batch in one transaction. Content already present is skipped, also
        content another process stored while this one was writing the batch (the unique-key
        clash rolls the batch back and it is written again without that content; so does a
        PostgreSQL deadlock between two writers, which rolls one of them back).

        Returns the new segments' ids (n,) int64 and raw vectors (n, raw_dim) float32;
        ``counts``, when given, gets ``recordings``: how many recordings were inserted, and
        ``generation``: the store generation before and after this transaction (or None),
        ``labels``: the sha256s of the stored recordings given their label from ``labels``
        (``apply_labels``, in the same transaction).
        """
        for attempt in range(5):
            try:
                return self._write_batch(run_id, recordings, failures, counts, labels)
            except StoreError as e:
                if not _clash(e.__cause__) or attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _write_batch(self, run_id, recordings, failures, counts, labels):
        new_ids: list[int] = []
        new_raw: list[np.ndarray] = []
        with self.session() as s:
            present = set(
                s.scalars(
                    select(Recording.sha256).where(
                        Recording.sha256.in_([r.sha256 for r in recordings])
                    )
                )
            )
            speakers = self._speaker_ids(
                s, {r.speaker for r in recordings if r.speaker and r.sha256 not in present}
            )
            added = []
            for r in recordings:
                if r.sha256 in present:
                    continue
                present.add(r.sha256)
                rec = Recording(
                    sha256=r.sha256,
                    path=r.path,
                    speaker_id=speakers.get(r.speaker) if r.speaker else None,
                    duration_s=r.duration_s,
                    sample_rate=r.sample_rate,
                    channels=r.channels,
                    source=r.source,
                    run_id=run_id,
                )
                raw = np.asarray(r.raw, dtype="<f4")
                rec.segments = [
                    Segment(start_s=a, end_s=b, vector=v.tobytes())
                    for a, b, v in zip(r.starts, r.ends, raw)
                ]
                s.add(rec)
                added.append((rec, raw))
            failed = {(f.path, f.sha256) for f in failures}
            if failed:
                old = s.execute(
                    select(Failure.path, Failure.sha256).where(
                        Failure.sha256.in_([f.sha256 for f in failures])
                    )
                )
                failed -= {tuple(row) for row in old}
            for f in failures:
                if (f.path, f.sha256) in failed:
                    failed.discard((f.path, f.sha256))
                    s.add(Failure(path=f.path, sha256=f.sha256, reason=f.reason,
                                  message=f.message, run_id=run_id))
            relabelled = self.apply_labels(s, list(labels))
            s.flush()
            for rec, raw in added:
                new_ids.extend(seg.id for seg in rec.segments)
                new_raw.append(raw)
        if counts is not None:
            counts["recordings"] = len(added)
            counts["labels"] = relabelled
            counts["generation"] = s.info.get(CHANGE)  # (before, after), None: no change
        raw_dim = recordings[0].raw.shape[1] if recordings and recordings[0].raw is not None else 0
        raw_all = np.concatenate(new_raw) if new_raw else np.zeros((0, raw_dim), np.float32)
        return np.asarray(new_ids, dtype=np.int64), raw_all.astype(np.float32)

    @staticmethod
    def _speaker_ids(s: Session, labels: set[str]) -> dict[str, int]:
        if not labels:
            return {}
        rows = s.execute(select(Speaker.label, Speaker.id).where(Speaker.label.in_(labels)))
        have = {label: sid for label, sid in rows}
        for label in sorted(labels - have.keys()):
            sp = Speaker(label=label)
            s.add(sp)
            s.flush()
            have[label] = sp.id
        return have

    # vectors -------------------------------------------------------------------------------
    def segment_ids(self) -> np.ndarray:
        """All segment ids, sorted, (n,) int64."""
        with self.engine.connect() as c:  # core rows, not ORM objects: faster for millions
            rows = c.execute(select(Segment.id).order_by(Segment.id))
            return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def vectors(self, ids: np.ndarray | None = None, chunk: int = 20000):
        """Yield ``(ids (n,) int64, raw (n, raw_dim) float32)`` in id order, all or those given."""
        with self.session() as s:
            if ids is None:
                last = 0
                while True:
                    rows = s.execute(
                        select(Segment.id, Segment.vector)
                        .where(Segment.id > last)
                        .order_by(Segment.id)
                        .limit(chunk)
                    ).all()
                    if not rows:
                        return
                    last = rows[-1][0]
                    yield _unpack(rows)
            else:
                wanted = [int(i) for i in np.sort(np.asarray(ids))]
                for i in range(0, len(wanted), 500):
                    rows = s.execute(
                        select(Segment.id, Segment.vector)
                        .where(Segment.id.in_(wanted[i : i + 500]))
                        .order_by(Segment.id)
                    ).all()
                    if rows:
                        yield _unpack(rows)

    def vectors_after(self, last_id: int, chunk: int = 20000):
        """Yield ``(ids, raw)`` of the segments with ids above ``last_id``, in id order."""
        with self.session() as s:
            while True:
                rows = s.execute(select(Segment.id, Segment.vector).where(Segment.id > last_id)
                                 .order_by(Segment.id).limit(chunk)).all()
                if not rows:
                    return
                last_id = rows[-1][0]
                yield _unpack(rows)

    def segment_count(self) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count(Segment.id))))

    def segment_extent(self) -> tuple[int, int]:
        """(how many segments, the largest segment id (0 when none)) in one query."""
        with self.engine.connect() as c:
            n, top = c.execute(select(func.count(Segment.id), func.max(Segment.id))).one()
        return int(n), int(top or 0)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        parts = list(self.vectors())
        if not parts:
            model = self.bound_model()
            return np.zeros(0, np.int64), np.zeros((0, model.raw_dim if model else 0), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def segment_refs(self, ids: Iterable[int]) -> dict[int, SegmentRef]:
        ids = [int(i) for i in ids]
        out: dict[int, SegmentRef] = {}
        with self.session() as s:
            for i in range(0, len(ids), 500):
                q = (
                    select(Segment.id, Speaker.label, Recording.path, Segment.start_s,
                           Segment.end_s)
                    .join(Recording, Segment.recording_id == Recording.id)
                    .outerjoin(Speaker, Recording.speaker_id == Speaker.id)
                    .where(Segment.id.in_(ids[i : i + 500]))
                )
                for sid, label, path, a, b in s.execute(q):
                    out[sid] = SegmentRef(sid, label, path, a, b)
        return out

    def segment_owners(self, ids: Iterable[int]) -> dict[int, tuple[int, int | None]]:
        """``{segment id: (recording id, speaker id or None)}`` of the given segments that are
        stored."""
        ids = [int(i) for i in ids]
        out: dict[int, tuple[int, int | None]] = {}
        with self.engine.connect() as c:
            for i in range(0, len(ids), 500):
                q = (select(Segment.id, Segment.recording_id, Recording.speaker_id)
                     .join(Recording, Segment.recording_id == Recording.id)
                     .where(Segment.id.in_(ids[i : i + 500])))
                out.update({sid: (rec, spk) for sid, rec, spk in c.execute(q)})
        return out

    def recording_segment_ids(self, shas: Iterable[str]) -> np.ndarray:
        """The segment ids of the recordings with these content sha256s, sorted."""
        shas, out = list(shas), []
        with self.engine.connect() as c:
            for i in range(0, len(shas), 500):
                q = (select(Segment.id).join(Recording, Segment.recording_id == Recording.id)
                     .where(Recording.sha256.in_(shas[i : i + 500])))
                out += [r[0] for r in c.execute(q)]
        return np.sort(np.asarray(out, np.int64))

    def speaker_segment_ids(self, label: str) -> np.ndarray:
        """The segment ids of speaker ``label``'s recordings, sorted (empty when unknown)."""
        q = (select(Segment.id).join(Recording, Segment.recording_id == Recording.id)
             .join(Speaker, Recording.speaker_id == Speaker.id)
             .where(Speaker.label == label).order_by(Segment.id))
        with self.engine.connect() as c:
            return np.fromiter((r[0] for r in c.execute(q)), dtype=np.int64)

    def recording_segments(self) -> dict[int, tuple[str, str, np.ndarray]]:
        """``{recording id: (content sha256, stored path, its segment ids (k,) int64 sorted)}``
        of every recording with segments."""
        q = (select(Recording.id, Recording.sha256, Recording.path, Segment.id)
             .join(Segment, Segment.recording_id == Recording.id)
             .order_by(Recording.id, Segment.id))
        out: dict[int, tuple[str, str, list[int]]] = {}
        with self.engine.connect() as c:  # core rows: one per segment
            for rec, sha, path, seg in c.execute(q):
                out.setdefault(rec, (sha, path, []))[2].append(seg)
        return {r: (sha, path, np.asarray(segs, np.int64)) for r, (sha, path, segs) in out.items()}

    # management ----------------------------------------------------------------------------
    @retried_on_conflict
    def delete_speaker(self, label: str) -> np.ndarray:
        """Delete a speaker with all its recordings; returns the removed segment ids."""
        with self.session() as s:
            sp = s.scalars(select(Speaker).where(Speaker.label == label)).first()
            if sp is None:
                raise NotFound(f"speaker {label!r} is not in the database")
            rec_ids = list(s.scalars(select(Recording.id).where(Recording.speaker_id == sp.id)))
            removed = self._delete_recordings(s, rec_ids)
            s.delete(sp)
        return removed

    @retried_on_conflict
    def delete_recording(self, key: str) -> np.ndarray:
        """Delete a recording by content sha256 (or a unique prefix of it) or by its stored path;
        its speaker goes too when it has no recordings left. The key is matched literally
        (``%`` and ``_`` are not wildcards); a prefix of several sha256s is ``AmbiguousKey``."""
        match = Recording.path == key
        if key:
            match = match | Recording.sha256.startswith(key, autoescape=True)
        with self.session() as s:
            recs = s.execute(select(Recording.id, Recording.speaker_id).where(match)).all()
            if not recs:
                raise NotFound(f"recording {key!r} is not in the database")
            if len(recs) > 1:
                raise AmbiguousKey(f"recording {key!r} is ambiguous: {len(recs)} recordings "
                                   "match; give more of the sha256")
            removed = self._delete_recordings(s, [recs[0][0]])
            self.drop_empty_speakers(s, [recs[0][1]])
            return removed

    @staticmethod
    def _delete_recordings(s: Session, rec_ids: list[int]) -> np.ndarray:
        if not rec_ids:
            return np.zeros(0, np.int64)
        seg_ids = list(s.scalars(select(Segment.id).where(Segment.recording_id.in_(rec_ids))))
        s.execute(delete(Segment).where(Segment.recording_id.in_(rec_ids)))
        s.execute(delete(Recording).where(Recording.id.in_(rec_ids)))
        return np.asarray(sorted(seg_ids), dtype=np.int64)

    # reporting -----------------------------------------------------------------------------
    def counts(self) -> dict:
        with self.session() as s:
            return {
                "speakers": s.scalar(select(func.count(Speaker.id))),
                "recordings": s.scalar(select(func.count(Recording.id))),
                "unlabelled_recordings": s.scalar(
                    select(func.count(Recording.id)).where(Recording.speaker_id.is_(None))
                ),
                "segments": s.scalar(select(func.count(Segment.id))),
                "failures": s.scalar(select(func.count(Failure.id))),
                "ingest_runs": s.scalar(select(func.count(IngestRun.id))),
                "duration_s": float(s.scalar(
                    select(func.coalesce(func.sum(Recording.duration_s), 0.0)))),
            }

    def failures(self, run_id: int | None = None) -> list[dict]:
        with self.session() as s:
            q = select(Failure).order_by(Failure.id)
            if run_id is not None:
                q = q.where(Failure.run_id == run_id)
            return [
                {"input": f.path, "reason": f.reason, "error": f.message} for f in s.scalars(q)
            ]


def _clash(e: BaseException | None) -> bool:
    """Whether ``e`` is another writer's doing that writing the batch again resolves: a
    unique key it stored first, or a deadlock or serialization failure the server broke."""
    return isinstance(e, IntegrityError) or writers_conflicted(e)


def _unpack(rows) -> tuple[np.ndarray, np.ndarray]:
    sizes = {len(r[1]) for r in rows}
    if len(sizes) > 1 or (sizes and (min(sizes) == 0 or min(sizes) % 4)):
        from speakerdb.errors import DamagedStoreError

        raise DamagedStoreError(f"the store is damaged: stored vectors have sizes "
                                f"{sorted(sizes)[:4]} bytes where one float32 size is "
                                "expected; restore it from a backup")
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    raw = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
    return ids, raw.astype(np.float32)
