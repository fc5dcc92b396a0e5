"""Verification and identification metrics over score sets.

Conventions shared by every function here. A higher score means "more likely the same speaker".
A trial is accepted when ``score >= threshold``, so a trial whose score equals the threshold is
accepted. The operating points of a score set are the distinct scores used as thresholds,
ascending, followed by ``nextafter(max score, +inf)``, the lowest threshold that rejects every
trial. The first operating point accepts every trial (P_miss = 0, P_fa = 1) and the last rejects
every trial (P_miss = 1, P_fa = 0). Accepting ``score >= s`` at a distinct score ``s`` is the same
decision as accepting ``score > u`` for any ``u`` between ``s`` and the next lower distinct score,
which is how :func:`eer` describes the same operating points ("accept above a threshold just
above each score"), so :func:`eer`, :func:`det_curve`, :func:`rates_at` and the threshold
functions all see one set of operating points. Where several operating points tie on the
quantity being optimised, the highest threshold (fewest false accepts) is returned. Rates are
computed as ``count / total`` in float64. Empty score sets and NaN scores raise ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "allowed_count",
    "check_scores",
    "det_curve",
    "dir_at_fpir",
    "eer",
    "eer_threshold",
    "min_dcf",
    "rates_at",
    "threshold_at_far",
    "top_k_accuracy",
]


def check_scores(x: ArrayLike, name: str, *, allow_empty: bool = False,
                 allow_inf: bool = False) -> np.ndarray:
    """``x`` as a 1-D float64 array of scores; ``ValueError`` (naming ``name``) when it is not
    1-D, is empty (unless ``allow_empty``) or holds NaN (or an infinity, unless
    ``allow_inf``)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of scores, got shape {a.shape}")
    if a.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: need at least one score")
    bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
    if bad.any():
        what = "NaN" if allow_inf else "NaN or infinite"
        raise ValueError(f"{name} contains {what} scores (first at index {int(np.argmax(bad))})")
    return a


def _rate(x: float, name: str) -> float:
    r = float(x)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {x!r}")
    return r


