"""Every stored vector once, at full precision, with the norms of its nested prefixes: the one
copy the cascade rescores from at every dimension.

A Matryoshka vector's ``d``-dimensional embedding is its first ``d`` values scaled to unit
length, so one unit row of ``max(dims)`` floats and one inverse norm per smaller dimension give
every prefix's cosine exactly: ``(q_d . x[:d]) * inv_norm_d`` (at the full dimension, the plain
inner product). Nothing is kept per dimension.

On disk (written by ``save``, mapped by ``load`` without reading it):

* ``vectors-<epoch>.f32``: the rows, little-endian float32, ``rows x width``, in the order
  they were added; only ever appended to, so a save writes what is new;
* ``vectors-<epoch>.ids``: each row's segment id (int64); ``vectors-<epoch>.norms``: each
  row's inverse prefix norms below the full dimension (float32, ``rows x (len(dims) - 1)``);
* ``vectors-<epoch>-<count>.deleted``: the ``count`` rows removed since (int64 row numbers,
  sorted), a new file for each new count. Removed rows stay in the files until enough of them pile up: then a save writes
  the live rows under a new epoch (``compact``), leaving files an older reader may still map.

The caller records ``rows``, ``deleted`` and ``epoch`` (``MatrixState``) in its JSON after
``save`` returns: that write is the commit. Rows past the committed count (a save killed
before its JSON) are cut off by the next save and never mapped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.files.atomic import atomic_write
from speakerdb.index.matrix_files import (
    MatrixState,
    append_rows,
    map_rows,
    matrix_files,
    rows_sha256,
)
from speakerdb.index.matrix_search import SEARCH_BLOCK, search_parts
from speakerdb.index.rows import MaskedRowTable, RowTable, score_rows

__all__ = ["COMPACT_SHARE", "MatrixState", "VectorMatrix", "matrix_files"]

COMPACT_SHARE = 0.2
"""A save rewrites the files without removed rows once they are this share of all rows."""

_EPS = 1e-12


class _Part:
    """A run of rows: mapped from disk (read-only) or held in memory (growing)."""

    def __init__(self, x: np.ndarray, ids: np.ndarray, inv: np.ndarray, n: int | None = None):
        self.x, self.ids, self.inv = x, ids, inv
        self.n = x.shape[0] if n is None else n

    @classmethod
    def empty(cls, width: int, ndims: int, capacity: int = 0) -> _Part:
        return cls(np.empty((capacity, width), np.float32), np.empty(capacity, np.int64),
                   np.empty((capacity, ndims), np.float32), 0)

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` rows in all (no copy per append while building)."""
        if rows > self.x.shape[0]:
            self._grow(rows)

    def _grow(self, cap: int) -> None:
        for name in ("x", "ids", "inv"):
            old = getattr(self, name)
            new = np.empty((cap, *old.shape[1:]), old.dtype)
            new[:self.n] = old[:self.n]
            setattr(self, name, new)

    def append(self, x: np.ndarray, ids: np.ndarray, inv: np.ndarray) -> None:
        need = self.n + ids.size
        if need > self.x.shape[0]:
            self._grow(max(need, 2 * self.x.shape[0], 1024))
        self.x[self.n:need], self.ids[self.n:need], self.inv[self.n:need] = x, ids, inv
        self.n = need

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.x[:self.n], self.ids[:self.n], self.inv[:self.n]


