"""Choosing a decision threshold from labelled embeddings or scores.

Conventions:

* A score is *accepted* when ``score >= threshold``. FAR is the fraction of nontarget scores
  accepted, FRR the fraction of target scores rejected (``score < threshold``).
* The thresholds are the ones ``speakerdb eval`` reports, defined once in
  ``speakerdb.eval.metrics``:
* ``target_far``: ``metrics.threshold_at_far``, the lowest threshold whose FAR is
  ``<= target_far``: with ``N`` nontarget scores at most ``K = allowed_count(target_far, N)``
  may be accepted, so the threshold is the next representable value above the ``(K+1)``-th
  largest nontarget score. Ties at that score are all rejected, so the achieved FAR may be below
  ``K / N``. A ``target_far`` below ``1 / N`` cannot be estimated and is a ``UsageError``.
* ``method="eer"``: ``metrics.eer_threshold``, the DET operating point (accept ``>=`` a pooled
  score, or reject everything) closest to equal error, compared exactly on counts; of two
  equally balanced points the higher threshold.
* Thresholds are float64. When both score arrays are float32 the threshold is rounded up to the
  nearest float32, so it separates the scores the same way when compared in float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from speakerdb.errors import UsageError
from speakerdb.eval.metrics import allowed_count, eer_threshold, threshold_at_far

__all__ = ["LOO_RULES", "Calibration", "calibrate", "loo_matrix_sums", "loo_scores", "split_loo"]

LOO_RULES = ("max", "mean", "centroid")
_BLOCK_ELEMENTS = 1 << 22  # similarity entries held at once by the "max" rule (32 MiB)
_METHODS = ("eer",)


# ---------------------------------------------------------------- leave-one-out scores


def _codes(values, n: int, what: str) -> np.ndarray:
    """Integer codes (0..k-1, in sorted order of the values) of ``n`` hashable labels."""
    vals = list(values)
    if len(vals) != n:
        raise UsageError(f"{n} vectors but {len(vals)} {what}")
    _, codes = np.unique(np.array([str(v) for v in vals], dtype=np.str_), return_inverse=True)
    return codes.astype(np.int64)


def _unit(vectors) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise UsageError(f"vectors must be a non-empty (n, d) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise UsageError("vectors contain non-finite values")
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms == 0):
        raise UsageError(f"vector {int(np.argmax(norms == 0))} is all zeros")
    return x / norms[:, None]


def _group_sums(x: np.ndarray, codes: np.ndarray, k: int):
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, codes, x)
    return sums, np.bincount(codes, minlength=k)


def _loo_sum_rules(x, spk, grp, n_spk, n_grp, rule):
    """(n, S) aggregated scores for "mean"/"centroid" and the own-speaker score per item (NaN
    where the own-speaker gallery is empty), from per-speaker and per-group vector sums."""
    spk_sum, spk_cnt = _group_sums(x, spk, n_spk)
    grp_sum, grp_cnt = _group_sums(x, grp, n_grp)
    dots = x @ spk_sum.T
    own_dot = dots[np.arange(x.shape[0]), spk] - np.einsum("ij,ij->i", x, grp_sum[grp])
    own_cnt = spk_cnt[spk] - grp_cnt[grp]
    if rule == "mean":
        agg = dots / spk_cnt[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            own = own_dot / own_cnt
    else:
        norms = np.linalg.norm(spk_sum, axis=1)
        agg = dots / np.where(norms > 0, norms, np.inf)[None, :]
        own_vec = spk_sum[spk] - grp_sum[grp]
        own_norm = np.linalg.norm(own_vec, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            own = np.where(own_norm > 0, own_dot / np.where(own_norm > 0, own_norm, 1.0), 0.0)
    own = np.where(own_cnt > 0, own, np.nan)
    return agg, own


def _loo_max_rule(x, spk, grp, n_spk):
    """(n, S) best cosine of every item against each speaker's items outside the item's own
    group, and the own-speaker column alone (NaN where it is empty); rows in blocks."""
    n = x.shape[0]
    order = np.argsort(spk, kind="stable")
    xs, spk_s, grp_s = x[order], spk[order], grp[order]
    starts = np.searchsorted(spk_s, np.arange(n_spk))
    agg = np.empty((n, n_spk))
    own = np.empty(n)
    block = max(1, _BLOCK_ELEMENTS // n)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        sims = x[lo:hi] @ xs.T
        sims[grp[lo:hi, None] == grp_s[None, :]] = -np.inf  # only own-speaker items match
        agg[lo:hi] = np.maximum.reduceat(sims, starts, axis=1)
        own[lo:hi] = agg[np.arange(lo, hi), spk[lo:hi]]
    own[np.isneginf(own)] = np.nan
    return agg, own


def loo_matrix_sums(vectors, labels, recordings=None, rule: str = "max"):
    """Leave-one-out aggregated scores of every item against every speaker, ``(agg, spk)``:
    ``agg`` (n, S) float64 with speakers in sorted label order, ``spk`` (n,) each item's own
    speaker column. For every item ``i`` the gallery is every other item, aggregated per speaker
    by ``rule``: ``"max"`` (best cosine), ``"mean"`` (mean cosine) or ``"centroid"`` (cosine to
    the unit mean of the speaker's items). With ``recordings`` (one id per item), own-speaker
    items of ``i``'s recording are left out too; other speakers keep all their items. The own
    column is NaN where the own-speaker gallery is empty. Vectors are L2-normalised first."""
    if rule not in LOO_RULES:
        raise UsageError(f"rule {rule!r}: choose one of {', '.join(LOO_RULES)}")
    x = _unit(vectors)
    n = x.shape[0]
    spk = _codes(labels, n, "labels")
    n_spk = int(spk.max()) + 1
    if recordings is None:
        grp = np.arange(n)
    else:
        rec = _codes(recordings, n, "recording ids")
        _, grp = np.unique(spk * (int(rec.max()) + 1) + rec, return_inverse=True)
    n_grp = int(grp.max()) + 1
    if rule == "max":
        agg, own = _loo_max_rule(x, spk, grp, n_spk)
    else:
        agg, own = _loo_sum_rules(x, spk, grp, n_spk, n_grp, rule)
    agg = np.array(agg, dtype=np.float64)
    agg[np.arange(n), spk] = own
    return agg, spk


def split_loo(agg: np.ndarray, spk: np.ndarray):
    """``(target, nontarget)`` from a leave-one-out matrix: targets by item (items without an
    own-speaker gallery give none); nontargets by item, then by speaker column."""
    n = agg.shape[0]
    own = agg[np.arange(n), spk]
    other = np.ones(agg.shape, dtype=bool)
    other[np.arange(n), spk] = False
    return own[~np.isnan(own)].astype(np.float64), agg[other].astype(np.float64)


def loo_scores(vectors, labels, recordings=None, rule: str = "max"):
    """Leave-one-out identification scores ``(target, nontarget)``, float64 arrays, from
    ``loo_matrix_sums``: the aggregate for an item's own speaker, over its other items, is a
    target score; the aggregate for every other speaker is a nontarget score.

    Order: targets by item; nontargets by item, then by speaker label in sorted order.
    """
    return split_loo(*loo_matrix_sums(vectors, labels, recordings, rule))


# ---------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """A decision threshold with the rates it achieves on the data it was chosen from."""

    threshold: float
    method: str  # "far=0.01" or "eer"
    far: float
    frr: float
    targets: int
    nontargets: int
    score_norm: str = "none"
    dim: int = 256

    def to_dict(self) -> dict:
        """JSON-safe dict (plain floats, ints and strings); ``from_dict`` restores it exactly."""
        return {
            "threshold": float(self.threshold),
            "method": str(self.method),
            "far": float(self.far),
            "frr": float(self.frr),
            "targets": int(self.targets),
            "nontargets": int(self.nontargets),
            "score_norm": str(self.score_norm),
            "dim": int(self.dim),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibration:
        """The calibration described by ``d``; ``UsageError`` for missing, unknown or mistyped
        fields."""
        if not isinstance(d, Mapping):
            raise UsageError(f"calibration must be a mapping, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise UsageError(f"unknown calibration fields: {', '.join(map(str, unknown))}")
        required = names[:6]
        missing = [k for k in required if k not in d]
        if missing:
            raise UsageError(f"calibration lacks {', '.join(missing)}")
        out = {}
        for k in names:
            if k not in d:
                continue
            v = d[k]
            if k in ("threshold", "far", "frr"):
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
                v = float(v) if ok else v
            elif k in ("targets", "nontargets", "dim"):
                ok = isinstance(v, int) and not isinstance(v, bool)
            else:
                ok = isinstance(v, str)
            if not ok:
                raise UsageError(f"calibration field {k!r} has the wrong type: {v!r}")
            out[k] = v
        return cls(**out)


def _scores(a, what: str) -> np.ndarray:
    s = np.asarray(a)
    if s.size == 0:
        raise UsageError(f"no {what} scores to calibrate from")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise UsageError(f"{what} scores must be real numbers")
    if not np.all(np.isfinite(s)):
        raise UsageError(f"{what} scores contain non-finite values")
    return s.ravel()


def _round_up(x: float, dtype) -> float:
    """The smallest ``dtype`` value ``>= x``."""
    y = dtype(x)
    if float(y) < x:
        y = np.nextafter(y, dtype(np.inf))
    return float(y)


def _needed(far: float) -> int:
    """The fewest nontarget scores ``n`` with ``1 / n <= far``."""
    n = max(1, math.ceil(1.0 / far))
    while 1.0 / n > far:
        n += 1
    while n > 1 and 1.0 / (n - 1) <= far:
        n -= 1
    return n


def calibrate(target, nontarget, *, target_far: float | None = None, method: str | None = None,
              score_norm: str = "none", dim: int = 256) -> Calibration:
    """A threshold chosen from ``target`` and ``nontarget`` scores: the lowest one with FAR
    ``<= target_far`` (``0 < target_far < 1``), or with ``method="eer"`` the equal-error point
    (see the module docstring). Exactly one of the two must be given."""
    if (target_far is None) == (method is None):
        raise UsageError("give exactly one of target_far or method")
    t = _scores(target, "target")
    n = _scores(nontarget, "nontarget")
    if not isinstance(score_norm, str):
        raise UsageError(f"score_norm must be a string, got {score_norm!r}")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise UsageError(f"dim must be a positive integer, got {dim!r}")
    dtype = np.float32 if t.dtype == np.float32 and n.dtype == np.float32 else np.float64
    t64, n64 = t.astype(np.float64), n.astype(np.float64)
    if target_far is not None:
        if isinstance(target_far, bool) or not isinstance(target_far, (int, float, np.number)):
            raise UsageError(f"target FAR must be a number, got {target_far!r}")
        far_goal = float(target_far)
        if not 0.0 < far_goal < 1.0:
            raise UsageError(f"target FAR must be strictly between 0 and 1, got {far_goal!r}")
        if allowed_count(far_goal, n64.size) == 0:
            raise UsageError(f"target FAR {far_goal!r} needs at least {_needed(far_goal)} "
                             f"nontarget scores, got {n64.size}")
        thr = _round_up(threshold_at_far(n64, far_goal), dtype)
        label = f"far={far_goal!r}"
    else:
        if method not in _METHODS:
            raise UsageError(f"method {method!r}: choose one of {', '.join(_METHODS)}")
        thr = _round_up(eer_threshold(t64, n64), dtype)
        label = method
    return Calibration(
        threshold=thr,
        method=label,
        far=float(np.mean(n64 >= thr)),
        frr=float(np.mean(t64 < thr)),
        targets=int(t.size),
        nontargets=int(n.size),
        score_norm=score_norm,
        dim=int(dim),
    )
