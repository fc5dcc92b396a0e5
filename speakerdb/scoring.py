"""Scoring glue between the store and a decision: the database's labelled gallery and speaker
centroids, the AS-norm cohort and its cached statistics, duration gates, verification and
calibration of a database.

AS-norm at query time (``Scorer.normalise``): for each candidate speaker ``c`` with raw score
``s`` (its aggregated cosine), the enrollment side is the vector the score was made from (the
best segment for ``max``, the speaker's centroid for ``centroid``, the unit mean of the segments
that entered the score for ``mean``/``top2``/``topk``), the test side is the query; both sides
leave ``c``'s own cohort member(s) out, so the cohort only ever holds impostors of the
hypothesis "the query is ``c``". Calibration (``search.decision.loo_rule_scores``) normalises
leave-one-out scores the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from speakerdb.audio import (FRAME_S, TARGET_RATE, AudioInput, AudioPolicy, Prepared, describe,
                             load, prepare, signal_seconds)
from speakerdb.config import (ASNORM_DEFAULT_THRESHOLD, check_duration, check_finite,
                              check_score_norm)
from speakerdb.embedding import AudioEmbedding
from speakerdb.errors import AudioError, TooShortError, UsageError
from speakerdb.ingest.runner import embed_segments
from speakerdb.model.prefixes import mean_embedding
from speakerdb.results import Threshold, VerifyResult
from speakerdb.search.asnorm import (Cohort, asnorm, cohort_from_speakers, cohort_stats,
                                     exclusion_mask)
from speakerdb.search.decision import Candidate, resolve_cohort_top
from speakerdb.store.records import FailureIn

__all__ = ["Gallery", "Norm", "Scorer", "check_gate", "embed_gated", "gate_batches",
           "gate_seconds", "gated_policy", "verify_with"]

_STATS_CACHE_MAX = 200_000


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


@dataclass
class Gallery:
    """Every stored segment: ids (n,), speaker label or None, recording key (its path) and the
    unit vector at the top dimension of the database's space (n, d) float32."""

    ids: np.ndarray
    labels: list[str | None]
    recordings: list[str]
    vectors: np.ndarray
    _centroids: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def labelled(self) -> tuple[np.ndarray, list[str], list[str]]:
        keep = [i for i, s in enumerate(self.labels) if s is not None]
        return (self.vectors[keep], [self.labels[i] for i in keep],
                [self.recordings[i] for i in keep])

    def centroids(self) -> dict[str, np.ndarray]:
        """{speaker: unit mean of its segment vectors} (float32), computed once."""
        if self._centroids is None:
            vecs, labels, _ = self.labelled()
            if not labels:
                self._centroids = {}
            else:
                c = cohort_from_speakers(vecs, labels, "mean")
                self._centroids = dict(zip(c.speakers, c.vectors))
        return self._centroids


def load_gallery(store, space) -> Gallery:
    top = max(space.dims)
    ids, raw = store.all_vectors()
    refs = store.segment_refs(ids) if len(ids) else {}
    vecs = _unit(space.transform(raw)[:, :top]).astype(np.float32) if len(ids) else \
        np.zeros((0, top), np.float32)
    labels = [refs[int(i)].speaker for i in ids]
    recs = [refs[int(i)].path for i in ids]
    return Gallery(ids, labels, recs, vecs)


@dataclass(frozen=True)
class Norm:
    """An AS-norm cohort ready for use: the cohort, its name ("database", "given" or the
    file) and the top-N."""

    cohort: Cohort
    name: str
    top_n: int

    def info(self) -> dict:
        return {"source": self.name, "size": self.cohort.size, "top_n": self.top_n}


