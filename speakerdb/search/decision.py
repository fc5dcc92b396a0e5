"""Speaker-level aggregation of segment hits and the open-set decision; the same rules over a
whole labelled gallery, leave-one-out, for calibration (``loo_matrix``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from speakerdb.errors import UsageError
from speakerdb.model.prefixes import unit
from speakerdb.search.asnorm import asnorm, cohort_from_speakers, resolve_top_n

__all__ = ["AGGREGATIONS", "DEFAULT_AGG_K", "Candidate", "Decision", "TopStats", "aggregate",
           "check_rule", "decide", "excluded_stats", "loo_matrix", "loo_rule_scores",
           "resolve_cohort_top", "rule_label"]

AGGREGATIONS = ("max", "mean", "top2", "topk", "centroid")
DEFAULT_AGG_K = 3  # segments averaged by the "topk" rule
_BLOCK_ELEMENTS = 1 << 22  # similarities held at once by loo_rule_scores (32 MiB)


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
        raise UsageError(f"aggregation {rule!r}: choose one of {', '.join(AGGREGATIONS)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"--agg-k must be a positive integer, got {k!r}")


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
        raise UsageError(f"--cohort-top must be in 1..{size} (the cohort size), got {top!r}")
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


# ---------------------------------------------------------------- leave-one-out scores


class TopStats:
    """Sorted rows of cohort scores (m, C), ready for the mean and population std of each row's
    ``top_n`` largest entries with one column left out per row (``without``)."""

    def __init__(self, scores: np.ndarray, top_n: int):
        s = np.asarray(scores, dtype=np.float64)
        self.shift = s.max(axis=1) if s.size else np.zeros(s.shape[0])
        self.s = s - self.shift[:, None]  # relative to the row maximum: a stable variance
        self.top_n = int(top_n)
        v = -np.sort(-self.s, axis=1)
        zero = np.zeros((self.s.shape[0], 1))
        self.p1 = np.concatenate([zero, np.cumsum(v, axis=1)], axis=1)
        self.p2 = np.concatenate([zero, np.cumsum(v * v, axis=1)], axis=1)

    def without(self, exclude) -> tuple[np.ndarray, np.ndarray]:
        """Leave out column ``exclude[r]`` of row ``r`` (-1: none); a row with fewer than
        ``top_n`` remaining entries uses all of them (as ``cohort_stats`` does)."""
        m, c = self.s.shape
        rows = np.arange(m)
        ex = np.broadcast_to(np.asarray(exclude, dtype=np.int64), (m,))
        has = ex >= 0
        if c == 1 and np.any(has):
            raise UsageError("a row has every cohort member excluded")
        val = np.where(has, self.s[rows, np.maximum(ex, 0)], 0.0)
        n_use = np.where(has, min(self.top_n, c - 1), self.top_n)
        rank = (self.s > val[:, None]).sum(axis=1)
        inside = has & (rank < n_use)
        cut = np.where(inside, n_use + 1, n_use)
        total = self.p1[rows, cut] - np.where(inside, val, 0.0)
        sq = self.p2[rows, cut] - np.where(inside, val * val, 0.0)
        mean = total / n_use
        var = np.maximum(sq / n_use - mean * mean, 0.0)
        return mean + self.shift, np.sqrt(var)


def excluded_stats(scores: np.ndarray, top_n: int, exclude) -> tuple[np.ndarray, np.ndarray]:
    """``TopStats(scores, top_n).without(exclude)``."""
    return TopStats(scores, top_n).without(exclude)


def _codes(values) -> tuple[np.ndarray, int]:
    _, codes = np.unique(np.array([str(v) for v in values], dtype=np.str_), return_inverse=True)
    return codes.astype(np.int64), int(codes.max()) + 1


def loo_matrix(vectors, labels, recordings, rule: str, k: int = 3, *, asnorm_top=None,
               score_norm: str = "none"):
    """The one leave-one-out scorer: ``(agg, spk)``, every item's aggregated score against
    every speaker (``agg`` (n, S), speakers in sorted label order; the own column leaves the
    item's recording out and is NaN where nothing is left) and each item's own column ``spk``,
    for any identify rule (``max``, ``mean``, ``top2``, ``topk`` with ``k``, ``centroid``), raw
    or AS-normalised against the speakers' unit means (``score_norm="asnorm"``, top-N
    ``asnorm_top``), each side leaving the scored speaker out of the cohort; ``recordings``
    None makes every item its own recording. Raw ``max``/``mean``/``centroid`` go through the
    faster ``eval.calibrate.loo_matrix_sums`` (same definitions)."""
    from speakerdb.eval.calibrate import LOO_RULES, loo_matrix_sums

    check_rule(rule, k)
    if score_norm == "none" and rule in LOO_RULES:
        return loo_matrix_sums(vectors, labels, recordings, rule)
    return _loo_rule_matrix(vectors, labels, recordings, rule, k, asnorm_top, score_norm)


def loo_rule_scores(vectors, labels, recordings, rule: str, k: int = 3, *, asnorm_top=None,
                    score_norm: str = "none"):
    """Leave-one-out ``(target, nontarget)`` scores like ``eval.calibrate.loo_scores`` (same
    galleries, same order: targets by item, nontargets by item then speaker name) for any
    identify rule, raw or AS-normalised (``_loo_rule_matrix``)."""
    from speakerdb.eval.calibrate import split_loo

    check_rule(rule, k)
    return split_loo(*_loo_rule_matrix(vectors, labels, recordings, rule, k, asnorm_top,
                                       score_norm))


def _loo_rule_matrix(vectors, labels, recordings, rule, k, asnorm_top, score_norm):

    check_rule(rule, k)
    if score_norm not in ("none", "asnorm"):
        raise UsageError(f"score_norm {score_norm!r}: choose none or asnorm")
    x = unit(vectors)
    n = x.shape[0]
    spk, n_spk = _codes(labels)
    rec = np.arange(n) if recordings is None else _codes(recordings)[0]
    _, grp = np.unique(spk * (int(rec.max()) + 1) + rec, return_inverse=True)
    take = {"top2": 2, "topk": k}.get(rule)
    cols = [np.flatnonzero(spk == s) for s in range(n_spk)]
    spk_sum = np.zeros((n_spk, x.shape[1]))
    np.add.at(spk_sum, spk, x)
    grp_sum = np.zeros((int(grp.max()) + 1, x.shape[1]))
    np.add.at(grp_sum, grp, x)
    norm = score_norm == "asnorm"
    if norm:
        cohort = cohort_from_speakers(x, [str(v) for v in labels]).vectors.astype(np.float64)
        top_n = resolve_cohort_top(asnorm_top, n_spk)
        seg_stats = excluded_stats(x @ cohort.T, top_n, spk)
        cen_stats = excluded_stats(cohort @ cohort.T, top_n, np.arange(n_spk))
        loo_cen = unit(spk_sum[spk] - grp_sum[grp])
        loo_stats = excluded_stats(loo_cen @ cohort.T, top_n, spk)
    agg = np.full((n, n_spk), np.nan)
    block = max(1, _BLOCK_ELEMENTS // max(n, n_spk * 8))
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        b = np.arange(lo, hi)
        sims = x[lo:hi] @ x.T
        sims[grp[lo:hi, None] == grp[None, :]] = -np.inf
        if norm:
            qstats = TopStats(x[lo:hi] @ cohort.T, top_n)
        for s in range(n_spk):
            sub = sims[:, cols[s]]
            ok = np.isfinite(sub)
            cnt = ok.sum(axis=1)
            own = spk[lo:hi] == s
            if rule == "max":
                arg = np.argmax(sub, axis=1)
                val = sub[np.arange(hi - lo), arg]
            elif rule in ("mean", "centroid"):
                total = np.where(ok, sub, 0.0).sum(axis=1)
                rep = np.where(own[:, None], spk_sum[s] - grp_sum[grp[lo:hi]], spk_sum[s])
                with np.errstate(invalid="ignore", divide="ignore"):
                    val = total / cnt if rule == "mean" else \
                        total / np.linalg.norm(rep, axis=1)
            else:
                order = np.argsort(-np.where(ok, sub, -np.inf), axis=1, kind="stable")[:, :take]
                picked = np.take_along_axis(sub, order, axis=1)
                pok = np.isfinite(picked)
                with np.errstate(invalid="ignore", divide="ignore"):
                    val = np.where(pok, picked, 0.0).sum(axis=1) / pok.sum(axis=1)
            val = np.where(cnt > 0, val, np.nan)
            if norm:
                if rule == "max":
                    es = (seg_stats[0][cols[s][arg]], seg_stats[1][cols[s][arg]])
                elif rule in ("mean", "centroid"):
                    es = tuple(np.where(own, st[b], cs[s]) for st, cs in zip(loo_stats,
                                                                            cen_stats))
                else:
                    vec = np.where(pok[:, :, None], x[cols[s][order]], 0.0).sum(axis=1)
                    es = excluded_stats(unit(vec) @ cohort.T, top_n, np.full(hi - lo, s))
                val = asnorm(val, es, qstats.without(s))
            agg[lo:hi, s] = val
    return agg, spk
