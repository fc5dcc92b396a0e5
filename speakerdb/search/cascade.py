"""The identify cascade: 64-D screen over everything, exact rescoring of a shrinking shortlist
at 128 and 192-D, final ranking at 256-D; and the exhaustive 256-D search it is compared with."""

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

    def score(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Hit:
    segment_id: int
    score: float  # cosine at the final dimension
    scores: dict[int, float]  # cosine at every dimension the segment was scored at


def _order(ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best by score; ties broken by the smaller id (deterministic)."""
    if ids.size > 4 * k:  # partial selection first: a full sort of a long shortlist is slow
        keep = np.argpartition(-scores, k - 1)[:k]
        edge = scores[keep].min()
        keep = np.flatnonzero(scores >= edge)  # every tie at the boundary competes
        return keep[np.lexsort((ids[keep], -scores[keep]))[:k]]
    return np.lexsort((ids, -scores))[:k]


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best by score; ties broken by the smaller id so results are deterministic."""
    order = _order(ids, scores, k)
    return ids[order], scores[order]


def cascade_search(
    indexes: Mapping[int, ScoringIndex], query: Mapping[int, np.ndarray], config: CascadeConfig
) -> list[Hit]:
    """Segments ranked by the cascade, best first (at most ``config.k192`` of them).

    indexes: {dim: index over unit prefixes}; query: {dim: (dim,) unit vector}.
    """
    batch = {d: np.asarray(q, np.float32)[None, :] for d, q in query.items()}
    return cascade_search_many(indexes, batch, config)[0]


def cascade_search_many(
    indexes: Mapping[int, ScoringIndex], queries: Mapping[int, np.ndarray], config: CascadeConfig
) -> list[list[Hit]]:
    """``cascade_search`` for a batch: queries {dim: (q, dim) unit vectors}; one screening
    search for the whole batch (FAISS spreads it over the cores), then each query's shortlist
    is rescored exactly from the stored vectors."""
    dims = sorted(indexes)
    screen = indexes[dims[0]]
    q0 = np.ascontiguousarray(np.asarray(queries[dims[0]], np.float32))
    if screen.ntotal == 0:
        return [[] for _ in range(q0.shape[0])]
    sizes = {dims[0]: config.k64, **dict(zip(dims[1:-1], (config.k128, config.k192)))}
    scores, found = screen.search(q0, min(config.k64, screen.ntotal))
    out = []
    for row in range(q0.shape[0]):
        ids, s = found[row], scores[row]
        keep = ids >= 0
        ids, s = ids[keep], s[keep]
        order = _order(ids, s, sizes[dims[0]])
        ids, trail = ids[order], {dims[0]: s[order]}
        for d in dims[1:]:
            s = np.asarray(indexes[d].score(np.asarray(queries[d][row], np.float32), ids))
            order = _order(ids, s, sizes.get(d, len(ids)))
            ids = ids[order]
            trail = {k: v[order] for k, v in trail.items()}
            trail[d] = s[order]
        final = trail[dims[-1]]
        out.append([Hit(int(i), float(final[j]), {d: float(trail[d][j]) for d in dims})
                    for j, i in enumerate(ids)])
    return out


def exhaustive_search(index: ScoringIndex, query: np.ndarray, k: int) -> list[Hit]:
    """The ``k`` best segments by exact search at one dimension (256-D for comparison)."""
    if index.ntotal == 0:
        return []
    q = np.asarray(query, np.float32)
    s, ids = index.search(q[None, :], min(k, index.ntotal))
    ids, s = _top(ids[0], s[0], k)
    return [Hit(int(i), float(v), {q.shape[0]: float(v)}) for i, v in zip(ids, s)]