class Scorer:
    """What identify needs beyond the indexes, cached on a ``SpeakerDB`` until its content
    changes (``invalidate``): the gallery, centroids, cohorts and enrollment-side statistics."""

    def __init__(self, store, space_fn):
        self.store, self._space_fn = store, space_fn
        self.invalidate()

    def invalidate(self) -> None:
        self._gallery: Gallery | None = None
        self._cohorts: dict = {}
        self._estats: dict = {}
        self._speakers: int | None = None
        self._memo: dict = {}

    def speaker_count(self) -> int:
        """Labelled speakers in the store (the gallery size identify decides for)."""
        if self._speakers is None:
            self._speakers = int(self.store.counts()["speakers"])
        return self._speakers

    def memo(self, key, make):
        """``make()`` once per ``key`` until the database changes (thresholds, learned
        impostor statistics)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def gallery(self) -> Gallery:
        if self._gallery is None:
            self._gallery = load_gallery(self.store, self._space_fn())
        return self._gallery

    def centroids(self) -> dict[str, np.ndarray]:
        return self.gallery().centroids()

    def norm(self, source=None, top: int | None = None, dim: int | None = None) -> Norm:
        """The AS-norm set-up: the database's speaker means (``source`` None), a ``Cohort``
        (named "given"), or a ``Cohort.save`` file (loaded once per path and modification
        time); top-N ``top``; checked against score dimension ``dim``."""
        if isinstance(source, Cohort):
            cohort, name = source, "given"
        else:
            name = "database" if source is None else str(source)
            p = None if source is None else Path(source)
            key = "database" if p is None else (name, p.stat().st_mtime_ns if p.is_file() else 0)
            if key not in self._cohorts:
                self._cohorts[key] = Cohort.load(p) if p is not None else self._db_cohort()
            cohort = self._cohorts[key]
        if dim is not None:
            check_cohort_dim(cohort, dim, name)
        return Norm(cohort, name, resolve_cohort_top(top, cohort.size))

    def _db_cohort(self) -> Cohort:
        vecs, labels, _ = self.gallery().labelled()
        if len(set(labels)) < 2:
            raise UsageError("AS-norm needs a cohort: the database has fewer than 2 labelled "
                             "speakers (give --cohort FILE)")
        return cohort_from_speakers(vecs, labels, "mean")

    def normalise(self, candidates: list[Candidate], query: np.ndarray, rule: str,
                  norm: Norm) -> list[Candidate]:
        """AS-normalised candidates, best first; ``cosine`` keeps each raw score. Enrollment
        statistics are cached unless the cohort was passed in as an object."""
        if not candidates:
            return []
        cohort, top_n = norm.cohort, norm.top_n
        check_cohort_dim(cohort, query.shape[0], norm.name)
        cache = self._estats if norm.name != "given" else {}
        keys = [(norm.name, top_n, c.speaker,
                 ("centroid",) if rule == "centroid" else c.used) for c in candidates]
        todo = [i for i, k in enumerate(keys) if k not in cache]
        if todo:
            reps = self._representatives([candidates[i] for i in todo], rule)
            m, s = cohort_stats(reps, cohort, top_n,
                                _exclusion(cohort, [candidates[i].speaker for i in todo]))
            if len(cache) > _STATS_CACHE_MAX:
                cache.clear()
            for j, i in enumerate(todo):
                cache[keys[i]] = (float(m[j]), float(s[j]))
        me = np.array([cache[k][0] for k in keys])
        se = np.array([cache[k][1] for k in keys])
        q = np.repeat(np.asarray(query, np.float32)[None, :], len(candidates), axis=0)
        t = cohort_stats(q, cohort, top_n, _exclusion(cohort, [c.speaker for c in candidates]))
        normed = asnorm(np.array([c.score for c in candidates]), (me, se), t)
        out = [replace(c, score=float(v), cosine=c.score) for c, v in zip(candidates, normed)]
        out.sort(key=lambda c: (-c.score, c.speaker))
        return out

    def _representatives(self, candidates: list[Candidate], rule: str) -> np.ndarray:
        if rule == "centroid":
            cents = self.centroids()
            return np.stack([cents[c.speaker] for c in candidates])
        wanted = sorted({i for c in candidates for i in c.used})
        space = self._space_fn()
        top = max(space.dims)
        rows = {}
        for ids, raw in self.store.vectors(np.asarray(wanted, np.int64)):
            for i, v in zip(ids, _unit(space.transform(raw)[:, :top])):
                rows[int(i)] = v
        return np.stack([_unit(np.sum([rows[i] for i in c.used], axis=0))
                         for c in candidates]).astype(np.float32)


def _exclusion(cohort: Cohort, speakers: list[str]):
    return None if cohort.speakers is None else exclusion_mask(cohort, speakers)


def check_cohort_dim(cohort: Cohort, dim: int, name: str) -> None:
    if cohort.dim != dim:
        raise UsageError(f"cohort {name} has {cohort.dim}-D vectors but scores here are "
                         f"{dim}-D (a cohort must be in the database's top dimension)")


# ---------------------------------------------------------------- duration gates


def gated_policy(policy: AudioPolicy, gate: float) -> AudioPolicy:
    """The policy to prepare audio with when ``gate`` seconds of signal are required: pieces
    are kept by the lower of the policy's and the gate's minimum; the gate is checked after."""
    return replace(policy, min_signal_s=min(policy.min_signal_s, gate))


def _too_short(name: str, got: float, gate: float) -> TooShortError:
    return TooShortError(name, f"too short: {_secs(got)} s of signal, need at least "
                               f"{_secs(gate)} s")


def _secs(x: float) -> str:
    """Seconds with one or two decimals: 1.0, 0.8, 0.25."""
    text = f"{x:.2f}"
    return text[:-1] if text.endswith("0") else text


def check_gate(prepared: Prepared, gate: float, policy: AudioPolicy) -> None:
    """``TooShortError`` when the segments of ``prepared`` hold less than ``gate`` seconds of
    signal."""
    got = prepared.signal_s if prepared.signal_s is not None else sum(
        signal_seconds(s.samples, TARGET_RATE, policy.silence_dbfs) for s in prepared.segments)
    if got < gate:
        raise _too_short(prepared.name, got, gate)


def check_signal_gate(samples, gate: float, policy: AudioPolicy, name: str) -> None:
    """``TooShortError`` when mono ``TARGET_RATE`` samples hold less than ``gate`` seconds of
    signal; silent audio (frames, none above the floor) is left to ``audio.check_signal``."""
    got = signal_seconds(samples, TARGET_RATE, policy.silence_dbfs)
    frames = len(samples) // max(1, round(FRAME_S * TARGET_RATE))
    if got < gate and (got > 0 or frames == 0):
        raise _too_short(name, got, gate)


def gate_batches(batches: Iterable, gate: float, policy: AudioPolicy):
    """Reader batches with inputs below the enrollment gate moved to the failures; inputs
    rejected under the policy's lower minimum are re-described against the gate."""
    for batch in batches:
        keep = []
        for d in batch.decoded:
            try:
                check_gate(d.prepared, gate, policy)
                keep.append(d)
            except TooShortError as e:
                batch.failures.append(FailureIn(d.prepared.name, d.sha256, e.reason, str(e)))
        batch.decoded = keep
        if gate > policy.min_signal_s:
            batch.failures = [_regated(f, gate, policy) for f in batch.failures]
        yield batch


