"""The metadata store and the FAISS indexes agree after every operation (a hypothesis state
machine over ``SpeakerDB`` with the spectral embedder).

Rules: ingest a random choice of prepared sources (speaker folders, single files, a manifest;
random batch size and index flush interval), re-ingest (no new vectors; a label it gives
an unlabelled stored recording is applied, another label kept), delete a speaker or a
recording, rename and merge speakers, enroll a random choice of corpus files under a label,
reopen, rebuild, and simulated crashes: an ingest that dies before a batch's store
commit, right after it (before its vectors reach the indexes), or in the middle of saving the
index files; a delete that dies after the store commit, part-way through the index save. A
crashed database object is dropped without ``close`` (nothing more is flushed); the only rule
allowed next is ``reopen``, which must catch the indexes up.

Invariants, checked whenever a database is open (never between a crash and the reopen, where
the saved indexes are allowed to lag the store): ``check()`` passes, the in-memory and saved
indexes hold exactly the store's ids at every dimension with the store's vectors, the JSON
descriptions match the store, nothing is duplicated, and the store holds exactly what a plain
Python model of the operations says (recordings with path, speaker and source; segment offsets;
vectors; speakers, none of them without recordings; failures).

The ingests read in process (``workers=0``): the model commits a crashed ingest's batches as a
prefix, and batches read by worker processes finish in any order
(``tests/unit/test_ingest_pool.py`` shows that they build the same database).

``HYPOTHESIS_PROFILE=thorough`` runs more and longer examples.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
                                 RuleBasedStateMachine,
                                 invariant,
                                 precondition,
                                 rule,
                                 run_state_machine_as_test,
                                 )
from sqlalchemy import func, select

import speakerdb.files.atomic as atomic_module
import speakerdb.index.infos as infos_module
import speakerdb.index.matrix as matrix_module
import speakerdb.index.vector_index as vector_index_module
from speakerdb.api import SpeakerDB
from speakerdb.audio import AudioPolicy, prepare
from speakerdb.config import IngestConfig
from speakerdb.errors import AudioError, NotFound, UsageError
from speakerdb.index import IndexSet
from speakerdb.index.infos import ids_digest
from speakerdb.model.prefixes import DIMS, prefix
from speakerdb.store.models import Failure, Recording, Segment, Speaker
from tests.synth import RATE, voice

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
STEPS = 50 if THOROUGH else 20

# Short pieces so that the one longer file has several segments while the 0.8 s files have one.
POLICY = AudioPolicy(min_signal_s=0.3, max_segment_s=1.0, segment_s=0.6)


def _config(**kw) -> IngestConfig:
    return IngestConfig(workers=0, **kw)


class Crash(Exception):
    """The process 'dies' here."""


# the corpus: built once per test run ------------------------------------------------------
@dataclass
class FileFacts:
    sha256: str
    good: bool
    offsets: list[tuple[float, float]] = field(default_factory=list)
    raw: np.ndarray | None = None  # (n_segments, 256) expected vectors


@dataclass
class Corpus:
    root: Path
    sources: list[Path]  # what ingest rules choose from
    facts: dict[Path, FileFacts]


def _write(path: Path, speaker: int, utt: int, seconds: float = 0.8) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, voice(speaker, utt, seconds), RATE, subtype="PCM_16")


def build_corpus(root: Path, embedder) -> Corpus:
    """Three speaker-folder trees (a label shared between two, one file's content copied under
    another speaker, a text file named .wav, a 0.2 s clip, a 1.6 s file of three segments), two
    loose files and a manifest naming them (one labelled, one not)."""
    a, b, c, loose = root / "A", root / "B", root / "C", root / "loose"
    for k in (0, 1):
        for j in (0, 1):
            _write(a / f"spk{k:02d}" / f"utt{j}.wav", k, j)
    _write(b / "spk01" / "utt2.wav", 1, 2)
    _write(b / "spk01" / "utt3.wav", 1, 3)
    _write(b / "spk02" / "utt0.wav", 2, 0)
    _write(b / "spk02" / "long.wav", 2, 1, seconds=1.6)
    shutil.copyfile(a / "spk00" / "utt0.wav", b / "spk02" / "copy.wav")  # same content
    _write(c / "spk03" / "utt0.wav", 3, 0)
    _write(c / "spk03" / "short.wav", 3, 1, seconds=0.2)
    (c / "spk03" / "bad.wav").write_text("this is not audio\n")
    _write(loose / "x.wav", 4, 0)
    _write(loose / "y.wav", 5, 0)
    (loose / "manifest.csv").write_text("path,speaker\nx.wav,spkM\ny.wav,\n")

    facts = {}
    for p in sorted(root.rglob("*.wav")):
        sha = hashlib.sha256(p.read_bytes()).hexdigest()
        try:
            prep = prepare(p, POLICY, name=str(p))
        except AudioError:
            facts[p] = FileFacts(sha, False)
            continue
        raw = np.asarray(embedder([s.samples for s in prep.segments]), np.float32)
        facts[p] = FileFacts(sha, True, [(s.start_s, s.end_s) for s in prep.segments], raw)
    assert sum(not f.good for f in facts.values()) == 2
    assert len(facts[b / "spk02" / "long.wav"].offsets) == 3
    sources = [a, b, c, a / "spk00" / "utt1.wav", loose / "x.wav", loose / "manifest.csv"]
    return Corpus(root, sources, facts)


def expand(sources: list[Path]) -> list[tuple[Path, str | None, str]]:
    """(path, speaker, source kind) of every input, as the folders/file/manifest layouts
    define them, each path once (written from the contract, not from ``discover``)."""
    out, seen = [], set()
    for src in sources:
        if src.suffix == ".csv":
            lines = src.read_text().splitlines()[1:]
            items = [(src.parent / ln.split(",")[0], ln.split(",")[1] or None, "manifest")
                     for ln in lines]
        elif src.is_file():
            items = [(src, None, "file")]
        else:
            items = [(p, p.relative_to(src).parts[0], "folders")
                     for p in sorted(src.rglob("*.wav"))]
        for it in items:
            if it[0] not in seen:
                seen.add(it[0])
                out.append(it)
    return out


# the model of what the store should hold --------------------------------------------------
class Model:
    def __init__(self, facts: dict[Path, FileFacts]):
        self.facts = facts
        self.recordings: dict[str, tuple[str, str | None, str, Path]] = {}  # sha -> ...
        self.speakers: set[str] = set()
        self.failures: set[tuple[str, str]] = set()  # (path, sha)
        self.labelled = 0  # stored unlabelled recordings the last ingest gave a label

    def known(self, sha: str) -> bool:
        return sha in self.recordings or any(sha == f[1] for f in self.failures)

    def ingest(self, items, batch: int, committed: int | None = None) -> tuple[int, int]:
        """Apply the first ``committed`` batches (all when None); returns (added, failed).
        A speaker given for a stored unlabelled recording labels it (counted in
        ``self.labelled``); one given for a recording with another label is not applied."""
        chunks = [items[i : i + batch] for i in range(0, len(items), batch)]
        added = failed = self.labelled = 0
        seen: set[str] = set()
        for chunk in chunks[:committed]:
            known = {self.facts[p].sha256 for p, _, _ in chunk
                     if self.known(self.facts[p].sha256)}
            for path, speaker, kind in chunk:
                f = self.facts[path]
                if f.sha256 in known and f.sha256 not in seen and speaker:
                    rec = self.recordings.get(f.sha256)
                    if rec is not None and rec[1] is None:
                        self.recordings[f.sha256] = (rec[0], speaker, *rec[2:])
                        self.speakers.add(speaker)
                        self.labelled += 1
                if f.sha256 in known or f.sha256 in seen:
                    seen.add(f.sha256)
                    continue
                seen.add(f.sha256)
                if f.good:
                    self.recordings[f.sha256] = (str(path), speaker, kind, path)
                    if speaker:
                        self.speakers.add(speaker)
                    added += 1
                else:
                    self.failures.add((str(path), f.sha256))
                    failed += 1
        return added, failed

    def delete_speaker(self, label: str) -> None:
        self.speakers.discard(label)
        self.recordings = {k: v for k, v in self.recordings.items() if v[1] != label}

    def delete_recording(self, sha: str) -> None:
        label = self.recordings.pop(sha)[1]
        if label and all(v[1] != label for v in self.recordings.values()):
            self.speakers.discard(label)

    def relabel(self, old: str, new: str) -> None:
        """Rename ``old`` to ``new`` (or merge it into an existing ``new``)."""
        self.recordings = {k: (v[0], new if v[1] == old else v[1], *v[2:])
                           for k, v in self.recordings.items()}
        self.speakers.discard(old)
        self.speakers.add(new)

    def enroll(self, paths: list[Path], label: str) -> tuple[int, int, int]:
        """Enroll ``paths`` under ``label``: (added, skipped, failed). Stored content and
        repeats are skipped; known failures are tried (and fail) again."""
        added = skipped = failed = 0
        seen: set[str] = set()
        for p in paths:
            f = self.facts[p]
            if f.sha256 in self.recordings or f.sha256 in seen:
                skipped += 1
                continue
            seen.add(f.sha256)
            if f.good:
                self.recordings[f.sha256] = (str(p), label, "enroll", p)
                self.speakers.add(label)
                added += 1
            else:
                self.failures.add((str(p), f.sha256))
                failed += 1
        return added, skipped, failed

    def n_segments(self) -> int:
        return sum(len(self.facts[v[3]].offsets) for v in self.recordings.values())


# crash injection ---------------------------------------------------------------------------
class _FailingWrites:
    """Make the ``n``-th file write of a save of the vectors (rows appended, a file replaced,
    the screen, vectors.json) raise ``Crash``: earlier writes happen, later ones never do."""

    MODULES = (vector_index_module, infos_module, matrix_module)

    def __init__(self, n: int):
        self.n, self.calls = n, 0
        self._append = matrix_module.append_rows

    def _count(self, path):
        self.calls += 1
        if self.calls == self.n:
            raise Crash(f"killed before writing {Path(path).name}")

    def _write(self, path, write):
        self._count(path)
        return atomic_module.atomic_write(path, write)

    def _append_at(self, path, arr, row):
        self._count(path)
        return self._append(path, arr, row)

    def __enter__(self):
        for m in self.MODULES:
            m.atomic_write = self._write
        matrix_module.append_rows = self._append_at
        return self

    def __exit__(self, *exc):
        for m in self.MODULES:
            m.atomic_write = atomic_module.atomic_write
        matrix_module.append_rows = self._append


# the state machine ---------------------------------------------------------------------------
class StoreIndexMachine(RuleBasedStateMachine):
    def __init__(self, corpus: Corpus, embedder, db_url: str | None = None):
        super().__init__()
        self.corpus, self.embedder = corpus, embedder
        self.tmp = Path(tempfile.mkdtemp(prefix="machine-", dir=corpus.root.parent))
        self.home = self.tmp / "home"
        self.model = Model(corpus.facts)
        self.db: SpeakerDB | None = SpeakerDB.create(self.home, model="spectral", db_url=db_url,
                                                     embedder=embedder)
        self.db.policy = POLICY

    def teardown(self):
        if self.db is not None:
            self.db.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def is_open(self) -> bool:
        return self.db is not None

    def _drop(self) -> None:
        """The process died: forget the object without closing (so without a final flush)."""
        self.db.store.engine.dispose()
        self.db = None

    # rules ---------------------------------------------------------------------------------
    sources = st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True)

    @precondition(is_open)
    @rule(pick=sources, batch=st.integers(1, 4), flush_s=st.sampled_from([0.0, 1e9]))
    def ingest(self, pick, batch, flush_s):
        srcs = [self.corpus.sources[i] for i in pick]
        expected = self.model.ingest(expand(srcs), batch)
        stats = self.db.ingest(srcs, config=_config(files_per_batch=batch,
                                                         index_flush_s=flush_s))
        assert (stats.added, stats.failed, stats.labelled) == (*expected, self.model.labelled)

    def _fully_known(self) -> list[int]:
        return [i for i, s in enumerate(self.corpus.sources)
                if all(self.model.known(self.corpus.facts[p].sha256) for p, _, _ in expand([s]))]

    @precondition(lambda self: self.is_open() and self._fully_known())
    @rule(data=st.data(), batch=st.integers(1, 4))
    def reingest_is_a_no_op(self, data, batch):
        i = data.draw(st.sampled_from(self._fully_known()), label="source")
        before_ids, before = self.db.store.all_vectors(), self.db.store.counts()
        stats = self.db.ingest([self.corpus.sources[i]], config=_config(files_per_batch=batch))
        assert self.model.ingest(expand([self.corpus.sources[i]]), batch) == (0, 0)
        assert stats.added == stats.segments == stats.failed == 0
        assert stats.skipped == len(expand([self.corpus.sources[i]]))
        assert stats.labelled == self.model.labelled
        event(f"re-ingest: {stats.labelled} labelled, {len(stats.label_conflicts)} conflicts")
        after = self.db.store.counts()
        ids, raw = self.db.store.all_vectors()
        assert np.array_equal(ids, before_ids[0]) and np.array_equal(raw, before_ids[1])
        same = ("recordings", "segments", "failures", "duration_s")
        assert {k: after[k] for k in same} == {k: before[k] for k in same}
        assert after["unlabelled_recordings"] == before["unlabelled_recordings"] - stats.labelled

    @precondition(lambda self: self.is_open() and self.model.speakers)
    @rule(data=st.data())
    def delete_speaker(self, data):
        label = data.draw(st.sampled_from(sorted(self.model.speakers)), label="speaker")
        n = self.db.delete_speaker(label)
        before = self.model.n_segments()
        self.model.delete_speaker(label)
        assert n == before - self.model.n_segments()

    @precondition(is_open)
    @rule()
    def delete_missing_speaker(self):
        with pytest.raises(NotFound):
            self.db.delete_speaker("nobody")

    @precondition(lambda self: self.is_open() and self.model.recordings)
    @rule(data=st.data(), by_path=st.booleans())
    def delete_recording(self, data, by_path):
        sha = data.draw(st.sampled_from(sorted(self.model.recordings)), label="recording")
        key = self.model.recordings[sha][0] if by_path else sha
        n = self.db.delete_recording(key)
        assert n == len(self.corpus.facts[self.model.recordings[sha][3]].offsets)
        self.model.delete_recording(sha)

    labels = st.sampled_from(["spk00", "spk01", "spk02", "spkM", "new1", "new2"])

    @precondition(lambda self: self.is_open() and self.model.speakers)
    @rule(data=st.data(), new=labels)
    def rename_speaker(self, data, new):
        old = data.draw(st.sampled_from(sorted(self.model.speakers)), label="old")
        if new != old and new in self.model.speakers:
            with pytest.raises(UsageError, match="merge"):
                self.db.rename_speaker(old, new)
            event("rename: onto an existing speaker, refused")
            return
        event("rename: done")
        n = sum(v[1] == old for v in self.model.recordings.values())
        info = self.db.rename_speaker(old, new)
        self.model.relabel(old, new)
        assert (info.label, info.recordings) == (new, n)

    @precondition(lambda self: self.is_open() and self.model.speakers)
    @rule(data=st.data())
    def merge_speakers(self, data):
        source = data.draw(st.sampled_from(sorted(self.model.speakers)), label="source")
        target = data.draw(st.sampled_from(sorted(self.model.speakers) + ["ghost"]),
                           label="target")
        if target not in self.model.speakers or target == source:
            with pytest.raises(NotFound if target != source else UsageError):
                self.db.merge_speakers(source, target)
            event("merge: refused")
            return
        event("merge: done")
        ids = self.db.store.segment_ids()
        info = self.db.merge_speakers(source, target)
        self.model.relabel(source, target)
        assert info.recordings == sum(v[1] == target for v in self.model.recordings.values())
        assert np.array_equal(self.db.store.segment_ids(), ids)

    @precondition(is_open)
    @rule(data=st.data(), label=labels)
    def enroll(self, data, label):
        files = sorted(self.corpus.facts)
        paths = data.draw(st.lists(st.sampled_from(files), min_size=1, max_size=4), label="files")
        segments = self.model.n_segments()
        added, skipped, failed = self.model.enroll(paths, label)
        r = self.db.enroll(label, [str(p) for p in paths])
        assert (r.added, len(r.skipped), len(r.failed)) == (added, skipped, failed)
        assert r.segments == self.model.n_segments() - segments
        event(f"enroll: {'added' if added else 'nothing added'}")

    @rule()
    def reopen(self):
        if self.db is not None:
            self.db.close()
        self.db = SpeakerDB.open(self.home, embedder=self.embedder)
        self.db.policy = POLICY

    @precondition(is_open)
    @rule()
    def rebuild(self):
        self.db.rebuild_indexes()

    @precondition(is_open)
    @rule(pick=sources, batch=st.integers(1, 4), at=st.integers(1, 3),
          when=st.sampled_from(["before_store_commit", "after_store_commit"]),
          flush_s=st.sampled_from([0.0, 1e9]))
    def crash_in_ingest_batch(self, pick, batch, at, when, flush_s):
        """Batch ``at`` dies just before or just after its store transaction commits (so its
        vectors never reach the indexes; earlier batches' may not have been saved either)."""
        srcs = [self.corpus.sources[i] for i in pick]
        store, original = self.db.store, self.db.store.write_batch
        calls = committed = 0

        def write_batch(*args, **kwargs):
            nonlocal calls, committed
            calls += 1
            if calls == at and when == "before_store_commit":
                raise Crash
            out = original(*args, **kwargs)
            committed += 1
            if calls == at:
                raise Crash
            return out

        store.write_batch = write_batch
        try:
            self.db.ingest(srcs, config=_config(files_per_batch=batch,
                                                     index_flush_s=flush_s))
            event("ingest crash: after the run")
        except Crash:
            event(f"ingest crash: {when}")
        finally:
            del store.write_batch
        self.model.ingest(expand(srcs), batch, committed)
        self._drop()

    @precondition(is_open)
    @rule(pick=sources, batch=st.integers(1, 4), at=st.integers(1, 24))
    def crash_while_saving_indexes(self, pick, batch, at):
        """Vectors saved after every batch; the process dies before the ``at``-th file write
        of a save (rows appended but not committed, or a save cut before vectors.json)."""
        srcs = [self.corpus.sources[i] for i in pick]
        store, original = self.db.store, self.db.store.write_batch
        committed = 0

        def write_batch(*args, **kwargs):
            nonlocal committed
            out = original(*args, **kwargs)
            committed += 1
            return out

        store.write_batch = write_batch
        try:
            with _FailingWrites(at):
                self.db.ingest(srcs, config=_config(files_per_batch=batch, index_flush_s=0))
            event("index save crash: after the run")
        except Crash:
            event(f"index save crash: before write {min(at, 5)}")
        finally:
            del store.write_batch
        self.model.ingest(expand(srcs), batch, committed)
        self._drop()

    @precondition(lambda self: self.is_open() and self.model.recordings)
    @rule(data=st.data(), speaker=st.booleans(), at=st.integers(1, 8))
    def crash_while_deleting(self, data, speaker, at):
        """A delete commits in the store; the process dies before the ``at``-th index file
        write of the save that follows (at=1: before any)."""
        sha = data.draw(st.sampled_from(sorted(self.model.recordings)), label="recording")
        label = self.model.recordings[sha][1]
        try:
            with _FailingWrites(at):
                if speaker and label:
                    self.db.delete_speaker(label)
                else:
                    self.db.delete_recording(sha)
        except Crash:
            event("delete crash: in the index save")
        if speaker and label:
            self.model.delete_speaker(label)
        else:
            self.model.delete_recording(sha)
        self._drop()

    # invariants ------------------------------------------------------------------------------
    @invariant()
    def check_passes(self):
        if self.db is None:
            return  # crashed: the saved indexes may lag until the reopen catches them up
        report = self.db.check()
        assert report.ok, report.problems
        assert self.db.indexes.plan() == "current"

    @invariant()
    def indexes_hold_the_store_ids_and_vectors(self):
        if self.db is None:
            return
        store_ids = self.db.store.segment_ids()
        ids, raw = self.db.store.all_vectors()
        assert np.array_equal(ids, store_ids)
        saved = IndexSet.load(self.home, DIMS)
        for indexes in (self.db.indexes.set, saved):
            assert sorted(indexes.by_dim) == list(DIMS)
            for d, index in indexes.by_dim.items():
                assert np.array_equal(index.ids(), store_ids), d
                if ids.size:
                    np.testing.assert_allclose(index.reconstruct(ids), prefix(raw, d), atol=1e-6)
        info = IndexSet.state(self.home)
        assert info.dims == DIMS and info.ntotal == store_ids.size
        assert info.ids_digest == ids_digest(store_ids)
        assert info.model_sha256 == self.db.model.sha256
        assert info.store_max_id >= (int(store_ids[-1]) if store_ids.size else 0)
        assert 0 < info.store_generation <= self.db.store.generation()

    @invariant()
    def nothing_is_duplicated(self):
        if self.db is None:
            return
        with self.db.store.session() as s:
            n_rec = s.scalar(select(func.count(Recording.id)))
            assert n_rec == s.scalar(select(func.count(func.distinct(Recording.sha256))))
            n_seg = s.scalar(select(func.count(Segment.id)))
            pairs = s.execute(select(Segment.recording_id, Segment.start_s)).all()
            assert n_seg == len(set(pairs))
            fails = s.execute(select(Failure.path, Failure.sha256)).all()
            assert len(fails) == len(set(fails))

    @invariant()
    def store_matches_the_model(self):
        if self.db is None:
            return
        with self.db.store.session() as s:
            rows = s.execute(
                select(Recording.sha256, Recording.path, Speaker.label, Recording.source,
                       Recording.id)
                .outerjoin(Speaker, Recording.speaker_id == Speaker.id)).all()
            got = {sha: (path, label, source) for sha, path, label, source, _ in rows}
            segs = s.execute(select(Segment.recording_id, Segment.start_s, Segment.end_s,
                                    Segment.vector).order_by(Segment.start_s)).all()
            speakers = set(s.scalars(select(Speaker.label)))
            failures = set(s.execute(select(Failure.path, Failure.sha256)).all())
        assert got == {k: v[:3] for k, v in self.model.recordings.items()}
        assert speakers == self.model.speakers
        assert failures == self.model.failures
        by_rec: dict[int, list] = {}
        for rid, a, b, vec in segs:
            by_rec.setdefault(rid, []).append((a, b, np.frombuffer(vec, "<f4")))
        assert len(by_rec) == len(rows)  # every recording has segments, no orphan segments
        for sha, _, _, _, rid in rows:
            facts = self.corpus.facts[self.model.recordings[sha][3]]
            stored = by_rec[rid]
            np.testing.assert_allclose([(a, b) for a, b, _ in stored], facts.offsets,
                                       atol=1e-9)
            np.testing.assert_allclose(np.stack([v for _, _, v in stored]), facts.raw,
                                       atol=1e-5)
        counts = self.db.store.counts()
        assert counts["recordings"] == len(self.model.recordings)
        assert counts["segments"] == self.model.n_segments()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, spectral_embedder) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("property-corpus"), spectral_embedder)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def test_store_and_indexes_agree(backend, corpus, spectral_embedder, request):
    """On SQLite, and on PostgreSQL (a fresh database per example; fewer examples)."""
    names: list[str] = []
    if backend == "sqlite":
        new_url, extra = lambda: None, {}
    else:
        server = request.getfixturevalue("pg_server")

        def new_url() -> str:
            names.append(server.create_database())
            return server.url(names[-1])

        extra = {} if THOROUGH else {"max_examples": 6}
    try:
        run_state_machine_as_test(
            lambda: StoreIndexMachine(corpus, spectral_embedder, new_url()),
            settings=settings(stateful_step_count=STEPS, **extra),
        )
    finally:
        for name in names:
            server.drop_database(name)


def test_rows_appended_but_never_committed_are_caught_up_on_open(corpus, spectral_embedder,
                                                                  tmp_path):
    """The process dies after a save appended its rows but before vectors.json: the saved
    description still counts the rows before, and open appends the batch from the store."""
    home = tmp_path / "home"
    db = SpeakerDB.create(home, model="spectral", embedder=spectral_embedder)
    db.policy = POLICY
    db.ingest([corpus.sources[0]])
    before = IndexSet.state(home)
    with pytest.raises(Crash, match="vectors.json"), _FailingWrites(4):  # rows, ids, norms
        db.ingest([corpus.sources[4]], config=_config(index_flush_s=0))
    db.store.engine.dispose()  # died: no close(), so nothing more is saved
    after = IndexSet.state(home)
    assert after == before and after.ntotal == 4
    [rows] = home.glob("vectors-*.f32")
    assert rows.stat().st_size == 5 * 256 * 4  # the uncommitted row is there, never mapped
    with SpeakerDB.open(home, embedder=spectral_embedder) as db:
        assert db.check().ok
        assert db.indexes.set.ntotal == db.store.counts()["segments"] == 5
    assert IndexSet.state(home).ntotal == 5 and rows.stat().st_size == 5 * 256 * 4
