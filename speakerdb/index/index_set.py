"""A database's saved vectors: every vector once at full precision (``VectorMatrix``), and for a
large set a 16-bit inverted-file screen at the smallest dimension; ``vectors.json`` describes
both and is written last by every save.

Files in the home: ``vectors.json``, ``vectors-<epoch>.{f32,ids,norms,deleted}`` (the rows,
mapped at open, see ``speakerdb.index.matrix``) and, for an IVF screen,
``screen-<dim>-<serial>.faiss`` (a new name at every save of a changed screen, so a reader
never loads a screen of another save than its description's). Everything here is derived from
the metadata store and can be rebuilt from it.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.files.hashing import sha256_file
from speakerdb.index.choose import FLAT_KEY, IndexChoice, choose_index, parse_choice, screen_dim
from speakerdb.index.infos import INFO_FILE, SetInfo, ids_digest, read_info, write_info
from speakerdb.index.matrix import VectorMatrix
from speakerdb.index.vector_index import VectorIndex
from speakerdb.model.prefixes import DIMS

__all__ = ["LEGACY_FILES", "IndexSet", "PrefixIndex", "holds_vector_files", "info_path"]

LEGACY_FILES = ("index-*.faiss", "index-*.json")
"""Files of the layout before ``vectors.json`` (one FAISS index per dimension): a set saved so
is rebuilt from the store, and these are removed."""

TRAIN_BLOCK = 65_536  # rows added to a screen per call while building it
_SCREEN = re.compile(r"screen-(\d+)-(\d+)\.faiss")


def info_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / INFO_FILE


def holds_vector_files(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds saved vectors of a database (of this layout or the one
    before)."""
    directory = Path(directory)
    if not directory.is_dir():
        return False
    return info_path(directory).is_file() or any(
        next(directory.glob(pattern), None) is not None
        for pattern in ("vectors-*.f32", "screen-*.faiss", *LEGACY_FILES))


def _screen_choice(n: int, dims: tuple[int, ...]) -> IndexChoice:
    """The screen this many vectors want: an IVF one for a set of several dimensions at scale
    (``choose_index``), else exact screening from the rows."""
    return choose_index(n, dims[0], screen_dim(dims))


class PrefixIndex:
    """One nested dimension of a set, as the cascade and checks see an index: searched through
    the screen when there is one (at the smallest dimension), scored exactly from the rows."""

    def __init__(self, matrix: VectorMatrix, dim: int, screen: VectorIndex | None = None):
        self.matrix, self.dim, self.screen = matrix, int(dim), screen

    @property
    def ntotal(self) -> int:
        return self.matrix.ntotal

    @property
    def choice(self) -> IndexChoice:
        return self.screen.choice if self.screen is not None else IndexChoice(FLAT_KEY)

    def ids(self) -> np.ndarray:
        return self.matrix.ids()

    def contains(self, ids) -> np.ndarray:
        return self.matrix.contains(ids)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.screen is not None:
            return self.screen.search(queries, k)
        return self.matrix.search(self.dim, queries, k)

    def score_many(self, queries, ids) -> np.ndarray:
        return self.matrix.score_many(self.dim, queries, ids)

    def score(self, query, ids) -> np.ndarray:
        q = np.asarray(query, np.float32)
        return self.score_many(q[None, :], np.asarray(ids, np.int64)[None, :])[0]

    def reconstruct(self, ids) -> np.ndarray:
        return self.matrix.reconstruct(self.dim, ids)

    def __repr__(self) -> str:
        return f"PrefixIndex(dim={self.dim}, ntotal={self.ntotal}, key={self.choice.key!r})"


