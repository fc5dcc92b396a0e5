"""Leave-one-out scores of a labelled gallery: every item scored against every speaker with
identify's aggregation rules, as calibration, learned impostor statistics and evaluation use.

For item ``i`` the gallery is every other item. Items of ``i``'s own speaker and recording are
left out too (``recordings`` None makes every item its own recording); other speakers keep all
their items. Each speaker's remaining items are aggregated by the rule (``search.decision``):

* ``max``: the best cosine;
* ``mean``: the mean cosine;
* ``top2`` / ``topk``: the mean of the 2 / ``k`` best cosines (all when fewer; ties in item
  order);
* ``centroid``: the cosine with the unit mean of the speaker's items.

``score_norm="asnorm"`` normalises each score as ``Scorer.normalise`` does at query time, against
a cohort of the speakers' unit means (top-N ``asnorm_top``): the enrollment side is the vector
the score was made from (the best item for ``max``, the unit mean of the items used otherwise),
the test side is the item; both sides leave the scored speaker out of the cohort.

Rows are scored in blocks, so memory stays bounded (``_BLOCK_ELEMENTS`` values per block); the
mean and centroid rules use per-speaker and per-recording vector sums and never form the item x
item similarities.
"""

from __future__ import annotations

import numpy as np

from speakerdb.errors import UsageError
from speakerdb.model.prefixes import unit
from speakerdb.search.asnorm import asnorm, cohort_from_speakers
from speakerdb.search.decision import DEFAULT_AGG_K, check_rule, resolve_cohort_top

__all__ = ["TopStats", "excluded_stats", "loo_matrix", "loo_scores", "split_loo"]

_BLOCK_ELEMENTS = 1 << 22  # values held at once per block of rows (32 MiB of float64)
_NORMS = ("none", "asnorm")


