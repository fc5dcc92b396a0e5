"""Where each stored id sits in a flat index's storage, and the scores of storage rows: the
lookup and the arithmetic behind exact rescoring.

Segment ids come from SQLite's integer primary key, so they are nearly dense: a direct table
indexed by ``id - lowest`` answers a lookup with one memory read. When the ids are sparse (a
span of more than ``DENSE_SPAN`` times their count) a sorted copy and binary search are used
instead, so memory stays proportional to the number of vectors.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DENSE_SPAN", "SPLIT_MIN_ROWS", "MaskedRowTable", "RowTable", "score_rows"]

DENSE_SPAN = 4
"""A direct table is used while (highest id - lowest id + 1) <= DENSE_SPAN * count + 1024."""


class RowTable:
    """Row positions of ids, built once from the ids in storage order."""

    def __init__(self, stored: np.ndarray):
        stored = np.asarray(stored, dtype=np.int64)
        self._n = stored.size
        self._low = int(stored.min()) if stored.size else 0
        span = int(stored.max()) - self._low + 1 if stored.size else 0
        self.dense = span <= DENSE_SPAN * stored.size + 1024
        if self.dense:
            self._table = np.full(span, -1, np.int64 if stored.size >= 2**31 else np.int32)
            self._table[stored - self._low] = np.arange(stored.size)
        else:
            order = np.argsort(stored, kind="stable")
            self._have, self._order = stored[order], order

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row of each id, found mask); rows of ids not stored are 0 and not to be used."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._n == 0:
            return np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        if self.dense:
            pos = ids - self._low
            inside = (pos >= 0) & (pos < self._table.size)
            rows = self._table[np.where(inside, pos, 0)]
            found = inside & (rows >= 0)
            return np.where(found, rows, 0), found
        at = np.minimum(np.searchsorted(self._have, ids), self._n - 1)
        found = self._have[at] == ids
        return np.where(found, self._order[at], 0), found


SPLIT_MIN_ROWS = 512
"""A single query's rows are split over the cores from this many on (FAISS spreads by-index
scoring over queries only)."""


def score_rows(xb: np.ndarray, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Inner products (q, m) of each query row (q, dim) with the storage rows ``xb[rows[i]]``,
    read in place by FAISS's SIMD by-index products (no gathered copy, and no BLAS thread pool
    competing with FAISS's OpenMP one). The rows are random reads from a large array, bound by
    memory latency: a lone query's rows are cut into one part per core, each scored as if by
    its own query."""
    import faiss

    nq, m = rows.shape
    parts = min(faiss.omp_get_max_threads(), m // SPLIT_MIN_ROWS) if nq == 1 else 1
    if parts > 1:
        width = -(-m // parts)
        rows = np.concatenate([rows[0], np.zeros(parts * width - m, np.int64)])
        out = score_rows(xb, np.repeat(q, parts, axis=0), rows.reshape(parts, width))
        return out.reshape(1, -1)[:, :m]
    q = np.ascontiguousarray(q, dtype=np.float32)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.empty(rows.shape, np.float32)
    faiss.fvec_inner_products_by_idx(faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(xb),
                                     faiss.swig_ptr(rows), xb.shape[1], nq, m)
    return out


class MaskedRowTable:
    """A RowTable over rows some of which are removed (id -1): those are never found."""

    def __init__(self, row_ids: np.ndarray):
        live = row_ids >= 0
        self._rows = np.flatnonzero(live)
        self._table = RowTable(row_ids[live])

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r, found = self._table.rows(ids)
        return np.where(found, self._rows[r] if self._rows.size else 0, 0), found