def _regated(f: FailureIn, gate: float, policy: AudioPolicy) -> FailureIn:
    from speakerdb.names import input_path

    if f.reason != TooShortError.reason:
        return f
    try:
        samples = load(input_path(f.path), name=f.path, max_duration_s=policy.max_duration_s)
        check_signal_gate(samples.samples, gate, policy, f.path)
    except TooShortError as e:
        return replace(f, message=str(e))
    except AudioError:
        pass
    return f


# ---------------------------------------------------------------- verify


def gate_seconds(given: float | None, default: float) -> float:
    return default if given is None else check_duration(given)


def embed_gated(embedder, audio: AudioInput, policy: AudioPolicy, gate: float, name=None):
    """``embedding.embed_audio`` with a duration gate: less than ``gate`` seconds of signal is a
    TooShortError naming the measured and required seconds."""
    name = describe(audio) if name is None else name
    wave = load(audio, name=name, max_duration_s=policy.max_duration_s)
    check_signal_gate(wave.samples, gate, policy, name)
    prepared = prepare(wave, gated_policy(policy, gate), name=name)
    check_gate(prepared, gate, policy)
    raw = embed_segments(embedder, [s.samples for s in prepared.segments], batch=16)
    if not np.all(np.isfinite(raw)):
        raise AudioError(prepared.name, "the model returned NaN or infinite values")
    return AudioEmbedding(prepared.name, prepared.duration_s, len(prepared.segments),
                          raw.mean(axis=0), mean_embedding(raw, embedder.dims), raw)


