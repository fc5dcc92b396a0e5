"""``SpeakerDB``: the Python API, and the one library surface the CLI and server call.

    with SpeakerDB.create("indexes/demo", model="spectral") as db:
        db.ingest(["../shared/data/speech-dev"])
        print(db.identify("unknown.wav").speaker)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from speakerdb.database import management as manage
from speakerdb.audio import AudioInput, AudioPolicy
from speakerdb.config import (
                              ASNORM_DEFAULT_THRESHOLD,
                              Aggregation,
                              CascadeConfig,
                              DurationGates,
                              IngestConfig,
                              ScoreNorm,
                              check_finite,
                              check_score_norm,
                              )
from speakerdb.errors import (
                              DamagedStoreError,
                              ModelMismatchError,
                              ReadOnlyError,
                              StoreError,
                              )
from speakerdb.database.ingesting import MULTI_VOICE_KEY
from speakerdb.database.opening import stored_space, tier_entry
from speakerdb.audio.gates import gate_seconds
from speakerdb.database.results import (CheckReport, EnrollResult, IdentifyResult, SpeakerInfo,
                                        Threshold, VerifyResult, choose_threshold)
from speakerdb.search.gallery import Scorer
from speakerdb.search.query import embed_gated
from speakerdb.search.verify import verify_with
from speakerdb.search.decision import rule_label
from speakerdb.search.thresholds import calibrate_db, calibration_states, identify_threshold

__all__ = ["SpeakerDB"]

class SpeakerDB:
    """A speaker database in a home directory: metadata store, vector tier (``indexes``, a
    ``speakerdb.index.tier.VectorTier``: FAISS indexes unless home.json names another), bound
    model.

    Use ``SpeakerDB.create`` or ``SpeakerDB.open``; close it (or use ``with``) when done.
    """

    def __init__(self, home: Path, store, model, indexes, model_spec: str, embedder=None,
                 device: str = "auto"):
        self.home, self.store, self.model = home, store, model
        self.indexes, self.model_spec = indexes, model_spec
        self._embedder, self.device = embedder, device
        from dataclasses import replace

        from speakerdb.audio.vad import NONE_FLOOR_DBFS
        from speakerdb.config import read_home_file
        from speakerdb.database.opening import database_vad

        vad = database_vad(store, read_home_file(home))
        self.policy = replace(AudioPolicy(), vad=vad) if vad != "none" else \
            replace(AudioPolicy(), vad=vad, silence_dbfs=NONE_FLOOR_DBFS)
        self.gates = DurationGates()
        self.scorer = Scorer(store, lambda: self.space)
        # guards the in-memory indexes (changed in place) so other threads can identify while
        # one writes: see speakerdb/speakers.py for who holds it when
        self.lock = threading.RLock()
        # how long a write waits for another process writing to this home (None: as long as
        # it takes; 0: Busy at once); see speakerdb/processes.py
        self.lock_wait_s: float | None = None

    # life cycle ----------------------------------------------------------------------------
    @classmethod
    def create(cls, home=None, model: str | None = None, db_url: str | None = None,
               embedder=None, device: str = "auto", vad: str | None = None, *,
               vectors: str | None = None, qdrant: str | None = None,
               collection: str | None = None) -> SpeakerDB:
        """Create a database bound to ``model`` (a built-in name or checkpoint path), cutting
        its audio with the speech detector ``vad`` (``silero``, ``energy`` or ``none``;
        default ``audio.vad.default_vad``: ``silero`` for a network, ``energy`` for the test
        embedders): enrollment and queries are cut the same way.

        Creating where a database exists opens it: with no ``model`` whatever its model, with
        the same model as well; another model is a ModelMismatchError. Where home.json is
        missing or unreadable but the store is there (the home's SQLite file, or ``db_url``),
        home.json is rebuilt from what the store records. ``embedder`` replaces loading
        ``model`` (tests pass their own). ``db_url`` (default ``$SPEAKERDB_DB_URL``, else a
        SQLite file in the home) names the store: several homes may share one PostgreSQL store
        (``postgresql+psycopg://user@host:port/db``, the ``postgres`` extra). ``vectors``
        names the vector tier (``faiss``, the default, or ``qdrant``: a collection at
        ``qdrant``, a server URL, folder or ``:memory:``, default ``$SPEAKERDB_QDRANT``, named
        ``collection``, by default one derived from the home; the ``qdrant`` extra).
        """
        from speakerdb.database.opening import create

        return create(cls, home, model, db_url, embedder, device, vad,
                      tier_entry(home, vectors, qdrant, collection))

    @classmethod
    def open(cls, home=None, *, catch_up: bool = True, model: str | None = None,
             embedder=None, device: str = "auto") -> SpeakerDB:
        """Open an existing database; indexes behind the store catch up unless ``catch_up``
        is false. ``model`` overrides where the bound model is loaded from (same sha256)."""
        from speakerdb.database.opening import open_parts

        return cls(*open_parts(home, catch_up, model, embedder), embedder, device)

    def close(self) -> None:
        if self.indexes.is_open and self.indexes.dirty:
            self.indexes.flush(force=True)
        self.indexes.close()
        self.store.close()

    def __enter__(self) -> SpeakerDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # the model -----------------------------------------------------------------------------
    @property
    def embedder(self):
        """The bound model, loaded on first use; its sha256 must equal the database's."""
        if self._embedder is None:
            from speakerdb.model.registry import load_embedder

            emb = load_embedder(self.model_spec, self.device)
            if emb.sha256 != self.model.sha256:
                raise ModelMismatchError(
                    f"{self.home}: database model {self.model.name} ({self.model.sha256[:12]}) "
                    f"is not {self.model_spec} ({emb.sha256[:12]})"
                )
            self._embedder = emb
        return self._embedder

    def refresh(self) -> bool:
        """Catch up with what other processes wrote since (cheap when nothing changed)."""
        from speakerdb.database.processes import refresh

        return refresh(self)

    def writing(self):
        """Hold the home's writer lock for one write operation, caught up first
        (``speakerdb/database/processes.py``)."""
        from speakerdb.database.processes import writing

        return writing(self)

    @property
    def read_only(self) -> bool:
        """Whether this process may not write the home (a read-only mount or permissions):
        reads work, catching up in memory; changes are a ReadOnlyError."""
        return self.indexes.read_only

    def require_writable(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"{self.home}: the home is read-only for this process; "
                                f"{what} needs to write to it")

    def set_max_duration(self, seconds: float) -> None:
        """Inputs longer than ``seconds`` of audio fail with ``TooLongError`` from now on
        (default ``audio.MAX_DURATION_S``); what is past the limit is never decoded."""
        from dataclasses import replace

        from speakerdb.config import check_max_duration

        self.policy = replace(self.policy, max_duration_s=check_max_duration(seconds))

    # operations ----------------------------------------------------------------------------
    def ingest(self, sources, layout: str = "auto", config: IngestConfig = IngestConfig(),
               progress: Callable[[int], None] | None = None, on_start=None):
        """Ingest audio from ``sources`` (dirs, files, CSV manifests). Returns IngestStats.

        ``on_start(total_inputs)`` is called once the inputs are known (for progress bars).
        A label given for a stored recording is applied to an unlabelled one (no re-embedding:
        ``stats.labelled``); one that differs from its label is listed in
        ``stats.label_conflicts`` and applied only with ``config.relabel``. Holds the home's writer lock throughout (``speakerdb/processes.py``).
        """
        from speakerdb.database.ingesting import run_ingest

        with self.writing():
            return run_ingest(self, sources, layout, config, progress, on_start)

    def embed(self, audio: AudioInput, name: str | None = None,
              min_duration_s: float | None = None):
        """AudioEmbedding of ``audio`` with the database's model; less signal than the query
        gate (``min_duration_s``, default ``self.gates.min_query_s``) is a TooShortError."""
        return embed_gated(self.embedder, audio, self.policy,
                           gate_seconds(min_duration_s, self.gates.min_query_s), name)

    def threshold(self) -> float:
        """The decision threshold: a calibrated one stored in the database, else the model's."""
        return self.threshold_for().value

    def threshold_for(self, given: float | None = None, score_norm: ScoreNorm = "none",
                      rule: str | None = None, dim: int | None = None) -> Threshold:
        """The verification ``Threshold`` (value and source) for this score normalisation
        (and aggregation rule and dimension, when given): one comparison of two voices.
        Identification thresholds follow the gallery's size: ``identify_threshold``."""
        if given is not None:
            return Threshold(check_finite("threshold", given), "given")
        default = (ASNORM_DEFAULT_THRESHOLD if score_norm == "asnorm"
                   else float(self.embedder.default_threshold))
        return choose_threshold(given, self.store.get_setting("threshold"), score_norm, default,
                                rule, dim)

    def identify(self, audio: AudioInput, *, cascade: CascadeConfig = CascadeConfig(),
                 threshold: float | None = None, min_margin: float = 0.0,
                 exhaustive: bool = False, name: str | None = None,
                 score_norm: ScoreNorm = "none", cohort=None, cohort_top: int | None = None,
                 min_duration_s: float | None = None) -> IdentifyResult:
        """Who is speaking in ``audio``: cascade search, speaker aggregation
        (``cascade.aggregation``), optional AS-norm of the candidates' scores
        (``score_norm="asnorm"`` against ``cohort``: None for the database's speaker means, a
        ``Cohort`` or a ``Cohort.save`` file; top-N ``cohort_top``), open-set decision."""
        check_score_norm(score_norm)
        self.refresh()
        check_finite("min_margin", min_margin)
        if threshold is not None:
            check_finite("threshold", threshold)
        emb = self.embed(audio, name=name, min_duration_s=min_duration_s)
        return self.identify_embedding(emb, cascade=cascade, threshold=threshold,
                                       min_margin=min_margin, exhaustive=exhaustive,
                                       score_norm=score_norm, cohort=cohort,
                                       cohort_top=cohort_top)

    def diarize(self, audio: AudioInput, *, num_speakers: int | None = None,
                max_speakers: int | None = None, name: str | None = None,
                min_duration_s: float | None = None, cascade: CascadeConfig = CascadeConfig(),
                threshold: float | None = None, min_margin: float = 0.0,
                exhaustive: bool = False):
        """Who spoke when in ``audio``, which may hold several voices: the speech (the
        database's speech detector) cut into 1.5 s windows every 0.75 s, embedded with the
        database's model, clustered (``num_speakers`` clusters, or as many as the distances
        say, at most ``max_speakers``), each cluster identified like a query (a known name,
        or ``unknown-1``, ``unknown-2``, ...). Returns a ``diarize.run.DiarizeResult`` whose
        ``turns`` say who spoke from when to when; less speech than the query gate
        (``min_duration_s``) is a TooShortError."""
        from speakerdb.diarize.run import diarize

        self.refresh()
        check_finite("min_margin", min_margin)
        if threshold is not None:
            check_finite("threshold", threshold)
        return diarize(self, audio, num_speakers=num_speakers, max_speakers=max_speakers,
                       name=name, min_duration_s=min_duration_s, cascade=cascade,
                       threshold=threshold, min_margin=min_margin, exhaustive=exhaustive)

    def identify_many(self, inputs, *, batch: int = 16, timings=None, **options):
        """``identify`` of each of ``inputs`` (audio inputs, or ``SourceItem``s of
        ``ingest.sources.discover`` whose ``speaker`` is the truth), yielding one
        ``search.bulk.Answer`` per input in input order: its result, or the AudioError that
        stopped it. Up to ``batch`` inputs are decoded, then embedded together (one model call
        per batch of segments), then searched one by one. ``timings`` (a
        ``search.bulk.Timings``) adds up the seconds of decode, embed and search. ``options``
        are ``identify``'s keywords; bad ones raise here, before any input is read."""
        from speakerdb.search.bulk import identify_many

        return identify_many(self, inputs, batch=batch, timings=timings, **options)

    def identify_embedding(self, emb, *, cascade: CascadeConfig = CascadeConfig(),
                           threshold: float | None = None, min_margin: float = 0.0,
                           exhaustive: bool = False, score_norm: ScoreNorm = "none",
                           cohort=None, cohort_top: int | None = None) -> IdentifyResult:
        """``identify`` of an ``AudioEmbedding`` made with the database's model (nothing is
        decoded or embedded; ``seconds`` of the result is the search's)."""
        from speakerdb.search.decision import aggregate, decide

        check_score_norm(score_norm)
        min_margin = check_finite("min_margin", min_margin)
        if threshold is not None:
            check_finite("threshold", threshold)
        t0 = time.perf_counter()
        with self.lock:  # the indexes, the hits' labels and the speaker caches agree
            dims = self.indexes.dims()
            full = max(dims)
            norm = self.scorer.norm(cohort, cohort_top, full) if score_norm == "asnorm" else None
            query = self.space.query(emb.segments_raw)
            exhaustive = exhaustive or len(dims) == 1  # a space without nested prefixes yet
            if exhaustive:
                hits = self.indexes.search_exhaustive(query[full], cascade.kept)
            else:
                hits = self.indexes.search_cascade(query, cascade)
            refs = self.store.segment_refs(h.segment_id for h in hits)
            labels = {i: r.speaker for i, r in refs.items()}
            rule = cascade.aggregation
            extra = {"centroids": self.scorer.centroids(), "query": query[full]} \
                if rule == "centroid" and hits else {}
            candidates = aggregate(hits, labels, rule, k=cascade.agg_k, **extra)
            if norm is not None:
                candidates = self.scorer.normalise(candidates, query[full], rule, norm)
        label = rule_label(rule, cascade.agg_k)
        thr = identify_threshold(self, threshold, score_norm, rule, cascade.agg_k, full,
                                 cohort_top)
        d = decide(candidates, thr.value, min_margin)
        best = candidates[0] if candidates else None
        return IdentifyResult(
            input=emb.input, decision=d.decision, speaker=d.speaker, score=d.score,
            threshold=thr.value, margin=d.margin, min_margin=min_margin,
            candidates=candidates[: cascade.top_k], mode="exhaustive" if exhaustive else "cascade",
            segments_scored=len(hits), seconds=time.perf_counter() - t0,
            threshold_source=thr.source, score_norm=score_norm, aggregation=label,
            cosine=None if best is None else (best.cosine if norm else best.score),
            cohort=None if norm is None else norm.info(),
        )

    def verify(self, a: AudioInput, b: AudioInput, threshold: float | None = None, *,
               score_norm: ScoreNorm = "none", cohort=None, cohort_top: int | None = None,
               min_duration_s: float | None = None) -> VerifyResult:
        """Cosine score of ``a`` against ``b`` at every dimension and a same/different decision;
        with ``score_norm="asnorm"`` the scores are AS-normalised against ``cohort`` (None: the
        database's speaker means)."""
        check_score_norm(score_norm)
        self.refresh()
        if threshold is not None and not isinstance(threshold, Threshold):
            check_finite("threshold", threshold)
        top = max(self.embedder.dims)
        norm = self.scorer.norm(cohort, cohort_top, top) if score_norm == "asnorm" else None
        thr = self.threshold_for(threshold, score_norm, None, top)
        return verify_with(self.embedder, a, b, thr, self.policy, score_norm=score_norm,
                           cohort=norm, cohort_top=cohort_top,
                           min_duration_s=gate_seconds(min_duration_s, self.gates.min_query_s),
                           space=self.space)

    def calibrate(self, target_far: float | None = None, eer: bool = False,
                  score_norm: ScoreNorm = "none", rule: Aggregation | None = None, dim: int | None = None,
                  *, agg_k: int | None = None, cohort_top: int | None = None,
                  fpir: float | None = None):
        """Choose and store a decision threshold from the database's own labelled vectors.

        Leave-one-out: every labelled segment is a query against the other recordings
        (segments of its own recording never count as genuine), aggregated per speaker by
        ``rule`` (default: identify's, ``max``), at ``dim`` (default: the top dimension of the
        database's space), raw or AS-normalised (``score_norm``).

        Identification (the default, target ``fpir``, 0.01): each speaker in turn is unknown
        against the others; impostor statistics fitted on those comparisons give identify a
        threshold for that FPIR at whatever size the gallery has when it searches
        (``eval.openset_calibration``). Stored per score space (``identify_calibrations``);
        returns an ``IdentifyCalibration``.

        Verification (``target_far``, or the EER point with ``eer``): the lowest threshold
        with FAR <= ``target_far`` per comparison; stored under ``threshold`` and used by
        verify. Returns the ``eval.calibrate.Calibration``."""
        with self.writing():
            return calibrate_db(self, target_far, eer, score_norm, rule, dim, agg_k,
                                cohort_top, fpir)

    def check(self, repair: bool = False, quick: bool = False) -> CheckReport:
        """Compare the saved vectors with the store: every vector and each file's checksum,
        or with ``quick`` a sample of vectors; ``repair`` rebuilds them if they differ. A
        damaged store is a failed check (it cannot be repaired from
        itself)."""
        t0, mode = time.perf_counter(), "quick" if quick else "full"
        notes = []
        try:
            notes = self._catch_up_before_check()
            problems = self.indexes.problems(quick=quick)
        except DamagedStoreError as e:
            try:
                counts = self.store.counts()
            except StoreError:
                counts = {}
            return CheckReport(False, [str(e)], counts, False, mode, time.perf_counter() - t0)
        if problems and repair:
            self.require_writable("check --repair")
            with self.writing():
                self.indexes.rebuild()
            after = self.indexes.problems(quick=quick)
            return CheckReport(not after, problems, self.store.counts(), True, mode,
                               time.perf_counter() - t0, notes)
        return CheckReport(not problems, problems, self.store.counts(), False, mode,
                           time.perf_counter() - t0, notes)

    def _catch_up_before_check(self) -> list[str]:
        """Saved vectors that are only behind the store (saved at an older store generation;
        segments another process, or one killed before its index save, committed since) are
        caught up as every open does, then checked: being behind is not a disagreement.
        Vectors that need a rebuild, or that lack segments although saved at the store's
        generation, are left for the check to report."""
        if self.read_only or self.indexes.plan() != "append" or (
                self.indexes.saved_generation() >= self.store.generation()):
            return []  # (saved at the store's generation and still lacking some: damage)
        with self.writing():
            self.indexes.open(catch_up=True)  # loads what is saved, appends the rest, saves
        return [f"the saved vectors were behind the store: caught up to {self.indexes.count()}"
                " vectors"]

    def rebuild_indexes(self) -> None:
        with self.writing():
            self.indexes.rebuild()

    @property
    def space(self):
        """The database's vector space (``speakerdb.index.space``)."""
        return self.indexes.space

    def fit_rotation(self, force: bool = False) -> bool:
        """For a model without nested prefixes: learn the database's rotation from its stored
        vectors once there are ``MIN_ROTATION_VECTORS`` (or now, with ``force``), store it and
        rebuild the indexes in the rotated space. Returns whether a rotation was fitted."""
        from speakerdb.index.space import MIN_ROTATION_VECTORS

        if self.space.rotation is not None or len(self.space.dims) > 1:
            return False
        n = self.store.counts()["segments"]
        if n < (2 if force else MIN_ROTATION_VECTORS):
            return False
        with self.writing():
            return self._fit_rotation()

    def _fit_rotation(self) -> bool:
        from speakerdb.index.space import ROTATION_KEY, encode_rotation, fit_rotation

        if self.space.rotation is not None:  # another process fitted it meanwhile
            return False
        _, raw = self.store.all_vectors()
        self.store.set_setting(ROTATION_KEY, encode_rotation(fit_rotation(raw), len(raw)))
        self.indexes.space = stored_space(self.store, self.model)
        self.indexes.rebuild()
        self.scorer.invalidate()
        return True

    # speaker management (speakerdb/speakers.py) -----------------------------------------------
    def speakers(self) -> list[SpeakerInfo]:
        """Every labelled speaker with recordings, sorted by label."""
        return self.store.speaker_infos()  # one query: no need to pass through management

    def rename_speaker(self, old: str, new: str) -> SpeakerInfo:
        """Relabel ``old`` (NotFound if unknown; UsageError if ``new`` exists: merge instead)."""
        return manage.rename_speaker(self, old, new)

    def merge_speakers(self, source: str, target: str) -> SpeakerInfo:
        """Move every recording of ``source`` to ``target`` (both must exist); delete ``source``."""
        return manage.merge_speakers(self, source, target)

    def delete_speaker(self, label: str) -> int:
        """Delete a speaker and its recordings; returns the number of segments removed."""
        return manage.delete_speaker(self, label)

    def delete_recording(self, key: str) -> int:
        """Delete a recording (sha256, unique sha256 prefix or stored path) and its speaker if it
        has no recordings left; returns the number of segments removed."""
        return manage.delete_recording(self, key)

    def enroll(self, speaker: str, audio: list[AudioInput], names: list[str] | None = None,
               min_duration_s: float | None = None) -> EnrollResult:
        """Add recordings of ``speaker`` through the ingest path (one transaction)."""
        return manage.enroll(self, speaker, audio, names, min_duration_s)

    def stats(self) -> dict:
        return {
            "home": str(self.home),
            "model": {"name": self.model.name, "sha256": self.model.sha256,
                      "dims": list(self.model.dims)},
            "vad": self.policy.vad,
            "multi_voice_recordings": len(self.store.get_setting(MULTI_VOICE_KEY) or []),
            "counts": self.store.counts(),
            "vectors": self.indexes.describe(),
            "threshold": self.store.get_setting("threshold"),
            "identify_calibrations": calibration_states(self.store),
            "space": {"name": self.space.name, "dims": list(self.space.dims)},
        }

