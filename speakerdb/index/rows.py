"""Where each stored id sits in a flat index's storage: the lookup behind exact rescoring.

Segment ids come from SQLite's integer primary key, so they are nearly dense: a direct table
indexed by ``id - lowest`` answers a lookup with one memory read. When the ids are sparse (a
span of more than ``DENSE_SPAN`` times their count) a sorted copy and binary search are used
instead, so memory stays proportional to the number of vectors.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DENSE_SPAN", "RowTable"]

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
