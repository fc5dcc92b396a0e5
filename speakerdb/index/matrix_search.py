"""Exhaustive exact search over a ``VectorMatrix``'s rows: the ``k`` best live rows by the
cosine of a nested prefix, a part (mapped or in-memory run of rows) at a time.

At the full dimension the rows are unit, so FAISS's own k-best search scans a part in place
(asking for as many more as the part has removed rows); below it, or with many removed rows,
each block of ``SEARCH_BLOCK`` rows is scored here and scaled by the rows' inverse prefix norms.
Equal scores are ordered by the smaller id, whichever path ran.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

__all__ = ["KNN_MAX_DEAD", "SEARCH_BLOCK", "search_parts"]

SEARCH_BLOCK = 65_536
"""Rows scored per block by an exhaustive search (bounds its temporary memory)."""

KNN_MAX_DEAD = 1024
"""A part with at most this many removed rows is searched at the full dimension by FAISS's
k-best search (asking for that many more); one with more, block by block here."""


def search_parts(parts, deleted: np.ndarray, q: np.ndarray, dim: int, col: int | None,
                 kk: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores (q, kk) float32, ids (q, kk) int64) of the ``kk`` best rows of ``parts``
    (``[(first row, x, ids, inv)]``) for unit queries ``q`` (q, dim), skipping the ``deleted``
    row numbers; ``col``: the inverse-norm column of ``dim`` (None at the full dimension)."""
    best_s = np.empty((q.shape[0], 0), np.float32)
    best_i = np.empty((q.shape[0], 0), np.int64)
    if kk == 0 or q.shape[0] == 0:
        return best_s[:, :kk], best_i[:, :kk]
    for first, x, ids, inv in parts:
        dead = deleted[(deleted >= first) & (deleted < first + x.shape[0])]
        s = None
        if col is None and dead.size <= KNN_MAX_DEAD:  # unit rows: FAISS's own top-k
            kb = min(kk + dead.size + 1, x.shape[0])  # one more: is the cut a tie?
            s, pos = _knn(q, x, kb)
            if kb < x.shape[0] and kb > 1 and np.any(s[:, -1] >= s[:, -2]):
                s = None  # equal scores past the cut: FAISS's choice among them is not ours
        if s is not None:
            s = np.where(np.isin(pos, dead - first) | (pos < 0), -np.inf, s)
            best_s = np.concatenate([best_s, s], axis=1)
            best_i = np.concatenate([best_i, np.where(pos >= 0, ids[np.maximum(pos, 0)], -1)],
                                    axis=1)
            continue
        for a in range(0, x.shape[0], SEARCH_BLOCK):
            b = min(a + SEARCH_BLOCK, x.shape[0])
            s = q @ x[a:b, :dim].T
            if col is not None:
                s *= inv[a:b, col]
            gone = dead[(dead >= first + a) & (dead < first + b)]
            s[:, gone - first - a] = -np.inf
            best_s = np.concatenate([best_s, s], axis=1)
            best_i = np.concatenate([best_i, np.broadcast_to(ids[a:b], s.shape)], axis=1)
            pos = _top_positions(best_i, best_s, kk)
            best_s = np.take_along_axis(best_s, pos, 1)
            best_i = np.take_along_axis(best_i, pos, 1)
    order = np.lexsort((best_i, -best_s), axis=1)[:, :kk]
    return (np.take_along_axis(best_s, order, 1).astype(np.float32, copy=False),
            np.take_along_axis(best_i, order, 1))


def _knn(q: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's exact inner-product k-best of each query over the rows ``x`` (read in place;
    batches through its matrix-product path, see ``vector_index.BLAS_MIN_QUERIES``)."""
    import faiss

    from speakerdb.index.faiss_support import BLAS_MIN_QUERIES, blas_threshold

    batched = q.shape[0] >= BLAS_MIN_QUERIES
    with blas_threshold(faiss, BLAS_MIN_QUERIES) if batched else nullcontext():
        return faiss.knn(np.ascontiguousarray(q, np.float32), x, k,
                         metric=faiss.METRIC_INNER_PRODUCT)


def _top_positions(ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the positions of the ``k`` best (ties at the cut: the smaller id), unsorted."""
    if k >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part[:, k - 1:k], 1)
    if ((scores >= kth).sum(axis=1) > k).any():  # a tie straddles the cut: settle it by id
        return np.lexsort((ids, -scores), axis=1)[:, :k]
    return part