class IndexSet:
    """The vectors of a database in its space (``speakerdb.index.space``: identity for
    Matryoshka models, a learned rotation otherwise; ``space`` names it), ``dims`` nested."""

    def __init__(self, directory: str | os.PathLike, matrix: VectorMatrix,
                 screen: VectorIndex | None = None, info: SetInfo | None = None,
                 model_sha256: str = "", schema_revision: str = "", space: str = "identity"):
        self.directory = Path(directory)
        self.matrix, self.screen = matrix, screen
        self.info = info  # as last read or written; None until saved or loaded
        self.model_sha256, self.schema_revision = model_sha256, schema_revision
        self.space = space
        self._screen_saved = info is not None and bool(info.screen_file) == (screen is not None)

    @property
    def dims(self) -> tuple[int, ...]:
        return self.matrix.dims

    @property
    def by_dim(self) -> dict[int, PrefixIndex]:
        """{dim: PrefixIndex}: what the cascade searches and scores."""
        return {d: PrefixIndex(self.matrix, d, self.screen if d == self.dims[0] else None)
                for d in self.dims}

    # construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, directory: str | os.PathLike, ids, raw, model_sha256: str,
              schema_revision: str, dims: tuple[int, ...] = DIMS,
              space: str = "identity") -> IndexSet:
        """A set of raw (n, >= max(dims)) vectors under segment ``ids`` (n,); nothing is
        written."""
        return cls.from_chunks(directory, [(ids, raw)], len(ids), model_sha256,
                               schema_revision, dims, space)

    @classmethod
    def from_chunks(cls, directory: str | os.PathLike, chunks, n: int, model_sha256: str,
                    schema_revision: str, dims: tuple[int, ...] = DIMS,
                    space: str = "identity") -> IndexSet:
        """A set of the ``(ids, raw)`` chunks (``n`` vectors in all, ids ascending from chunk
        to chunk for speed): one copy of the rows, filled in place as the chunks come."""
        out = cls(directory, VectorMatrix(dims), None, None, model_sha256, schema_revision,
                  space)
        out.matrix.reserve(n)
        for ids, raw in chunks:
            out.matrix.add(ids, raw)
        out.retarget()
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike, dims: tuple[int, ...] = DIMS) -> IndexSet:
        """Map the saved rows and read the screen that ``vectors.json`` describes;
        ``IndexOutOfDateError`` when it is missing, unreadable, of other dimensions, or a
        file does not match it (size, vector count). No per-vector work: ``check`` compares
        contents and checksums."""
        directory = Path(directory)
        info = read_info(info_path(directory))
        if tuple(info.dims) != tuple(dims):
            raise IndexOutOfDateError(f"{info_path(directory)}: holds {_dims(info.dims)}-D "
                                      f"vectors, the database uses {_dims(dims)}-D")
        matrix = VectorMatrix.load(directory, dims, info.matrix)
        screen = None
        if info.screen_file:
            path = directory / info.screen_file
            try:
                choice = parse_choice(info.index_key, info.index_param)
            except ValueError as e:
                raise IndexOutOfDateError(f"{info_path(directory)}: {e}") from None
            current = _screen_choice(info.ntotal, dims)
            if choice.nlist and current.key == choice.key:
                choice = current  # the probe count is a search setting: this version's applies
            size = path.stat().st_size if path.is_file() else -1
            if size != info.screen_size_bytes:
                raise IndexOutOfDateError(f"{path}: {max(size, 0)} bytes but {INFO_FILE} says "
                                          f"{info.screen_size_bytes}")
            screen = VectorIndex.load(path, dims[0], choice)
            if screen.ntotal != info.ntotal:
                raise IndexOutOfDateError(f"{path}: {screen.ntotal} vectors but {INFO_FILE} "
                                          f"says {info.ntotal}")
        return cls(directory, matrix, screen, info, info.model_sha256, info.schema_revision,
                   info.space)

    @staticmethod
    def state(directory: str | os.PathLike) -> SetInfo | None:
        """The saved description alone (cheap): None when there is none (never saved, or
        saved in the layout before ``vectors.json``); ``IndexOutOfDateError`` if unreadable."""
        path = info_path(directory)
        return read_info(path) if path.is_file() else None

    # contents ----------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return self.matrix.ntotal

    def ids(self) -> np.ndarray:
        """Sorted int64 ids (a copy)."""
        return self.matrix.ids()

    def max_id(self) -> int:
        """The largest id held (0 when empty)."""
        return self.matrix.max_id()

    def __repr__(self) -> str:
        return f"IndexSet({str(self.directory)!r}, ntotal={self.ntotal})"

    # changes -----------------------------------------------------------------------------
    def add(self, ids, raw) -> None:
        """Add raw (n, >= max dim) vectors: their rows, and their screen prefixes."""
        ids = np.asarray(ids, np.int64)
        self.matrix.add(ids, raw)
        if self.screen is not None and ids.size:
            self.screen.add(ids, self.matrix.reconstruct(self.dims[0], ids))
            self._screen_saved = False

    def remove(self, ids) -> int:
        """Remove these ids (absent ids are ignored); returns how many."""
        removed = self.matrix.remove(ids)
        if self.screen is not None and removed:
            self.screen.remove(ids)
            self._screen_saved = False
        return removed

    def retarget(self) -> bool:
        """Rebuild the screen if its kind no longer fits the set's size (a set that outgrew
        exact screening, or an IVF whose list count no longer fits); returns whether it did."""
        want = _screen_choice(self.ntotal, self.dims)
        have = self.screen.choice if self.screen is not None else IndexChoice(FLAT_KEY)
        if want.key == have.key:
            return False
        self.screen = self._built_screen(want) if want.nlist else None
        self._screen_saved = False
        return True

    def _built_screen(self, choice: IndexChoice) -> VectorIndex:
        """An IVF screen of every live vector, trained on an evenly spaced sample of them."""
        d0 = self.dims[0]
        ids = self.matrix.ids()
        sample = ids[np.unique(np.linspace(0, ids.size - 1, min(ids.size, 40 * choice.nlist))
                               .astype(np.int64))]
        screen = VectorIndex.trained(d0, choice, self.matrix.reconstruct(d0, sample))
        for a in range(0, ids.size, TRAIN_BLOCK):
            part = ids[a:a + TRAIN_BLOCK]
            screen.add(part, self.matrix.reconstruct(d0, part))
        return screen

    def save(self, model_sha256: str, schema_revision: str, store_max_id: int,
             store_generation: int = 0) -> None:
        """Write what changed (new rows appended; the screen under a new name if it changed),
        then ``vectors.json``, the commit; then remove files no description names any more.

        store_max_id: the store's largest segment id now (0 when empty); passed in because
        the largest id may have been deleted from the set. store_generation: the store
        generation the set reflects (``speakerdb.store.generation``)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.retarget()
        try:
            on_disk = self.state(self.directory)
        except IndexOutOfDateError:
            on_disk = None
        # (a set of other dimensions has other rows: its epoch is never this one's)
        matrix_state = self.matrix.save(self.directory,
                                        on_disk.matrix if on_disk is not None else None)
        screen_file, screen_size, screen_sha = "", 0, ""
        if self.screen is not None:
            old = self.info.screen_file if self.info is not None else ""
            if self._screen_saved and old and (self.directory / old).is_file():
                screen_file = old
                screen_size, screen_sha = self.info.screen_size_bytes, self.info.screen_sha256
            else:
                serial = 1 + max([_screen_serial(n) for n in _screen_files(self.directory)]
                                 or [0])
                screen_file = f"screen-{self.dims[0]}-{serial}.faiss"
                self.screen.save(self.directory / screen_file)
                screen_size = (self.directory / screen_file).stat().st_size
                screen_sha = sha256_file(self.directory / screen_file)
        choice = self.screen.choice if self.screen is not None else IndexChoice(FLAT_KEY)
        info = SetInfo(
            dims=self.dims, ntotal=self.ntotal, model_sha256=model_sha256,
            schema_revision=schema_revision, store_max_id=int(store_max_id),
            ids_digest=ids_digest(self.matrix.ids()),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            matrix=matrix_state, index_key=choice.key, index_param=choice.param,
            screen_file=screen_file, screen_size_bytes=screen_size, screen_sha256=screen_sha,
            space=self.space, store_generation=int(store_generation))
        write_info(info_path(self.directory), info)
        self.info, self._screen_saved = info, True
        self.model_sha256, self.schema_revision = model_sha256, schema_revision
        self.remove_stale_files()

    def files(self) -> list[Path]:
        """The files the saved description names (the rows, the screen, vectors.json)."""
        if self.info is None:
            return []
        from speakerdb.index.matrix import matrix_files

        out = [info_path(self.directory)]
        out += [p for p in matrix_files(self.directory, self.info.matrix.epoch,
                                          self.info.matrix.deleted).values()
                if p.is_file()]
        if self.info.screen_file:
            out.append(self.directory / self.info.screen_file)
        return out

    def remove_stale_files(self) -> list[Path]:
        """Remove files of earlier saves and of the layout before ``vectors.json`` (a reader
        that mapped one keeps it until it closes); returns them."""
        keep = set(self.files())
        stale = [p for p in self.matrix.stale_files(self.directory) if p not in keep]
        stale += [self.directory / n for n in _screen_files(self.directory)
                  if self.directory / n not in keep]
        for pattern in LEGACY_FILES:
            stale += sorted(self.directory.glob(pattern))
        for p in stale:
            p.unlink(missing_ok=True)
        return stale

    # checking ----------------------------------------------------------------------------
    def problems(self, store_ids, store_max_id: int, model_sha256: str, schema_revision: str,
                 raw_sample: tuple[np.ndarray, np.ndarray] | None = None,
                 dims: tuple[int, ...] = DIMS, space: str = "identity",
                 vectors=None, checksums: bool = False) -> list[str]:
        """Every disagreement between this set (and, once saved or loaded, its files and
        description) and the store, one line each; empty when they agree.

        store_ids: the store's ids, sorted; raw_sample: (ids, raw (m, >= max dim)) of a few
        stored vectors (in the database's space), compared with the copies held; vectors: an
        iterable of such chunks covering the store (a full check); checksums: also hash the
        saved files and compare with the description; dims/space: what the database expects."""
        from speakerdb.index.checks import set_problems

        return set_problems(self, store_ids, store_max_id, model_sha256, schema_revision,
                            raw_sample, dims, space, vectors, checksums)


def _dims(dims) -> str:
    return "/".join(map(str, dims))


def _screen_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("screen-*.faiss") if _SCREEN.fullmatch(p.name))


def _screen_serial(name: str) -> int:
    m = _SCREEN.fullmatch(name)
    return int(m.group(2)) if m else 0
