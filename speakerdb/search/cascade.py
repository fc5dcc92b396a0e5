"""The identify cascade: a screen over everything at the space's first dimension (64-D), exact
rescoring of a shrinking shortlist at the next ones (128, 192-D), final ranking at the last
(256-D), as ``CascadeConfig.stages`` pairs dimensions and shortlist sizes; and the exhaustive
search at the last dimension it is compared with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from speakerdb.config import CascadeConfig

__all__ = ["Hit", "ScoringIndex", "cascade_search", "cascade_search_many", "exhaustive_search"]


class ScoringIndex(Protocol):
    ntotal: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def score_many(self, queries: np.ndarray, ids: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Hit:
    segment_id: int
    score: float  # cosine at the final dimension
    scores: dict[int, float]  # cosine at every dimension the segment was scored at


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best by score; ties broken by the smaller id so results are deterministic."""
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def cascade_search(
    indexes: Mapping[int, ScoringIndex], query: Mapping[int, np.ndarray], config: CascadeConfig
) -> list[Hit]:
    """Segments ranked by the cascade, best first (at most the last stage's shortlist).

    indexes: {dim: index over unit prefixes}; query: {dim: (dim,) unit vector}.
    """
    batch = {d: np.asarray(q, np.float32)[None, :] for d, q in query.items()}
    return cascade_search_many(indexes, batch, config)[0]


def _rows_top(ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the column positions of the k best, best first (ties: smaller id first); ids
    < 0 are padding and sort last."""
    scores = np.where(ids < 0, -np.inf, scores)
    return np.lexsort((ids, -scores), axis=1)[:, :k]


def _rows_best(ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the column positions of the k best in no particular order: the same set as
    ``_rows_top`` (ties at the cut go to the smaller id) for a fraction of the sorting."""
    if k >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    scores = np.where(ids < 0, -np.inf, scores)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part[:, k - 1 : k], 1)
    if ((scores >= kth).sum(axis=1) > k).any():  # a tie straddles the cut: settle it by id
        return _rows_top(ids, scores, k)
    return part


def cascade_search_many(
    indexes: Mapping[int, ScoringIndex], queries: Mapping[int, np.ndarray], config: CascadeConfig
) -> list[list[Hit]]:
    """``cascade_search`` for a batch: queries {dim: (q, dim) unit vectors}. One screening
    search for the whole batch (FAISS spreads it over the cores); then every later stage that
    cuts scores its shortlist exactly from that dimension's stored vectors, in place, and keeps
    the best (the set, unsorted). A stage that keeps everything (e.g. the 128-D one of the
    default 3000/3000/100) changes nothing, so its scores are computed for the final shortlist
    only; that one is sorted."""
    dims = sorted(indexes)
    screen = indexes[dims[0]]
    q0 = np.ascontiguousarray(np.asarray(queries[dims[0]], np.float32))
    if screen.ntotal == 0 or q0.shape[0] == 0:
        return [[] for _ in range(q0.shape[0])]
    stages = config.stages(dims) or [(dims[0], config.shortlist[0])]  # one dimension: a screen
    sizes = dict(stages[1:])
    scores, ids = screen.search(q0, min(stages[0][1], screen.ntotal))
    if (ids < 0).any():  # an approximate screen found fewer than asked: padding sorts last
        pos = _rows_top(ids, scores, ids.shape[1])
        ids, scores = np.take_along_axis(ids, pos, 1), np.take_along_axis(scores, pos, 1)
    trail = {dims[0]: scores}  # per dimension scored so far, (q, m) aligned with ids
    later = []  # stages that cut nothing: scored on the final shortlist only (same result)
    for d in dims[1:]:
        cut = d in sizes and sizes[d] < ids.shape[1]
        if not cut and d != dims[-1]:
            later.append(d)
            continue
        trail[d] = s = indexes[d].score_many(np.asarray(queries[d], np.float32), ids)
        if cut:
            pos = _rows_best(ids, s, sizes[d])
            ids = np.take_along_axis(ids, pos, 1)
            trail = {k: np.take_along_axis(t, pos, 1) for k, t in trail.items()}
    for d in later:
        trail[d] = indexes[d].score_many(np.asarray(queries[d], np.float32), ids)
    pos = _rows_top(ids, trail[dims[-1]], ids.shape[1])
    ids = np.take_along_axis(ids, pos, 1).tolist()
    per_dim = np.stack([np.take_along_axis(trail[d], pos, 1) for d in dims], axis=2).tolist()
    return [[Hit(i, per[-1], dict(zip(dims, per))) for i, per in zip(row_ids, row) if i >= 0]
            for row_ids, row in zip(ids, per_dim)]


def exhaustive_search(index: ScoringIndex, query: np.ndarray, k: int) -> list[Hit]:
    """The ``k`` best segments by exact search at one dimension (256-D for comparison)."""
    if index.ntotal == 0:
        return []
    q = np.asarray(query, np.float32)
    s, ids = index.search(q[None, :], min(k, index.ntotal))
    ids, s = _top(ids[0], s[0], k)
    return [Hit(int(i), float(v), {q.shape[0]: float(v)}) for i, v in zip(ids, s)]
