"""One exact inner-product FAISS index over unit vectors, addressed by segment id."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.index._atomic import atomic_write

__all__ = ["VectorIndex"]


def _ids_array(ids, what: str = "ids") -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


class VectorIndex:
    """``IndexIDMap2(IndexFlatIP(dim))``: exact cosine similarity over unit vectors.

    Vectors are added already normalised; ids are segment ids (int64, unique).
    """

    def __init__(self, index, dim: int):
        """Wrap an existing ``faiss.IndexIDMap2`` (use ``empty`` or ``load`` instead)."""
        self._index = index
        self._dim = int(dim)
        self._sorted: np.ndarray | None = None  # cache of ids(), None when stale

    # construction ------------------------------------------------------------------------
    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        import faiss

        if dim <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(int(dim))), dim)

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int) -> VectorIndex:
        """Read an index saved by ``save``; ``IndexOutOfDateError`` if unusable."""
        import faiss

        path = Path(path)
        if not path.is_file():
            raise IndexOutOfDateError(f"{path}: index file is missing")
        try:
            index = faiss.read_index(str(path))
        except Exception as e:  # faiss raises RuntimeError with a multi-line message
            first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise IndexOutOfDateError(f"{path}: unreadable index file ({first})") from None
        if not isinstance(index, faiss.IndexIDMap2):
            raise IndexOutOfDateError(
                f"{path}: expected an IndexIDMap2, found {type(index).__name__}")
        inner = faiss.downcast_index(index.index)
        if not isinstance(inner, faiss.IndexFlatIP):
            raise IndexOutOfDateError(
                f"{path}: expected a flat inner-product index, found {type(inner).__name__}")
        if index.d != dim:
            raise IndexOutOfDateError(f"{path}: index has dimension {index.d}, expected {dim}")
        if index.id_map.size() != index.ntotal:
            raise IndexOutOfDateError(f"{path}: id map and vectors disagree in count")
        return cls(index, dim)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to ``path`` atomically (the old file survives a failed write)."""
        import faiss

        atomic_write(path, lambda tmp: faiss.write_index(self._index, tmp))

    # properties --------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self._dim}, ntotal={self.ntotal})"

    def ids(self) -> np.ndarray:
        """The stored ids, sorted ascending (int64; a copy)."""
        if self._sorted is None:
            import faiss

            self._sorted = np.sort(faiss.vector_to_array(self._index.id_map).astype(np.int64))
        return self._sorted.copy()

    def _sorted_ids(self) -> np.ndarray:
        if self._sorted is None:
            self.ids()
        return self._sorted

    def contains(self, ids) -> np.ndarray:
        """Boolean mask: which of ``ids`` are stored."""
        ids = _ids_array(ids)
        have = self._sorted_ids()
        pos = np.minimum(np.searchsorted(have, ids), max(have.size - 1, 0))
        return (have[pos] == ids) if have.size else np.zeros(ids.shape, bool)

    def _vectors(self, vectors, n: int) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape != (n, self._dim):
            raise ValueError(f"vectors must have shape ({n}, {self._dim}), got {x.shape}")
        return np.ascontiguousarray(x)

    # changes -----------------------------------------------------------------------------
    def add(self, ids, vectors) -> None:
        """Add unit ``vectors`` (n, dim) under ``ids`` (n,); ValueError on a duplicate id."""
        ids = _ids_array(ids)
        x = self._vectors(vectors, ids.size)
        if ids.size == 0:
            return
        new = np.sort(ids)
        if np.any(new[1:] == new[:-1]):
            dup = int(new[1:][new[1:] == new[:-1]][0])
            raise ValueError(f"id {dup} appears more than once in the batch")
        clash = new[self.contains(new)]
        if clash.size:
            raise ValueError(f"id {int(clash[0])} is already in the {self._dim}-D index "
                             f"({clash.size} duplicate(s))")
        self._index.add_with_ids(x, ids)
        have = self._sorted_ids()
        self._sorted = np.insert(have, np.searchsorted(have, new), new)

    def remove(self, ids) -> int:
        """Remove the vectors with these ids (ids not present are ignored); returns how many."""
        import faiss

        ids = np.unique(_ids_array(ids))
        if ids.size == 0 or self.ntotal == 0:
            return 0
        removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
        self._sorted = None
        return removed

    # search ------------------------------------------------------------------------------
    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``min(k, ntotal)`` by inner product for each query row.

        queries: (q, dim) float32. Returns (scores (q, k') float32, ids (q, k') int64), best
        first; equal scores are ordered by the smaller id. Never padded with -1.
        """
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self._dim:
            raise ValueError(f"queries must have shape (q, {self._dim}), got {q.shape}")
        kk = max(0, min(int(k), self.ntotal))
        if kk == 0 or q.shape[0] == 0:
            return (np.empty((q.shape[0], kk), np.float32), np.empty((q.shape[0], kk), np.int64))
        scores, ids = self._index.search(np.ascontiguousarray(q), kk)
        order = np.lexsort((ids, -scores), axis=1)  # deterministic order among equal scores
        scores = np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False)
        ids = np.take_along_axis(ids, order, axis=1).astype(np.int64, copy=False)
        return scores, ids

    def reconstruct(self, ids) -> np.ndarray:
        """The stored vectors (m, dim) of these ids; ValueError if any id is not stored."""
        ids = _ids_array(ids)
        if ids.size == 0:
            return np.empty((0, self._dim), np.float32)
        try:
            return self._index.reconstruct_batch(ids)
        except RuntimeError:
            absent = ids[~self.contains(ids)]
            raise ValueError(f"{absent.size} id(s) not in the {self._dim}-D index, "
                             f"e.g. {int(absent[0]) if absent.size else '?'}") from None

    def score(self, query, ids) -> np.ndarray:
        """Exact inner products (m,) float32 of ``query`` (dim,) with the stored ``ids``."""
        q = np.asarray(query, dtype=np.float32)
        if q.shape != (self._dim,):
            raise ValueError(f"query must have shape ({self._dim},), got {q.shape}")
        return (self.reconstruct(ids) @ q).astype(np.float32, copy=False)
