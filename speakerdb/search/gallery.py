"""The database's labelled gallery as identify and evaluation score it: every stored segment's
unit vector with its speaker and recording, speaker centroids, the AS-norm cohort and its cached
statistics (``Scorer``, cached on a ``SpeakerDB`` until the database changes).

AS-norm at query time (``Scorer.normalise``): for each candidate speaker ``c`` with raw score
``s`` (its aggregated cosine), the enrollment side is the vector the score was made from (the
best segment for ``max``, the speaker's centroid for ``centroid``, the unit mean of the segments
that entered the score for ``mean``/``top2``/``topk``), the test side is the query; both sides
leave ``c``'s own cohort member(s) out, so the cohort only ever holds impostors of the
hypothesis "the query is ``c``". Calibration (``search.leave_one_out``) normalises
leave-one-out scores the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from speakerdb.errors import UsageError
from speakerdb.model.prefixes import unit
from speakerdb.search.asnorm import (Cohort, asnorm, cohort_from_speakers, cohort_stats,
                                     exclusion_mask)
from speakerdb.search.decision import Candidate, resolve_cohort_top

__all__ = ["Gallery", "Norm", "Scorer", "check_cohort_dim", "load_gallery"]

_STATS_CACHE_MAX = 200_000


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
    vecs = unit(space.transform(raw)[:, :top]).astype(np.float32) if len(ids) else \
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
            raise UsageError("AS-norm has no impostors to normalise against: the database has "
                             "fewer than 2 labelled speakers (give cohort FILE)",
                             option="cohort")
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
            for i, v in zip(ids, unit(space.transform(raw)[:, :top])):
                rows[int(i)] = v
        return np.stack([unit(np.sum([rows[i] for i in c.used], axis=0))
                         for c in candidates]).astype(np.float32)


def _exclusion(cohort: Cohort, speakers: list[str]):
    return None if cohort.speakers is None else exclusion_mask(cohort, speakers)


def check_cohort_dim(cohort: Cohort, dim: int, name: str) -> None:
    if cohort.dim != dim:
        raise UsageError(f"cohort {name} has {cohort.dim}-D vectors but scores here are "
                         f"{dim}-D (a cohort must be in the database's top dimension)")
