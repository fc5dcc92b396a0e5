"""Choosing a decision threshold from target and nontarget scores (those of labelled
embeddings, leave-one-out, come from ``search.leave_one_out``).

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

__all__ = ["Calibration", "calibrate"]

_METHODS = ("eer",)


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
