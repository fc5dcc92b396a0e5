"""One index per nested dimension, saved side by side in a database's directory.

Files: ``index-<dim>.faiss`` (the FAISS index) and ``index-<dim>.json`` (its ``IndexInfo``).
Everything here is derived from the metadata store and can be rebuilt from it.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.index.checks import checksum_problems, index_problems, vector_problems
from speakerdb.index.choose import choose_index, parse_choice, screen_dim
from speakerdb.files.hashing import sha256_file as file_sha256
from speakerdb.index.infos import IndexInfo, ids_digest, read_info, write_info
from speakerdb.index.vector_index import VectorIndex, ids_array
from speakerdb.model.prefixes import DIMS, FULL_DIM, nested

__all__ = ["IndexSet", "index_paths", "saved_dims"]


def index_paths(directory: str | os.PathLike, dim: int) -> tuple[Path, Path]:
    """(``index-<dim>.faiss``, ``index-<dim>.json``) inside ``directory``."""
    directory = Path(directory)
    return directory / f"index-{dim}.faiss", directory / f"index-{dim}.json"


def _raw_array(raw, n: int, width: int = FULL_DIM) -> np.ndarray:
    x = np.asarray(raw, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n or x.shape[1] < width:
        raise ValueError(f"raw vectors must have shape ({n}, >={width}), got {x.shape}")
    return x


def saved_dims(directory: str | os.PathLike) -> tuple[int, ...]:
    """The dimensions that have an ``index-<dim>.json`` in ``directory``, ascending."""
    found = []
    for p in Path(directory).glob("index-*.json"):
        tail = p.stem.split("-", 1)[1]
        if tail.isdigit():
            found.append(int(tail))
    return tuple(sorted(found))


class IndexSet:
    """``by_dim[dim]``: a ``VectorIndex`` of the normalised ``dim``-prefixes, one per nested
    dimension (DIMS for Matryoshka models; a database's own dimensions otherwise).

    The raw vectors given are already in the database's space (``speakerdb.index.space``): identity
    for Matryoshka models, a learned rotation otherwise; ``space`` names it."""

    def __init__(self, directory: str | os.PathLike, by_dim: dict[int, VectorIndex],
                 infos: dict[int, IndexInfo] | None = None,
                 model_sha256: str = "", schema_revision: str = "", space: str = "identity"):
        self.directory = Path(directory)
        self.by_dim = by_dim
        self.infos = infos  # as last read or written; None until saved or loaded
        self.model_sha256, self.schema_revision = model_sha256, schema_revision
        self.space = space

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(sorted(self.by_dim))

    # construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, directory: str | os.PathLike, ids, raw, model_sha256: str,
              schema_revision: str, dims: tuple[int, ...] = DIMS,
              space: str = "identity") -> IndexSet:
        """Indexes of raw (n, >= max(dims)) vectors under segment ``ids`` (n,); nothing is
        written."""
        ids = ids_array(ids)
        raw = _raw_array(raw, ids.size, max(dims))
        screen = min(dims)
        by_dim = {d: VectorIndex.empty(d) for d in dims}
        choice = choose_index(ids.size, screen, screen_dim(dims))
        if choice.nlist:  # only the screen is ever trained
            by_dim[screen] = VectorIndex.trained(screen, choice,
                                                 nested(raw, (screen,))[screen])
        out = cls(directory, by_dim, None, model_sha256, schema_revision, space)
        out.add(ids, raw)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike, dims: tuple[int, ...] = DIMS) -> IndexSet:
        """Read the index of every one of ``dims`` and its JSON; ``IndexOutOfDateError`` if
        any is missing, unreadable or does not match its description (file size, vector
        count, ids). The checksum is not read here (it costs a pass over every byte): ``check``
        verifies it."""
        by_dim, infos = {}, {}
        screen = screen_dim(dims)
        for d in dims:
            faiss_path, json_path = index_paths(directory, d)
            info = read_info(json_path)
            try:
                choice = parse_choice(info.index_key, info.index_param)
            except ValueError as e:
                raise IndexOutOfDateError(f"{json_path}: {e}") from None
            current = choose_index(info.ntotal, d, screen)
            if choice.nlist and current.key == choice.key:
                choice = current  # the probe count is a search setting: this version's applies
            index = VectorIndex.load(faiss_path, d, choice)
            if info.dim != d:
                raise IndexOutOfDateError(f"{json_path}: describes dimension {info.dim}, not {d}")
            if info.ntotal != index.ntotal:
                raise IndexOutOfDateError(
                    f"{faiss_path}: {index.ntotal} vectors but {json_path.name} says {info.ntotal}")
            size = faiss_path.stat().st_size
            if size != info.size_bytes:
                raise IndexOutOfDateError(
                    f"{faiss_path}: {size} bytes but {json_path.name} says {info.size_bytes}")
            if info.ids_digest != ids_digest(index.ids()):
                raise IndexOutOfDateError(
                    f"{faiss_path}: ids do not match the digest in {json_path.name}")
            by_dim[d], infos[d] = index, info
        first = infos[dims[0]]
        return cls(directory, by_dim, infos, first.model_sha256, first.schema_revision,
                   first.space)

    @staticmethod
    def state(directory: str | os.PathLike,
              dims: tuple[int, ...] = DIMS) -> dict[int, IndexInfo] | None:
        """The JSON descriptions of ``dims`` alone (cheap): None when none exists (never
        saved); ``IndexOutOfDateError`` if only some exist or one is unreadable."""
        present = {d: index_paths(directory, d)[1] for d in dims}
        if not any(p.is_file() for p in present.values()):
            return None
        return {d: read_info(p) for d, p in present.items()}

    # contents ----------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return self.by_dim[self.dims[-1]].ntotal

    def ids(self) -> np.ndarray:
        """Sorted int64 ids (of the full-dimension index; every index holds the same)."""
        return self.by_dim[self.dims[-1]].ids()

    def __repr__(self) -> str:
        return f"IndexSet({str(self.directory)!r}, ntotal={self.ntotal})"

    # changes -----------------------------------------------------------------------------
    def add(self, ids, raw) -> None:
        """Add raw (n, >= max dim) vectors; every index gets its normalised prefix."""
        ids = ids_array(ids)
        raw = _raw_array(raw, ids.size, self.dims[-1])
        if ids.size == 0:
            return
        ordered = np.sort(ids)
        if np.any(ordered[1:] == ordered[:-1]):
            raise ValueError("an id appears more than once in the batch")
        for index in self.by_dim.values():  # check all before changing any
            clash = ids[index.contains(ids)]
            if clash.size:
                raise ValueError(f"id {int(clash[0])} is already in the {index.dim}-D index")
        for d, x in nested(raw, tuple(self.by_dim)).items():
            self.by_dim[d].add(ids, x)

    def remove(self, ids) -> int:
        """Remove these ids from every index (absent ids are ignored); returns how many."""
        counts = [index.remove(ids) for index in self.by_dim.values()]
        return counts[-1] if counts else 0

    def save(self, model_sha256: str, schema_revision: str, store_max_id: int,
             store_generation: int = 0) -> None:
        """Write every index, each followed by its JSON description (atomic file by file).

        store_max_id: the store's largest segment id now (0 when empty); passed in because
        the largest id may have been deleted from the indexes. store_generation: the store
        generation these indexes reflect (see ``speakerdb.store.generation``).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.retarget()
        infos = {}
        for d, index in sorted(self.by_dim.items()):
            faiss_path, json_path = index_paths(self.directory, d)
            index.save(faiss_path)
            infos[d] = IndexInfo(
                index_key=index.choice.key,
                index_param=index.choice.param,
                dim=d,
                ntotal=index.ntotal,
                model_sha256=model_sha256,
                schema_revision=schema_revision,
                store_max_id=int(store_max_id),
                ids_digest=ids_digest(index.ids()),
                size_bytes=faiss_path.stat().st_size,
                sha256=file_sha256(faiss_path),
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                space=self.space,
                store_generation=int(store_generation),
            )
            write_info(json_path, infos[d])
        self.infos = infos
        self.model_sha256, self.schema_revision = model_sha256, schema_revision

    def retarget(self) -> list[int]:
        """Rebuild, as ``choose_index`` now wants for its size, every index built as another
        kind (a screen that outgrew flat search, or an IVF whose list count no longer fits);
        returns the dimensions rebuilt. Only the screen of a set with several dimensions
        (``screen_dim``) uses IVF."""
        screen = screen_dim(self.dims)
        changed = []
        for d, index in sorted(self.by_dim.items()):
            want = choose_index(index.ntotal, d, screen)
            if want.key != index.choice.key:
                self.by_dim[d] = index.rebuilt(want)
                changed.append(d)
        return changed

    # checking ----------------------------------------------------------------------------
    def problems(self, store_ids, store_max_id: int, model_sha256: str, schema_revision: str,
                 raw_sample: tuple[np.ndarray, np.ndarray] | None = None,
                 dims: tuple[int, ...] = DIMS, space: str = "identity",
                 vectors=None, checksums: bool = False) -> list[str]:
        """Every disagreement between this set (FAISS indexes and, once saved or loaded, its
        files and JSONs) and the store, one line each; empty when they agree.

        store_ids: the store's ids, sorted; raw_sample: (ids, raw (m, 256)) of a few stored
        vectors (in the database's space), compared with the index copies at each index's
        precision (``VectorIndex.tolerance``); vectors: an iterable of such chunks covering
        the store, compared in the same way (a full check); checksums: also hash each saved
        file and compare with its JSON; dims/space: what the database expects the set to hold.
        """
        directory = self.directory if self.infos is not None else None
        out = index_problems(
            self.by_dim, self.infos, directory, dims,
            store_ids, store_max_id, model_sha256, schema_revision,
            self.model_sha256, self.schema_revision, raw_sample)
        if checksums and directory is not None:
            out += checksum_problems(self.infos, directory, dims)
        if vectors is not None:
            out += vector_problems(self.by_dim, dims, vectors)
        extra = sorted(set(self.by_dim) - set(dims))
        if extra:
            out.append(f"indexes for {'/'.join(map(str, extra))}-D exist, the database "
                       f"uses {'/'.join(map(str, dims))}-D")
        for d in dims:
            info = self.infos.get(d) if self.infos is not None else None
            have = info.space if info is not None else self.space
            if d in self.by_dim and have != space:
                out.append(f"index-{d}: built in vector space {have}, the database uses {space}")
        return out