def _det_counts(t: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss counts, false-accept counts and thresholds at every operating point."""
    scores = np.concatenate([t, n])
    is_t = np.concatenate([np.ones(len(t), bool), np.zeros(len(n), bool)])
    order = np.argsort(scores, kind="stable")
    scores, is_t = scores[order], is_t[order]
    miss = np.concatenate([[0], np.cumsum(is_t)])
    fa = len(n) - np.concatenate([[0], np.cumsum(~is_t)])
    keep = np.concatenate([[True], scores[1:] != scores[:-1], [True]])
    thresholds = np.append(scores, np.nextafter(scores[-1], np.inf))
    return miss[keep], fa[keep], thresholds[keep]


def _last_argmin(x: np.ndarray) -> int:
    """Index of the last minimum (the highest threshold among tied operating points)."""
    return len(x) - 1 - int(np.argmin(x[::-1]))


def allowed_count(rate: float, total: int) -> int:
    """Largest count c in [0, total] with c / total <= rate, evaluated as rates_at does."""
    c = min(total, int(np.floor(rate * total)))
    while c < total and (c + 1) / total <= rate:
        c += 1
    while c > 0 and c / total > rate:
        c -= 1
    return c


def _lowest_threshold(scores: np.ndarray, rate: float) -> float:
    """Lowest threshold accepting (score >= threshold) at most a `rate` fraction of scores."""
    c = allowed_count(rate, len(scores))
    if c >= len(scores):
        return float("-inf")
    v = np.partition(scores, len(scores) - c - 1)[len(scores) - c - 1]
    return float(np.nextafter(v, np.inf))


def eer(target: np.ndarray, nontarget: np.ndarray) -> float:
    """Equal error rate (fraction), exact from the sorted scores: the miss and false-alarm
    rates at every threshold, linearly interpolated where they cross.

    The operating points are those of :func:`det_curve` (accept ``score > u`` for ``u`` just
    above each distinct score, the same decisions as ``score >= s`` at the next distinct score
    ``s``). If P_miss equals P_fa at an operating point that common value is returned;
    otherwise the value where the straight segment between the two bracketing operating points
    meets P_miss = P_fa. Infinite scores are allowed here since only their order matters; empty
    sets and NaN scores raise ValueError.
    """
    t = check_scores(target, "target", allow_inf=True)
    n = check_scores(nontarget, "nontarget", allow_inf=True)
    scores = np.concatenate([t, n])
    is_t = np.concatenate([np.ones(len(t)), np.zeros(len(n))])
    order = np.argsort(scores, kind="stable")
    scores, is_t = scores[order], is_t[order]
    # threshold just above scores[k] (accept > threshold): misses = targets at or below it
    miss = np.concatenate([[0.0], np.cumsum(is_t)]) / len(t)
    fa = 1.0 - np.concatenate([[0.0], np.cumsum(1 - is_t)]) / len(n)
    # only thresholds between distinct scores are operating points
    keep = np.concatenate([[True], scores[1:] != scores[:-1], [True]])
    miss, fa = miss[keep], fa[keep]
    d = miss - fa                       # rises from -1 to +1
    k = int(np.argmax(d >= 0))
    if d[k] == 0 or k == 0:
        return float(miss[k])
    # interpolate between operating points k-1 and k
    a = d[k - 1] / (d[k - 1] - d[k])
    return float(miss[k - 1] + a * (miss[k] - miss[k - 1]))


def det_curve(target: ArrayLike, nontarget: ArrayLike
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All operating points of the detection error trade-off as ``(p_miss, p_fa, thresholds)``.

    ``thresholds`` holds the distinct scores of both sets in ascending order followed by
    ``nextafter(max score, +inf)``; at ``thresholds[i]`` a trial is accepted when
    ``score >= thresholds[i]``, ``p_miss[i]`` is the fraction of target scores below it and
    ``p_fa[i]`` the fraction of non-target scores at or above it, exactly what :func:`rates_at`
    returns there. ``p_miss`` is non-decreasing from 0 and ``p_fa`` non-increasing from 1 to 0;
    consecutive points differ in at least one of the two rates. Scores must be finite.
    """
    t = check_scores(target, "target")
    n = check_scores(nontarget, "nontarget")
    miss, fa, thresholds = _det_counts(t, n)
    return miss / len(t), fa / len(n), thresholds


def eer_threshold(target: ArrayLike, nontarget: ArrayLike) -> float:
    """Threshold of the operating point closest to equal error: the :func:`det_curve`
    threshold minimising ``|P_miss - P_fa|``, compared exactly on counts.

    The interpolated EER of :func:`eer` lies on the segment between the last operating point
    with P_miss < P_fa and the first with P_miss >= P_fa, and the returned point is whichever of
    the two is more balanced; when both are equally balanced the higher threshold (the one with
    P_miss >= P_fa) is returned. When P_miss == P_fa at some operating point, its threshold is
    returned and ``rates_at`` there gives the EER exactly. Scores must be finite.
    """
    t = check_scores(target, "target")
    n = check_scores(nontarget, "nontarget")
    miss, fa, thresholds = _det_counts(t, n)
    gap = np.abs(miss * len(n) - fa * len(t))
    return float(thresholds[_last_argmin(gap)])


def min_dcf(target: ArrayLike, nontarget: ArrayLike, p_target: float,
            c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Normalised minimum detection cost and the threshold attaining it (NIST SRE convention).

    DCF(t) = c_miss * p_target * P_miss(t) + c_fa * (1 - p_target) * P_fa(t), divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the better of the trivial
    systems that accept everything or reject everything. The minimum is taken over every
    :func:`det_curve` operating point, both extremes included, so the result lies in [0, 1];
    among tied minima the highest threshold is returned (it may be ``nextafter(max score,
    +inf)``, rejecting every trial). Requires 0 < p_target < 1, positive costs, finite scores.
    """
    p = float(p_target)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p_target must be strictly between 0 and 1, got {p_target!r}")
    if not (c_miss > 0 and c_fa > 0):
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss!r} and {c_fa!r}")
    p_miss, p_fa, thresholds = det_curve(target, nontarget)
    w_miss, w_fa = float(c_miss) * p, float(c_fa) * (1.0 - p)
    cost = (w_miss * p_miss + w_fa * p_fa) / min(w_miss, w_fa)
    i = _last_argmin(cost)
    return float(cost[i]), float(thresholds[i])


def threshold_at_far(nontarget: ArrayLike, far: float) -> float:
    """Lowest threshold whose false-accept rate ``#{nontarget >= t} / len(nontarget)`` is at
    most ``far``.

    With c the largest count with ``c / len(nontarget) <= far`` and v the (c+1)-th highest
    non-target score, this is ``nextafter(v, +inf)``: every non-target tied with v is rejected,
    and at v itself (the next float down) the rate exceeds ``far``. ``far = 0`` gives
    ``nextafter(max(nontarget), +inf)``, rejecting every non-target; ``far = 1`` gives ``-inf``.
    Being the lowest such threshold it also gives the lowest false-reject rate for any target
    set. Requires 0 <= far <= 1 and finite scores.
    """
    n = check_scores(nontarget, "nontarget")
    return _lowest_threshold(n, _rate(far, "far"))


def rates_at(target: ArrayLike, nontarget: ArrayLike, threshold: float) -> tuple[float, float]:
    """``(false reject rate, false accept rate)`` at ``threshold``: the fraction of target
    scores below it and the fraction of non-target scores at or above it (accept when
    ``score >= threshold``). ``threshold`` may be infinite but not NaN; scores must be finite.
    """
    thr = float(threshold)
    if np.isnan(thr):
        raise ValueError("threshold is NaN")
    t = check_scores(target, "target")
    n = check_scores(nontarget, "nontarget")
    return int(np.count_nonzero(t < thr)) / len(t), int(np.count_nonzero(n >= thr)) / len(n)


def top_k_accuracy(ranked: Sequence[Sequence[str]], truth: Sequence[str], k: int) -> float:
    """Closed-set rank-k identification rate: the fraction of probes whose true label is among
    the first ``k`` labels of its ranking (best first). A ranking shorter than ``k`` counts
    only the labels it has. Requires as many rankings as true labels, at least one probe and
    ``k >= 1``.
    """
    if len(ranked) != len(truth):
        raise ValueError(f"ranked has {len(ranked)} probes but truth has {len(truth)}")
    if not truth:
        raise ValueError("truth is empty: need at least one probe")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    hits = sum(label in list(r[:int(k)]) for r, label in zip(ranked, truth))
    return hits / len(truth)


def dir_at_fpir(known_top_scores: ArrayLike, known_top_correct: ArrayLike,
                unknown_top_scores: ArrayLike, fpir: float) -> tuple[float, float]:
    """Open-set detection and identification rate at a false positive identification rate
    (ISO/IEC 19795-1), returned as ``(DIR, t)``.

    FPIR(t) is the fraction of unknown (non-mated) probes whose top-1 score is ``>= t`` and
    DIR(t) the fraction of known (mated) probes whose top-1 candidate is the true speaker with
    score ``>= t``. ``t`` is the lowest threshold with FPIR(t) <= fpir, chosen exactly as
    :func:`threshold_at_far` chooses it on the unknown scores (``-inf`` for fpir = 1, above
    every unknown score for fpir = 0). With no known probes DIR is NaN and ``t`` is still
    returned; with no unknown probes FPIR is undefined and ValueError is raised.
    """
    unknown = check_scores(unknown_top_scores, "unknown_top_scores", allow_empty=True)
    if unknown.size == 0:
        raise ValueError("unknown_top_scores is empty: FPIR needs at least one non-mated probe")
    known = check_scores(known_top_scores, "known_top_scores", allow_empty=True)
    correct = np.asarray(known_top_correct, dtype=bool).reshape(-1)
    if correct.shape != known.shape:
        raise ValueError(f"known_top_correct has {correct.size} entries but known_top_scores "
                         f"has {known.size}")
    t = _lowest_threshold(unknown, _rate(fpir, "fpir"))
    if known.size == 0:
        return float("nan"), t
    return int(np.count_nonzero(correct & (known >= t))) / known.size, t
