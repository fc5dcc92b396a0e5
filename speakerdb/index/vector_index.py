"""One inner-product FAISS index over unit vectors, addressed by segment id: flat (exact search,
vectors kept exactly, so rescoring reads them back unchanged) or an inverted file (IVF) of 16-bit
floats for the screening dimension of large databases."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.files.atomic import atomic_write
from speakerdb.index.choose import FLAT_KEY, IndexChoice
from speakerdb.index.ivf_topk import RANGE_MIN_K, SampleRadius, range_top
from speakerdb.index.faiss_support import (
    BLAS_MIN_QUERIES,
    blas_threshold,
    check_ivf,
    faiss_module,
    ids_array,
    lists_into_memory,
    ties_by_id,
)
from speakerdb.index.rows import RowTable, score_rows

__all__ = ["BLAS_MIN_QUERIES", "VectorIndex", "blas_threshold", "ids_array"]


IVF_PARALLEL_MODE = 1
"""FAISS ``parallel_mode`` of an IVF screen: 1 splits each query's probed lists over the cores,
so a single identify uses every core (FAISS's default, 0, gives each query one core, which
leaves a lone query on one). On the 1M store of ``bench/search_scale.py`` the screen took 1.7
against 2.5 ms per query on 2 cores."""

class VectorIndex:
    """Cosine similarity over unit vectors, as one of two FAISS indexes:

    * ``Flat``: ``IndexIDMap2(IndexFlatIP(dim))``, exact search over everything;
    * ``IVF<nlist>,SQfp16``: ``IndexIVFScalarQuantizer`` (inner product; the vectors themselves
      as 16-bit floats, not residuals) with a hash-table direct map, whose searches scan the
      ``nprobe`` lists nearest the query (approximate, about ``nprobe / nlist`` of the vectors);
      a vector reads back within ``tolerance`` of what was added.

    Vectors are added already normalised; ids are segment ids (int64, unique).
    """

    def __init__(self, index, dim: int, choice: IndexChoice = IndexChoice(FLAT_KEY)):
        """Wrap an existing FAISS index (use ``empty``, ``trained`` or ``load`` instead)."""
        self._index = index
        self._dim = int(dim)
        self._choice = choice
        self._sorted: np.ndarray | None = None  # cache of ids(), None when stale
        self._rows: RowTable | None = None  # flat: id -> storage row, None when stale
        self._radius = None  # IVF: the SampleRadius of large searches (kept while fresh)
        self._mapped = False  # IVF read with its lists mapped from the file (read-only)
        self._mapped_bytes = 0  # that file's size while mapped (what FAISS wrote)

    # construction ------------------------------------------------------------------------
    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        """An empty flat index."""
        faiss = faiss_module()

        if dim <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(int(dim))), dim)

    @classmethod
    def trained(cls, dim: int, choice: IndexChoice, sample) -> VectorIndex:
        """An empty index of kind ``choice``; an IVF index is trained (k-means, fixed seed) on
        up to 40 rows per list of ``sample`` (n, dim), taken evenly spaced."""
        faiss = faiss_module()

        if choice.nlist == 0:
            return cls.empty(dim)
        x = np.ascontiguousarray(np.asarray(sample, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != dim or x.shape[0] < choice.nlist:
            raise ValueError(f"training an {choice.key} index needs at least {choice.nlist} "
                             f"vectors of {dim} values, got {x.shape}")
        rows = np.unique(np.linspace(0, x.shape[0] - 1, min(x.shape[0], 40 * choice.nlist))
                         .astype(np.int64))
        index = faiss.index_factory(int(dim), choice.key, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234
        index.by_residual = False  # store the vectors, not their offsets from the centroid
        index.train(np.ascontiguousarray(x[rows]))
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        index.nprobe, index.parallel_mode = choice.nprobe, IVF_PARALLEL_MODE
        return cls(index, dim, choice)

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int,
             choice: IndexChoice = IndexChoice(FLAT_KEY)) -> VectorIndex:
        """Read an index saved by ``save``; ``IndexOutOfDateError`` if unusable or not of the
        kind ``choice`` describes."""
        faiss = faiss_module()

        path = Path(path)
        if not path.is_file():
            raise IndexOutOfDateError(f"{path}: index file is missing")
        # an IVF index's lists stay in the file, mapped (opening reads no vectors; the first
        # change copies them into memory): a flat index is read whole
        flags = getattr(faiss, "IO_FLAG_MMAP", 0) if choice.nlist else 0
        try:
            index = faiss.read_index(str(path), flags)
        except Exception as e:  # faiss raises RuntimeError with a multi-line message
            first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise IndexOutOfDateError(f"{path}: unreadable index file ({first})") from None
        if index.d != dim:
            raise IndexOutOfDateError(f"{path}: index has dimension {index.d}, expected {dim}")
        if choice.nlist:
            check_ivf(index, choice, path)
            ivf = faiss.extract_index_ivf(index)
            ivf.nprobe, ivf.parallel_mode = choice.nprobe, IVF_PARALLEL_MODE
            out = cls(index, dim, choice)
            out._mapped = bool(flags)
            out._mapped_bytes = path.stat().st_size if flags else 0
            return out
        if not isinstance(index, faiss.IndexIDMap2):
            raise IndexOutOfDateError(
                f"{path}: expected an IndexIDMap2, found {type(index).__name__}")
        inner = faiss.downcast_index(index.index)
        if not isinstance(inner, faiss.IndexFlatIP):
            raise IndexOutOfDateError(
                f"{path}: expected a flat inner-product index, found {type(inner).__name__}")
        if index.id_map.size() != index.ntotal:
            raise IndexOutOfDateError(f"{path}: id map and vectors disagree in count")
        return cls(index, dim)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to ``path`` atomically (the old file survives a failed write)."""
        import faiss

        self._in_memory()  # a mapped index would be written as a reference to its file
        atomic_write(path, lambda tmp: faiss.write_index(self._index, tmp))

    def _in_memory(self) -> None:
        """Copy mapped IVF lists into memory (same lists, same order: the direct map stays
        valid), so that the index can change or be written."""
        if not self._mapped:
            return
        lists_into_memory(self._index)
        self._mapped = False

    def rebuilt(self, choice: IndexChoice) -> VectorIndex:
        """A new index of kind ``choice`` holding the same ids and vectors (an IVF one trained
        on them)."""
        ids, x = self.contents()
        out = VectorIndex.trained(self._dim, choice, x) if choice.nlist else VectorIndex.empty(
            self._dim)
        out.add(ids, x)
        return out

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n,) int64, vectors (n, dim) float32) in storage order (copies)."""
        import faiss

        if self._choice.nlist == 0:
            inner = faiss.downcast_index(self._index.index)
            x = faiss.vector_to_array(inner.codes).view(np.float32).reshape(-1, self._dim)
            return faiss.vector_to_array(self._index.id_map).astype(np.int64), x.copy()
        inv = self._index.invlists
        ids, xs = [], []
        for lst in range(inv.nlist):
            n = inv.list_size(lst)
            if n:
                ids.append(faiss.rev_swig_ptr(inv.get_ids(lst), n).copy())
                xs.append(self._decode(faiss.rev_swig_ptr(inv.get_codes(lst), n * inv.code_size)
                                       .reshape(n, inv.code_size)))
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, self._dim), np.float32)
        return np.concatenate(ids).astype(np.int64), np.concatenate(xs)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        """IVF: vectors (m, dim) float32 from their list codes (m, code_size) uint8."""
        return self._index.sq.decode(np.ascontiguousarray(codes))

    # properties --------------------------------------------------------------------------
    @property
    def tolerance(self) -> float:
        """Largest difference between a vector added and the one read back: 0 for a flat
        index (1e-5 allowed for float noise), 16-bit rounding of unit vectors for an IVF one."""
        return 1e-3 if self._choice.nlist else 1e-5

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def choice(self) -> IndexChoice:
        """What kind of index this is (``Flat`` or ``IVF<nlist>,SQfp16`` with its nprobe)."""
        return self._choice

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    def serialized_bytes(self) -> int:
        """Bytes of the index as FAISS writes it (its vectors, ids and lists); a mapped index
        is measured by its file (FAISS wrote exactly that), without reading its lists."""
        import faiss

        if self._mapped:
            return self._mapped_bytes
        return int(faiss.serialize_index(self._index).nbytes)

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self._dim}, ntotal={self.ntotal}, key={self._choice.key!r})"

    def ids(self) -> np.ndarray:
        """The stored ids, sorted ascending (int64; a copy)."""
        if self._sorted is None:
            import faiss

            if self._choice.nlist == 0:
                ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            else:
                inv = self._index.invlists
                parts = [faiss.rev_swig_ptr(inv.get_ids(lst), inv.list_size(lst)).copy()
                         for lst in range(inv.nlist) if inv.list_size(lst)]
                ids = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
            self._sorted = np.sort(ids)
        return self._sorted.copy()

    def _sorted_ids(self) -> np.ndarray:
        if self._sorted is None:
            self.ids()
        return self._sorted

    def contains(self, ids) -> np.ndarray:
        """Boolean mask: which of ``ids`` are stored."""
        ids = ids_array(ids)
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
        ids = ids_array(ids)
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
        self._in_memory()
        self._index.add_with_ids(x, ids)
        self._rows = None
        have = self._sorted_ids()
        self._sorted = np.insert(have, np.searchsorted(have, new), new)

    def remove(self, ids) -> int:
        """Remove the vectors with these ids (ids not present are ignored); returns how many."""
        import faiss

        ids = np.unique(ids_array(ids))
        if ids.size == 0 or self.ntotal == 0:
            return 0
        if self._choice.nlist:  # the hash-table direct map removes by an id array only
            present = ids[self.contains(ids)]
            if present.size:
                self._in_memory()
            sel = faiss.IDSelectorArray(present.size, faiss.swig_ptr(present))
            removed = int(self._index.remove_ids(sel)) if present.size else 0
        else:
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
        self._sorted = self._rows = None
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
        q = np.ascontiguousarray(q)
        if self._choice.nlist and kk >= RANGE_MIN_K:
            if self._radius is None or not self._radius.fresh(self.ntotal):
                self._radius = SampleRadius(self._index, self._decode)
            scores, ids = range_top(self._index, q, kk, self._radius.probe(q, kk),
                                    lambda r: self._heap(q[r], kk))
        else:
            scores, ids = self._heap(q, kk)
        ties_by_id(scores, ids)
        return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def _heap(self, q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's own search (a k-entry heap per query); an IVF index whose probed lists hold
        fewer than ``kk`` vectors scans all of them for that query."""
        faiss = faiss_module()
        batched = q.shape[0] >= BLAS_MIN_QUERIES and self._choice.nlist == 0
        with blas_threshold(faiss, BLAS_MIN_QUERIES) if batched else nullcontext():
            scores, ids = self._index.search(q, kk)
        if self._choice.nlist and (ids < 0).any():  # probed lists held fewer than k: scan all
            rows = np.flatnonzero((ids < 0).any(axis=1))
            full = faiss.SearchParametersIVF(nprobe=self._choice.nlist)
            scores[rows], ids[rows] = self._index.search(np.ascontiguousarray(q[rows]), kk,
                                                         params=full)
        return scores, ids

    def reconstruct(self, ids) -> np.ndarray:
        """The stored vectors (m, dim) of these ids; ValueError if any id is not stored."""
        ids = ids_array(ids)
        if ids.size == 0:
            return np.empty((0, self._dim), np.float32)
        if self._choice.nlist == 0:
            return self._flat_rows(ids)
        try:
            return self._index.reconstruct_batch(ids)
        except RuntimeError:
            absent = ids[~self.contains(ids)]
            raise ValueError(f"{absent.size} id(s) not in the {self._dim}-D index, "
                             f"e.g. {int(absent[0]) if absent.size else '?'}") from None

    def _flat_storage(self) -> tuple[np.ndarray, RowTable]:
        """Flat index: FAISS's own vector storage (ntotal, dim), read in place, and the id ->
        row table over it (many times faster than the id map's hash lookups)."""
        faiss = faiss_module()
        if self._rows is None:
            self._rows = RowTable(faiss.vector_to_array(self._index.id_map))
        inner = faiss.downcast_index(self._index.index)
        xb = faiss.rev_swig_ptr(inner.get_xb(), self.ntotal * self._dim)
        return xb.reshape(self.ntotal, self._dim), self._rows

    def _flat_rows(self, ids: np.ndarray) -> np.ndarray:
        """Flat index: the stored rows of ``ids`` (a copy)."""
        xb, table = self._flat_storage()
        rows, found = table.rows(ids)
        if not found.all():
            absent = ids[~found]
            raise ValueError(f"{absent.size} id(s) not in the {self._dim}-D index, "
                             f"e.g. {int(absent[0])}")
        return xb[rows]

    def score(self, query, ids) -> np.ndarray:
        """Exact inner products (m,) float32 of ``query`` (dim,) with the stored ``ids``."""
        q = np.asarray(query, dtype=np.float32)
        if q.shape != (self._dim,):
            raise ValueError(f"query must have shape ({self._dim},), got {q.shape}")
        return self.score_many(q[None, :], ids_array(ids)[None, :])[0]

    def score_many(self, queries, ids) -> np.ndarray:
        """Exact inner products (q, m) float32 of each query row (q, dim) with the stored
        vectors of its row of ``ids`` (q, m); ``-inf`` where an id is padding (< 0).

        A flat index scores in place from its storage (FAISS's by-index inner products: no
        gathered copy, no matrix-product threads competing with FAISS's own); ValueError if a
        non-padding id is not stored."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        ids = np.asarray(ids)
        if q.ndim != 2 or q.shape[1] != self._dim:
            raise ValueError(f"queries must have shape (q, {self._dim}), got {q.shape}")
        if ids.ndim != 2 or ids.shape[0] != q.shape[0]:
            raise ValueError(f"ids must have shape ({q.shape[0]}, m), got {ids.shape}")
        ids = ids.astype(np.int64, copy=False)
        pad = ids < 0
        if self._choice.nlist:  # rarely asked of a screen: read the vectors back
            out = np.full(ids.shape, -np.inf, np.float32)
            for r in range(ids.shape[0]):
                keep = ~pad[r]
                out[r, keep] = self.reconstruct(ids[r, keep]) @ q[r]
            return out
        xb, table = self._flat_storage()
        rows, found = table.rows(ids)
        lost = ~found & ~pad
        if lost.any():
            raise ValueError(f"{int(lost.sum())} id(s) not in the {self._dim}-D index, "
                             f"e.g. {int(ids[lost][0])}")
        out = np.zeros(ids.shape, np.float32)
        if not pad.all():  # (an empty index holds no row 0 to read for padding)
            out = score_rows(xb, q, np.where(pad, 0, rows))
        out[pad] = -np.inf
        return out