class TopStats:
    """Sorted rows of cohort scores (m, C), ready for the mean and population std of each row's
    ``top_n`` largest entries with one column left out (``without``, ``without_each``)."""

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
        """``(mean, std)`` (m,) leaving out column ``exclude[r]`` of row ``r`` (-1: none); a row
        with fewer than ``top_n`` remaining entries uses all of them (as ``cohort_stats``
        does)."""
        m = self.s.shape[0]
        ex = np.broadcast_to(np.asarray(exclude, dtype=np.int64), (m,))
        has = ex >= 0
        val = np.where(has, self.s[np.arange(m), np.maximum(ex, 0)], 0.0)
        rank = (self.s > val[:, None]).sum(axis=1)
        mean, std = self._left(val[:, None], rank[:, None], has[:, None])
        return mean[:, 0], std[:, 0]

    def without_each(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` (m, C): entry ``[r, c]`` leaves out column ``c`` of row ``r``."""
        from scipy.stats import rankdata

        c = self.s.shape[1]
        rank = c - rankdata(self.s, method="max", axis=1).astype(np.int64)  # entries above
        return self._left(self.s, rank, np.ones(self.s.shape, dtype=bool))

    def _left(self, val, rank, has):
        """Statistics of each row's top entries with the entry ``val`` (of ``rank`` larger
        entries in its row) left out where ``has``; arrays (m, J)."""
        c = self.s.shape[1]
        if c == 1 and np.any(has):
            raise UsageError("a row has every cohort member excluded")
        n_use = np.where(has, min(self.top_n, c - 1), self.top_n)
        inside = has & (rank < n_use)
        cut = np.where(inside, n_use + 1, n_use)
        total = np.take_along_axis(self.p1, cut, axis=1) - np.where(inside, val, 0.0)
        sq = np.take_along_axis(self.p2, cut, axis=1) - np.where(inside, val * val, 0.0)
        mean = total / n_use
        var = np.maximum(sq / n_use - mean * mean, 0.0)
        return mean + self.shift[:, None], np.sqrt(var)


def excluded_stats(scores: np.ndarray, top_n: int, exclude) -> tuple[np.ndarray, np.ndarray]:
    """``TopStats(scores, top_n).without(exclude)``."""
    return TopStats(scores, top_n).without(exclude)


def _codes(values, n: int, what: str) -> np.ndarray:
    """Integer codes (0..k-1, in sorted order of the values as text) of ``n`` labels."""
    vals = list(values)
    if len(vals) != n:
        raise UsageError(f"{n} vectors but {len(vals)} {what}")
    _, codes = np.unique(np.array([str(v) for v in vals], dtype=np.str_), return_inverse=True)
    return codes.astype(np.int64).ravel()


def _unit_rows(vectors) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise UsageError(f"vectors must be a non-empty (n, d) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise UsageError("vectors contain non-finite values")
    norms = np.linalg.norm(x, axis=1)
    if np.any(norms == 0):
        raise UsageError(f"vector {int(np.argmax(norms == 0))} is all zeros")
    return x / norms[:, None]


def _sums(x: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, codes, x)
    return sums, np.bincount(codes, minlength=k)


class _Gallery:
    """The labelled items of one leave-one-out run: unit vectors, speaker and (speaker,
    recording) group codes, the items sorted by speaker, and vector sums per speaker and
    group."""

    def __init__(self, vectors, labels, recordings):
        self.x = x = _unit_rows(vectors)
        n = x.shape[0]
        self.spk = _codes(labels, n, "labels")
        self.n_spk = int(self.spk.max()) + 1
        if recordings is None:
            self.grp = np.arange(n)
        else:
            rec = _codes(recordings, n, "recording ids")
            _, grp = np.unique(self.spk * (int(rec.max()) + 1) + rec, return_inverse=True)
            self.grp = grp.astype(np.int64).ravel()
        self.order = np.argsort(self.spk, kind="stable")  # items by speaker, then item order
        self.xs, self.grp_s = x[self.order], self.grp[self.order]
        self.starts = np.searchsorted(self.spk[self.order], np.arange(self.n_spk))
        self.spk_sum, self.spk_cnt = _sums(x, self.spk, self.n_spk)
        self.grp_sum, self.grp_cnt = _sums(x, self.grp, int(self.grp.max()) + 1)


class _Norm:
    """AS-norm of leave-one-out scores: the cohort of speaker unit means (member ``s`` is
    speaker ``s``) and the enrollment statistics that do not depend on the scored row."""

    def __init__(self, g: _Gallery, labels, top, rule: str):
        self.cohort = cohort_from_speakers(g.x, [str(v) for v in labels]).vectors.astype(
            np.float64)
        self.top_n = resolve_cohort_top(top, g.n_spk)
        if rule == "max":  # each item as the enrollment side, its own speaker left out
            self.items = excluded_stats(g.x @ self.cohort.T, self.top_n, g.spk)
        elif rule in ("mean", "centroid"):
            # other speakers: their whole mean; own speaker: the mean without the row's group
            self.whole = excluded_stats(self.cohort @ self.cohort.T, self.top_n,
                                        np.arange(g.n_spk))
            rest = unit(g.spk_sum[g.spk] - g.grp_sum[g.grp])
            self.rest = excluded_stats(rest @ self.cohort.T, self.top_n, g.spk)

    def test_side(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(b, S) statistics of rows ``x`` with each speaker in turn left out."""
        return TopStats(x @ self.cohort.T, self.top_n).without_each()

    def of_vectors(self, reps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(b, S) statistics of the (b, S, d) unit enrollment vectors, speaker ``s`` left out
        of column ``s``."""
        b, n_spk, d = reps.shape
        exclude = np.tile(np.arange(n_spk), b)
        m, s = excluded_stats(reps.reshape(-1, d) @ self.cohort.T, self.top_n, exclude)
        return m.reshape(b, n_spk), s.reshape(b, n_spk)


def _sum_rule(g: _Gallery, rows: slice, rule: str):
    """(b, S) ``mean`` or ``centroid`` scores of the rows from vector sums, and the (b,) count
    of each row's own-speaker items left."""
    x, own = g.x[rows], g.spk[rows]
    b = np.arange(x.shape[0])
    dots = x @ g.spk_sum.T
    own_dot = dots[b, own] - np.einsum("ij,ij->i", x, g.grp_sum[g.grp[rows]])
    own_cnt = g.spk_cnt[own] - g.grp_cnt[g.grp[rows]]
    if rule == "mean":
        val = dots / g.spk_cnt[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            val[b, own] = own_dot / own_cnt
    else:
        norms = np.linalg.norm(g.spk_sum, axis=1)
        val = dots / np.where(norms > 0, norms, np.inf)[None, :]
        own_norm = np.linalg.norm(g.spk_sum[own] - g.grp_sum[g.grp[rows]], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            val[b, own] = np.where(own_norm > 0,
                                   own_dot / np.where(own_norm > 0, own_norm, 1.0), 0.0)
    return val, own_cnt


def _best(sims: np.ndarray, g: _Gallery, take: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``take`` best entries of each speaker's columns in each row of ``sims`` (columns
    sorted by speaker), best first, ties in column order: values and columns, (b, S, take).
    Past a speaker's finite entries the values are -inf."""
    work = sims.copy()
    b, n = work.shape
    code, col = g.spk[g.order], np.arange(n)[None, :]
    vals = np.empty((b, g.n_spk, take))
    cols = np.empty((b, g.n_spk, take), dtype=np.int64)
    for t in range(take):
        vals[:, :, t] = np.maximum.reduceat(work, g.starts, axis=1)
        first = np.where(work == vals[:, code, t], col, n)
        cols[:, :, t] = np.minimum.reduceat(first, g.starts, axis=1)
        work[np.arange(b)[:, None], cols[:, :, t]] = -np.inf
    return vals, cols


def _block(g: _Gallery, rows: slice, rule: str, k: int, norm: _Norm | None) -> np.ndarray:
    """(b, S) leave-one-out scores of the rows ``rows`` against every speaker."""
    x, own = g.x[rows], g.spk[rows]
    b = np.arange(x.shape[0])
    is_own = np.arange(g.n_spk)[None, :] == own[:, None]
    if rule in ("mean", "centroid"):
        val, own_cnt = _sum_rule(g, rows, rule)
        val[b, own] = np.where(own_cnt > 0, val[b, own], np.nan)
        if norm is not None:
            es = tuple(np.where(is_own, r[rows][:, None], w[None, :])
                       for r, w in zip(norm.rest, norm.whole))
            val = asnorm(val, es, norm.test_side(x))
        return val
    sims = x @ g.xs.T  # columns: items by speaker
    sims[g.grp[rows][:, None] == g.grp_s[None, :]] = -np.inf  # the row's own group
    count = np.add.reduceat(np.isfinite(sims), g.starts, axis=1)
    if rule == "max" and norm is None:
        val = np.maximum.reduceat(sims, g.starts, axis=1)
    elif rule == "max":  # the first best item of each speaker is the enrollment side
        picked, cols = _best(sims, g, 1)
        val, best = picked[:, :, 0], g.order[cols[:, :, 0]]
        es = (norm.items[0][best], norm.items[1][best])
    else:
        take = 2 if rule == "top2" else k
        picked, cols = _best(sims, g, take)
        used = np.arange(take)[None, None, :] < np.minimum(count, take)[:, :, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            val = np.where(used, picked, 0.0).sum(axis=2) / used.sum(axis=2)
        if norm is not None:
            reps = np.where(used[..., None], g.xs[cols], 0.0).sum(axis=2)
            es = norm.of_vectors(unit(reps))
    val = np.where(count > 0, val, np.nan)
    if norm is not None:
        val = asnorm(val, es, norm.test_side(x))
    return val


def loo_matrix(vectors, labels, recordings=None, rule: str = "max", k: int = DEFAULT_AGG_K, *,
               score_norm: str = "none", asnorm_top: int | None = None):
    """Leave-one-out scores ``(agg, spk)`` of every item against every speaker (see the module
    docstring): ``agg`` (n, S) float64 with speakers in sorted label order, the own column NaN
    where the item's speaker has nothing left; ``spk`` (n,) each item's own column. Vectors
    (n, d) are L2-normalised first; ``labels`` and ``recordings`` give one value per item."""
    check_rule(rule, k)
    if score_norm not in _NORMS:
        raise UsageError(f"score_norm {score_norm!r}: choose none or asnorm")
    g = _Gallery(vectors, labels, recordings)
    norm = _Norm(g, labels, asnorm_top, rule) if score_norm == "asnorm" else None
    n, n_spk, d = g.x.shape[0], g.n_spk, g.x.shape[1]
    width = max(n, 8 * n_spk)  # values per row of a block
    if norm is not None:
        width = max(width, n_spk * n_spk, n_spk * (n_spk + max(2, k) * d))
    block = max(1, _BLOCK_ELEMENTS // width)
    agg = np.empty((n, n_spk))
    for lo in range(0, n, block):
        rows = slice(lo, min(n, lo + block))
        agg[rows] = _block(g, rows, rule, k, norm)
    return agg, g.spk


def split_loo(agg: np.ndarray, spk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(target, nontarget)`` float64 from a leave-one-out matrix: targets by item (items
    without an own-speaker gallery give none); nontargets by item, then by speaker column."""
    n = agg.shape[0]
    own = agg[np.arange(n), spk]
    other = np.ones(agg.shape, dtype=bool)
    other[np.arange(n), spk] = False
    return own[~np.isnan(own)].astype(np.float64), agg[other].astype(np.float64)


def loo_scores(vectors, labels, recordings=None, rule: str = "max", k: int = DEFAULT_AGG_K, *,
               score_norm: str = "none", asnorm_top: int | None = None):
    """Leave-one-out ``(target, nontarget)`` scores: ``split_loo`` of ``loo_matrix``. An item's
    score for its own speaker is a target score, its score for every other speaker a nontarget
    score."""
    return split_loo(*loo_matrix(vectors, labels, recordings, rule, k, score_norm=score_norm,
                                 asnorm_top=asnorm_top))
