"""Speaker-level aggregation of segment hits and the open-set decision (the same rules over a
whole labelled gallery, leave-one-out: ``search.leave_one_out``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from speakerdb.config import AGGREGATIONS, DEFAULT_AGG_K
from speakerdb.errors import UsageError
from speakerdb.search.asnorm import resolve_top_n

__all__ = ["AGGREGATIONS", "DEFAULT_AGG_K", "Candidate", "Decision", "aggregate", "check_rule",
           "decide", "resolve_cohort_top", "rule_label"]


@dataclass(frozen=True)
class Candidate:
    speaker: str
    score: float
    segments: int  # of this speaker's segments among the scored hits
    best_segment: int
    used: tuple[int, ...] = ()  # segment ids the score is made of; () for the centroid rule
    cosine: float | None = None  # the score before normalisation (None when not normalised)


@dataclass(frozen=True)
class Decision:
    decision: str  # "match" | "unknown"
    speaker: str | None
    score: float | None
    margin: float | None  # best minus second speaker's score (None with one candidate)
    threshold: float
    min_margin: float


def check_rule(rule: str, k: int = DEFAULT_AGG_K) -> None:
    """``UsageError`` for an unknown rule or a ``topk`` k below 1."""
    if rule not in AGGREGATIONS:
        raise UsageError(f"aggregation {rule!r}: choose one of {', '.join(AGGREGATIONS)}",
                         option="aggregation")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"agg_k must be a positive integer, got {k!r}", option="agg_k")


def aggregate(hits, labels: Mapping[int, str | None], rule: str = "max", *,
              k: int = DEFAULT_AGG_K, centroids: Mapping[str, np.ndarray] | None = None,
              query: np.ndarray | None = None) -> list[Candidate]:
    """Speaker candidates, best first, from segment hits (unlabelled segments are skipped).

    rule: ``max`` (best segment), ``mean`` (mean over the speaker's hits), ``top2`` (mean of the
    two best, falling back to the best alone), ``topk`` (mean of the ``k`` best, or of all the
    speaker's hits when fewer), ``centroid`` (cosine of ``query`` with ``centroids[speaker]``,
    the unit mean of all the speaker's stored segment vectors at the query's dimension; every
    speaker with a hit is a candidate).
    """
    check_rule(rule, k)
    if rule == "centroid" and (centroids is None or query is None):
        raise UsageError("the centroid rule needs the speakers' centroids and the query vector")
    per: dict[str, list] = defaultdict(list)
    for h in hits:
        label = labels.get(h.segment_id)
        if label is not None:
            per[label].append(h)
    q = None if query is None else np.asarray(query, dtype=np.float64)
    out = []
    for label, hs in per.items():
        ranked = sorted(hs, key=lambda h: (-h.score, h.segment_id))
        scores = np.array([h.score for h in ranked])
        take = {"max": 1, "mean": len(ranked), "top2": 2, "topk": k}.get(rule, 0)
        if rule == "centroid":
            c = centroids.get(label)
            if c is None:
                raise UsageError(f"no centroid for speaker {label!r}")
            score = float(np.asarray(c, dtype=np.float64) @ q)
        else:
            score = float(scores[:take].mean())
        used = tuple(h.segment_id for h in ranked[:take])
        out.append(Candidate(label, score, len(hs), ranked[0].segment_id, used))
    out.sort(key=lambda c: (-c.score, c.speaker))
    return out


def rule_label(rule: str, k: int) -> str:
    """How a rule is named in results and stored calibrations: ``topk:3`` for topk with k=3."""
    return f"topk:{k}" if rule == "topk" else rule


def resolve_cohort_top(top: int | None, size: int) -> int:
    """AS-norm top-N: ``None`` gives the default clamped to the cohort ``size``; an explicit
    value must lie in 1..size."""
    from speakerdb.config import COHORT_TOP_N

    if top is None:
        return min(COHORT_TOP_N, int(size))
    if not (isinstance(top, (int, np.integer)) and not isinstance(top, bool) and 1 <= top <= size):
        raise UsageError(f"cohort_top must be in 1..{size} (the cohort size), got {top!r}",
                         option="cohort_top")
    return resolve_top_n(int(top), size)


def decide(candidates: list[Candidate], threshold: float, min_margin: float = 0.0) -> Decision:
    """``match`` when the best speaker's score reaches ``threshold`` and leads the second by at
    least ``min_margin``; ``unknown`` otherwise."""
    if not candidates:
        return Decision("unknown", None, None, None, threshold, min_margin)
    best = candidates[0]
    margin = best.score - candidates[1].score if len(candidates) > 1 else None
    ok = best.score >= threshold and (margin is None or margin >= min_margin)
    return Decision("match" if ok else "unknown", best.speaker if ok else None, best.score,
                    margin, threshold, min_margin)
