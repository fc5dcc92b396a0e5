"""The identify cascade: 64-D screen over everything, exact rescoring of a shrinking shortlist
at 128 and 192-D, final ranking at 256-D; and the exhaustive 256-D search it is compared with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from speakerdb.config import CascadeConfig

__all__ = ["Hit", "ScoringIndex", "cascade_search", "exhaustive_search"]


class ScoringIndex(Protocol):
    ntotal: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def score(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray: ...


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
    """Segments ranked by the cascade, best first (at most ``config.k192`` of them).

    indexes: {dim: index over unit prefixes}; query: {dim: (dim,) unit vector}.
    """
    dims = sorted(indexes)
    screen = indexes[dims[0]]
    if screen.ntotal == 0:
        return []
    sizes = {dims[0]: config.k64, **dict(zip(dims[1:-1], (config.k128, config.k192)))}
    q0 = np.asarray(query[dims[0]], np.float32)[None, :]
    s, ids = screen.search(q0, min(config.k64, screen.ntotal))
    ids, s = _top(ids[0], s[0], sizes[dims[0]])
    trail = {int(i): {dims[0]: float(v)} for i, v in zip(ids, s)}
    for d in dims[1:]:
        s = indexes[d].score(np.asarray(query[d], np.float32), ids)
        for i, v in zip(ids, s):
            trail[int(i)][d] = float(v)
        ids, s = _top(ids, s, sizes.get(d, len(ids)))
    return [Hit(int(i), float(v), trail[int(i)]) for i, v in zip(ids, s)]


def exhaustive_search(index: ScoringIndex, query: np.ndarray, k: int) -> list[Hit]:
    """The ``k`` best segments by exact search at one dimension (256-D for comparison)."""
    if index.ntotal == 0:
        return []
    q = np.asarray(query, np.float32)
    s, ids = index.search(q[None, :], min(k, index.ntotal))
    ids, s = _top(ids[0], s[0], k)
    return [Hit(int(i), float(v), {q.shape[0]: float(v)}) for i, v in zip(ids, s)]