def verify_with(embedder, a: AudioInput, b: AudioInput, threshold=None,
                policy: AudioPolicy = AudioPolicy(), *, score_norm: str = "none", cohort=None,
                cohort_top: int | None = None, min_duration_s: float | None = None,
                space=None) -> VerifyResult:
    """Verify with a model alone (no database needed).

    ``threshold``: a float (reported as "given"), a ``Threshold``, or None for the model's
    default (the AS-norm default with ``score_norm="asnorm"``). AS-norm needs ``cohort``: a
    ``Norm``, a ``Cohort`` or a ``Cohort.save`` file, in the top dimension; each dimension's
    scores use the cohort's prefix. The database's own cohort holds the enrolled speakers, so
    its member nearest the pair (the speaker the pair most likely is) is left out of both
    sides. ``space`` maps the outputs into a database's space."""
    check_score_norm(score_norm)
    norm = None
    if score_norm == "asnorm":
        if cohort is None:
            raise UsageError("--score-norm asnorm without a database needs --cohort FILE")
        if not isinstance(cohort, Norm):
            c = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
            name = "given" if isinstance(cohort, Cohort) else str(cohort)
            cohort = Norm(c, name, resolve_cohort_top(cohort_top, c.size))
        norm = cohort
    dims = tuple(embedder.dims)
    if norm is not None:
        check_cohort_dim(norm.cohort, max(dims), norm.name)
    if threshold is None:
        threshold = Threshold(ASNORM_DEFAULT_THRESHOLD, "asnorm default") if norm else \
            Threshold(float(embedder.default_threshold), "model default")
    elif not isinstance(threshold, Threshold):
        threshold = Threshold(check_finite("--threshold", threshold), "given")
    gate = policy.min_signal_s if min_duration_s is None else check_duration(min_duration_s)
    ea, eb = (embed_gated(embedder, x, policy, gate) for x in (a, b))
    if space is not None:
        va, vb = space.query(ea.segments_raw), space.query(eb.segments_raw)
    else:
        va, vb = ea.nested, eb.nested
    cosines = {d: float(va[d] @ vb[d]) for d in dims}
    scores = dict(cosines)
    if norm is not None:
        top = max(dims)
        pair = np.asarray(va[top], np.float64) + np.asarray(vb[top], np.float64)
        near = int(np.argmax(norm.cohort.vectors @ pair))
        excl = np.array([near]) if norm.name == "database" and norm.cohort.size > 1 else None
        for d in dims:
            c = norm.cohort.prefix(d)
            s = asnorm(np.array([cosines[d]]), cohort_stats(va[d][None], c, norm.top_n, excl),
                       cohort_stats(vb[d][None], c, norm.top_n, excl))
            scores[d] = float(s[0])
    score = scores[max(dims)]
    return VerifyResult(ea.input, eb.input, scores, score, threshold.value,
                        "same" if score >= threshold.value else "different",
                        threshold_source=threshold.source, score_norm=score_norm,
                        cosines=cosines, cohort=None if norm is None else norm.info())
