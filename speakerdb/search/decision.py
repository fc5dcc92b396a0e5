"""Speaker-level aggregation of segment hits and the open-set decision."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from speakerdb.errors import UsageError

__all__ = ["AGGREGATIONS", "Candidate", "Decision", "aggregate", "decide"]

AGGREGATIONS = ("max", "mean", "top2")


@dataclass(frozen=True)
class Candidate:
    speaker: str
    score: float
    segments: int  # of this speaker's segments among the scored hits
    best_segment: int


@dataclass(frozen=True)
class Decision:
    decision: str  # "match" | "unknown"
    speaker: str | None
    score: float | None
    margin: float | None  # best minus second speaker's score (None with one candidate)
    threshold: float
    min_margin: float


def aggregate(hits, labels: Mapping[int, str | None], rule: str = "max") -> list[Candidate]:
    """Speaker candidates, best first, from segment hits (unlabelled segments are skipped).

    rule: ``max`` (best segment), ``mean`` (mean over the speaker's hits), ``top2`` (mean of the
    two best, falling back to the best alone).
    """
    if rule not in AGGREGATIONS:
        raise UsageError(f"aggregation {rule!r}: choose one of {', '.join(AGGREGATIONS)}")
    per: dict[str, list] = defaultdict(list)
    for h in hits:
        label = labels.get(h.segment_id)
        if label is not None:
            per[label].append(h)
    out = []
    for label, hs in per.items():
        scores = np.sort(np.array([h.score for h in hs]))[::-1]
        if rule == "max":
            score = scores[0]
        elif rule == "mean":
            score = scores.mean()
        else:
            score = scores[:2].mean()
        best = max(hs, key=lambda h: (h.score, -h.segment_id))
        out.append(Candidate(label, float(score), len(hs), best.segment_id))
    out.sort(key=lambda c: (-c.score, c.speaker))
    return out


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
