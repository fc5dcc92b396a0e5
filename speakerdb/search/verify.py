"""Verification with a model alone (no database needed): two inputs, one score per dimension,
raw or AS-normalised, and a same/different decision at a threshold."""

from __future__ import annotations

import numpy as np

from speakerdb.audio import AudioInput, AudioPolicy
from speakerdb.config import (ASNORM_DEFAULT_THRESHOLD, ScoreNorm, check_duration,
                              check_finite, check_score_norm)
from speakerdb.database.results import Threshold, VerifyResult
from speakerdb.errors import UsageError
from speakerdb.search.asnorm import Cohort, asnorm, cohort_stats
from speakerdb.search.decision import resolve_cohort_top
from speakerdb.search.gallery import Norm, check_cohort_dim
from speakerdb.search.query import embed_gated

__all__ = ["verify_with"]


def verify_with(embedder, a: AudioInput, b: AudioInput, threshold=None,
                policy: AudioPolicy = AudioPolicy(), *, score_norm: ScoreNorm = "none", cohort=None,
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
            raise UsageError("score_norm asnorm without a database needs cohort FILE",
                             option="score_norm", also=("cohort",))
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
        threshold = Threshold(check_finite("threshold", threshold), "given")
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