class VectorMatrix:
    """The vectors of a database, one full-width float32 row each, with the inverse norms of
    every nested prefix; rows addressed by segment id. ``dims``: the nested dimensions,
    ascending (the last is the row width)."""

    def __init__(self, dims: tuple[int, ...]):
        dims = tuple(int(d) for d in dims)
        if not dims or list(dims) != sorted(set(dims)) or dims[0] <= 0:
            raise ValueError(f"dims must be ascending positive sizes, got {dims}")
        self.dims, self.width = dims, dims[-1]
        self._k = len(dims) - 1  # norms columns: every dimension but the full one
        self._saved = _Part.empty(self.width, len(dims) - 1)  # rows as in the files
        self._tail = _Part.empty(self.width, len(dims) - 1)  # rows added since
        self._deleted = np.zeros(0, np.int64)  # removed row numbers, sorted
        self._epoch, self._parts = 0, ()
        self._table: RowTable | None = None
        self._live: np.ndarray | None = None  # sorted live ids, None when stale
        self._top: int | None = -1  # the largest id held (-1: none; None: not read yet)

    # construction ---------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | os.PathLike, dims: tuple[int, ...],
             state: MatrixState) -> VectorMatrix:
        """Map the saved rows that ``state`` (read from the caller's JSON) commits; nothing is
        read until searched. ``IndexOutOfDateError`` when a file is missing or too short."""
        out = cls(dims)
        files = matrix_files(directory, state.epoch, state.deleted)
        width, k = out.width, out._k
        if state.rows:
            out._saved = _Part(map_rows(files["vectors"], np.float32, (state.rows, width)),
                               map_rows(files["ids"], np.int64, (state.rows,)),
                               map_rows(files["norms"], np.float32, (state.rows, k)))
        deleted = np.zeros(0, np.int64)
        if state.deleted:
            deleted = map_rows(files["deleted"], np.int64, (state.deleted,))
            deleted = np.array(deleted)
            if deleted.size != state.deleted or (deleted.size and (
                    deleted[0] < 0 or deleted[-1] >= state.rows or np.any(np.diff(deleted) <= 0))):
                raise IndexOutOfDateError(f"{files['deleted']}: not the removed rows its "
                                          "description says")
        out._deleted, out._epoch, out._parts = deleted, state.epoch, state.parts
        out._top = None if state.rows else -1
        return out

    # contents -------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Rows held, removed ones included."""
        return self._saved.n + self._tail.n

    @property
    def ntotal(self) -> int:
        """Live vectors."""
        return self.rows - self._deleted.size

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return f"VectorMatrix(dims={self.dims}, ntotal={self.ntotal}, rows={self.rows})"

    def nbytes(self) -> int:
        """Bytes of the rows, ids and norms held (mapped or in memory)."""
        return sum(a.nbytes for part in (self._saved, self._tail) for a in part.view())

    def _parts_view(self):
        """[(first row, x, ids, inv)] of the saved and the added rows."""
        out = []
        if self._saved.n:
            out.append((0, *self._saved.view()))
        if self._tail.n:
            out.append((self._saved.n, *self._tail.view()))
        return out

    def _row_ids(self) -> np.ndarray:
        parts = self._parts_view()
        if not parts:
            return np.zeros(0, np.int64)
        return np.concatenate([p[2] for p in parts]) if len(parts) > 1 else np.asarray(parts[0][2])

    def _lookup(self):
        """The id -> row table of the live rows (built once per change)."""
        if self._table is None:
            ids = self._row_ids()
            if self._deleted.size:
                ids = ids.copy()
                ids[self._deleted] = -1
                self._table = MaskedRowTable(ids)
            else:
                self._table = RowTable(ids)
        return self._table

    def ids(self) -> np.ndarray:
        """The live ids, sorted ascending (a copy)."""
        if self._live is None:
            ids = self._row_ids()
            if self._deleted.size:
                ids = np.delete(ids, self._deleted)
            self._live = np.sort(ids)
        return self._live.copy()

    def max_id(self) -> int:
        """The largest live id (0 when none): no sort and no copy of the ids."""
        if self._live is not None:
            return int(self._live[-1]) if self._live.size else 0
        ids = self._row_ids()
        if self._deleted.size:
            ids = np.delete(ids, self._deleted)
        return int(ids.max()) if ids.size else 0

    def contains(self, ids) -> np.ndarray:
        """Boolean mask: which of ``ids`` are live."""
        return self._lookup().rows(np.asarray(ids, np.int64))[1]

    def _dim_col(self, dim: int) -> int | None:
        """The norms column of ``dim`` (None for the full dimension: rows are unit)."""
        if int(dim) == self.width:
            return None
        try:
            return self.dims.index(int(dim))
        except ValueError:
            raise ValueError(f"dimension {dim} is not one of {self.dims}") from None

    # changes --------------------------------------------------------------------------------
    def add(self, ids, raw) -> None:
        """Append raw vectors (n, >= width) under new ``ids`` (n,); ValueError for an id held
        already or repeated."""
        ids = np.ascontiguousarray(np.asarray(ids), dtype=np.int64)
        x = np.asarray(raw, dtype=np.float32)
        if ids.ndim != 1 or x.ndim != 2 or x.shape[0] != ids.size or x.shape[1] < self.width:
            raise ValueError(f"expected ids (n,) and raw vectors (n, >={self.width}), got "
                             f"{ids.shape} and {x.shape}")
        if ids.size == 0:
            return
        if (ids < 0).any():
            raise ValueError("ids must be >= 0")
        new = np.sort(ids)
        if np.any(new[1:] == new[:-1]):
            raise ValueError(f"id {int(new[1:][new[1:] == new[:-1]][0])} appears more than "
                             "once in the batch")
        if self._top is None:
            held = self._row_ids()
            self._top = int(held.max()) if held.size else -1
        if new[0] <= self._top:  # ids in ascending batches (the store's order) skip the lookup
            clash = new[self.contains(new)]
            if clash.size:
                raise ValueError(f"id {int(clash[0])} is already held ({clash.size} "
                                 "duplicate(s))")
        x = x[:, :self.width]
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)
        inv = np.empty((ids.size, self._k), np.float32)
        for c, d in enumerate(self.dims[:-1]):
            inv[:, c] = 1.0 / np.maximum(np.linalg.norm(x[:, :d], axis=1), _EPS)
        self._tail.append(x, ids, inv)
        self._top = max(self._top, int(new[-1]))
        self._table = self._live = None

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` more rows at once (a build that knows its size copies
        nothing as it grows)."""
        self._tail.reserve(self._tail.n + int(rows))

    def remove(self, ids) -> int:
        """Remove the vectors of these ids (absent ones are ignored); returns how many."""
        ids = np.unique(np.asarray(ids, np.int64))
        if ids.size == 0 or self.ntotal == 0:
            return 0
        rows, found = self._lookup().rows(ids)
        rows = rows[found]
        if rows.size:
            self._deleted = np.union1d(self._deleted, rows)
            self._table = self._live = None
        return int(rows.size)

    # scoring --------------------------------------------------------------------------------
    def score_many(self, dim: int, queries, ids) -> np.ndarray:
        """Exact cosines (q, m) float32 of each unit query row (q, dim) with the ``dim``-prefix
        of the vector of its row of ``ids`` (q, m); ``-inf`` where an id is padding (< 0);
        ValueError for an id not held."""
        col = self._dim_col(dim)
        q = np.asarray(queries, np.float32)
        ids = np.asarray(ids, np.int64)
        if q.ndim != 2 or q.shape[1] != dim:
            raise ValueError(f"queries must have shape (q, {dim}), got {q.shape}")
        if ids.ndim != 2 or ids.shape[0] != q.shape[0]:
            raise ValueError(f"ids must have shape ({q.shape[0]}, m), got {ids.shape}")
        pad = ids < 0
        rows, found = self._lookup().rows(ids)
        lost = ~found & ~pad
        if lost.any():
            raise ValueError(f"{int(lost.sum())} id(s) not held, e.g. {int(ids[lost][0])}")
        wide = np.zeros((q.shape[0], self.width), np.float32)  # zeros past dim: a prefix product
        wide[:, :dim] = q
        out = np.full(ids.shape, -np.inf, np.float32)
        for first, x, _, inv in self._parts_view():
            mine = found & (rows >= first) & (rows < first + x.shape[0])
            if not mine.any():
                continue
            local = np.where(mine, rows - first, 0)
            s = score_rows(x, wide, local)
            out = np.where(mine, s if col is None else s * inv[local, col], out)
        return out

    def reconstruct(self, dim: int, ids) -> np.ndarray:
        """The unit ``dim``-prefixes (m, dim) of these ids' vectors; ValueError if one is not
        held."""
        col = self._dim_col(dim)
        ids = np.asarray(ids, np.int64)
        rows, found = self._lookup().rows(ids)
        if not found.all():
            raise ValueError(f"{int((~found).sum())} id(s) not held, e.g. {int(ids[~found][0])}")
        out = np.empty((ids.size, dim), np.float32)
        for first, x, _, inv in self._parts_view():
            mine = (rows >= first) & (rows < first + x.shape[0])
            if mine.any():
                local = rows[mine] - first
                out[mine] = x[local, :dim] if col is None else \
                    x[local, :dim] * inv[local, col][:, None]
        return out

    def search(self, dim: int, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``min(k, ntotal)`` best live vectors by exact ``dim``-prefix cosine for each unit
        query row (q, dim): (scores (q, k') float32, ids (q, k') int64), best first, equal
        scores by the smaller id. Scans every row, a block at a time."""
        col = self._dim_col(dim)
        q = np.asarray(queries, np.float32)
        if q.ndim != 2 or q.shape[1] != dim:
            raise ValueError(f"queries must have shape (q, {dim}), got {q.shape}")
        kk = max(0, min(int(k), self.ntotal))
        return search_parts(self._parts_view(), self._deleted, q, dim, col, kk)

    # saving ---------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, on_disk: MatrixState | None) -> MatrixState:
        """Write what changed since the last save or load and return the state to commit in
        the caller's JSON (until then readers see ``on_disk``, the state committed now).

        The added rows are appended after the committed ones when this matrix was loaded from
        or saved as ``on_disk``; otherwise (another process saved since, or removed rows are
        ``COMPACT_SHARE`` of all) every live row is written under a new epoch, so no file a
        reader maps ever changes under it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        mine = (on_disk is not None and (on_disk.epoch, on_disk.rows) == (self._epoch, self._saved.n)
                and on_disk.deleted <= self._deleted.size)
        if not mine or (self.rows and self._deleted.size >= COMPACT_SHARE * self.rows):
            last = max(self._epoch, on_disk.epoch if on_disk is not None else 0)
            return self._rewrite(directory, last + 1)
        files = matrix_files(directory, self._epoch, self._deleted.size)
        parts = list(self._parts)
        if self._tail.n:
            start = self._saved.n
            x, ids, inv = self._tail.view()
            for key, arr in (("vectors", x), ("ids", ids), ("norms", inv)):
                append_rows(files[key], arr, start)
            parts.append((start, start + ids.size, rows_sha256(x)))
        if self._deleted.size and self._deleted.size != on_disk.deleted:
            atomic_write(files["deleted"], self._deleted.astype("<i8").tobytes())
        state = MatrixState(self.rows, int(self._deleted.size), self._epoch, tuple(parts))
        self._remap(directory, state)
        return state

    def _rewrite(self, directory: Path, epoch: int) -> MatrixState:
        """Write the live rows under ``epoch``, a block at a time (never a second copy)."""
        files = matrix_files(directory, epoch)
        keep = np.ones(self.rows, bool)
        keep[self._deleted] = False
        h = hashlib.sha256()

        def blocks(which: int):
            for first, *arrays in self._parts_view():
                k = np.flatnonzero(keep[first:first + arrays[0].shape[0]])
                for a in range(0, k.size, SEARCH_BLOCK):
                    yield arrays[which][k[a:a + SEARCH_BLOCK]]

        def writer(which: int, dtype: str, hashed: bool = False):
            def write(tmp: str) -> None:
                with open(tmp, "wb") as f:
                    for block in blocks(which):
                        data = np.ascontiguousarray(block, dtype=dtype).tobytes()
                        if hashed:
                            h.update(data)
                        f.write(data)
            return write

        atomic_write(files["vectors"], writer(0, "<f4", hashed=True))
        atomic_write(files["ids"], writer(1, "<i8"))
        atomic_write(files["norms"], writer(2, "<f4"))
        n = self.ntotal
        state = MatrixState(n, 0, epoch, ((0, n, h.hexdigest()),) if n else ())
        self._remap(directory, state)
        return state

    def _remap(self, directory: Path, state: MatrixState) -> None:
        """Hold the rows as mapped from the files just written (what ``load`` would give)."""
        fresh = VectorMatrix.load(directory, self.dims, state)
        self._saved, self._deleted = fresh._saved, fresh._deleted
        self._tail = _Part.empty(self.width, self._k)
        self._epoch, self._parts = state.epoch, state.parts
        self._table = self._live = self._top = None

    def stale_files(self, directory: str | os.PathLike) -> list[Path]:
        """Files of other epochs in ``directory`` (left by a rewrite; safe to remove once no
        process reads the old description)."""
        mine = set(matrix_files(directory, self._epoch, self._deleted.size).values())
        return sorted(p for p in Path(directory).glob("vectors-*.*")
                      if p not in mine and p.suffix in (".f32", ".ids", ".norms", ".deleted"))

    # checking -------------------------------------------------------------------------------
    def checksum_problems(self, directory: str | os.PathLike) -> list[str]:
        """Each saved part whose vector bytes no longer hash to what was recorded."""
        out = []
        x = self._saved.view()[0]
        for a, b, sha in self._parts:
            if b > x.shape[0] or rows_sha256(x[a:b]) != sha:
                name = matrix_files(directory, self._epoch)["vectors"].name
                out.append(f"{name}: rows {a}-{b - 1} do not match their recorded checksum")
        return out
