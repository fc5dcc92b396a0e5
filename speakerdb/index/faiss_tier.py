"""The vectors of one database (``speakerdb.index.index_set``: full-precision rows and a FAISS
screen), kept in agreement with its metadata store.

The store is the source of truth. The vectors are saved after ingest (and at most every
``flush_s`` seconds during one); on open, vectors saved at the store's current generation are
mapped as they are (no per-segment work); ones that are behind the store catch up (append
what is missing) or, if they disagree in any other way, are rebuilt from the stored vectors.

Several processes: ``generation`` is the store generation (``store/generation.py``) the
in-memory indexes reflect; ``follow`` brings them level with what other processes wrote
since. Index files are saved only under the home's writer lock (``store/home_lock.py``; a
save that cannot have it now is skipped: the process writing saves), and never over files
that record a later store generation than this process has caught up to.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.index import IndexSet, catch_up_plan
from speakerdb.index.space import VectorSpace
from speakerdb.store.home_lock import HomeLock
from speakerdb.store.store import Store

__all__ = ["FaissTier"]

log = logging.getLogger("speakerdb.index.faiss_tier")

_SAMPLE = 64  # stored vectors compared with their index copies by check --quick


class FaissTier:
    """The FAISS vector tier (``speakerdb.index.tier.VectorTier``): every vector once at full
    precision (each nested prefix scored exactly from it) and, for a large set, a 16-bit IVF
    screen; saved in the home and described by ``vectors.json``."""

    def __init__(self, directory: Path, store: Store, model_sha256: str, revision: str,
                 space: VectorSpace, flush_s: float = 30.0, read_only: bool = False):
        self.directory, self.store, self.space = Path(directory), store, space
        self.model_sha256, self.revision, self.flush_s = model_sha256, revision, flush_s
        # a read-only home (or a full disk): catch-ups stay in memory, nothing is saved
        self.read_only = read_only
        self.unsaved = False  # the indexes in memory are ahead of the saved ones
        self.set: IndexSet | None = None
        self._dirty = False
        self._last_flush = time.monotonic()
        self.home_lock = HomeLock(self.directory)
        self.generation = store.generation()  # nothing in memory yet is older than this

    @property
    def is_open(self) -> bool:
        return self.set is not None

    @property
    def dirty(self) -> bool:
        """Whether the indexes in memory changed since they were last saved."""
        return self._dirty

    def ensure_open(self) -> None:
        """Load the indexes (caught up with the store) unless they are loaded."""
        if self.set is None:
            self.open(catch_up=True)

    # opening -------------------------------------------------------------------------------
    def open(self, catch_up: bool = True) -> str:
        """Load the indexes; with ``catch_up`` bring them level with the store first.

        Returns what was done: ``current``, ``append``, ``rebuild``, or ``loaded`` (no catch-up).
        """
        if not catch_up:
            self.set = IndexSet.load(self.directory, self.space.dims)
            return "loaded"
        # read first: what is loaded next is at least as new
        self.generation = generation = self.store.generation()
        action = self._load_saved()
        if action == "rebuild":
            self.rebuild(save=False)
            self.generation = generation
            self._save_if_possible()
        return action

    def _load_saved(self) -> str:
        """Load the saved vectors as ``plan`` says (``current``, or ``append`` what the store
        has beyond them); ``rebuild`` when they cannot be used. A load that fails because
        another process saved meanwhile (and removed the files the description read before
        named) plans again from the new description once."""
        for attempt in (1, 2):
            before = self._saved_description()
            action = self.plan()
            if action == "rebuild":
                return action
            try:
                self.set = IndexSet.load(self.directory, self.space.dims)
                if action == "append":
                    store_ids = self.store.segment_ids()
                    missing = np.setdiff1d(store_ids, self.set.ids(), assume_unique=True)
                    for ids, raw in self.store.vectors(missing):
                        self.set.add(ids, self.space.transform(raw))
                    self._save_if_possible()
                return action
            except IndexOutOfDateError:
                self.set = None
                if attempt == 2 or self._saved_description() == before:
                    return "rebuild"
        return "rebuild"

    def _saved_description(self) -> bytes | None:
        from speakerdb.index.index_set import info_path

        try:
            return info_path(self.directory).read_bytes()
        except OSError:
            return None

    def _save_if_possible(self) -> None:
        """Save a catch-up; where the home cannot be written (read-only, disk full) keep it
        in memory: a reader needs no write, the next writable open catches up again."""
        from speakerdb.errors import DiskFullError, ReadOnlyError

        if self.read_only:
            self.unsaved = True
            return
        try:
            self.flush(force=True)
        except (DiskFullError, ReadOnlyError):
            self.unsaved, self._dirty = True, False

    def plan(self) -> str:
        """``current``, ``append`` or ``rebuild``: what open() would do, from the saved
        description alone. Vectors saved at the store's generation now, holding as many
        segments as the store up to the same largest id, are current without listing the
        store's ids; otherwise the ids decide (``catch_up_plan``)."""
        try:
            info = IndexSet.state(self.directory)
        except IndexOutOfDateError:
            return "rebuild"
        if info is None or tuple(info.dims) != tuple(self.space.dims):
            return "rebuild"
        if (info.model_sha256, info.schema_revision, info.space) != (
                self.model_sha256, self.revision, self.space.name):
            return "rebuild"
        if (info.store_generation and info.store_generation == self.store.generation()
                and self.store.segment_extent() == (info.ntotal, info.store_max_id)):
            return "current"  # (the count and top id also catch writes that bypass the store)
        store_ids = self.store.segment_ids()
        action = catch_up_plan(info, store_ids, int(store_ids[-1]) if store_ids.size else 0)
        if action == "rebuild" and self._saved_ids_within(info, store_ids):
            # another writer's segments interleave with the saved ones (several homes on one
            # store): segment ids are never reused, so what is saved stands; add the rest
            return "append"
        return action

    def _saved_ids_within(self, info, store_ids: np.ndarray) -> bool:
        """Whether every saved id is still in the store (``store_ids``: sorted)."""
        from speakerdb.index.matrix import VectorMatrix

        try:
            saved = VectorMatrix.load(self.directory, tuple(info.dims), info.matrix).ids()
        except (IndexOutOfDateError, OSError, ValueError):
            return False
        return bool(np.isin(saved, store_ids, assume_unique=True).all())

    def rebuild(self, save: bool = True) -> None:
        generation = self.store.generation()
        chunks = ((ids, self.space.transform(raw)) for ids, raw in self.store.vectors())
        self.set = IndexSet.from_chunks(self.directory, chunks, self.store.segment_count(),
                                        self.model_sha256, self.revision, self.space.dims,
                                        self.space.name)
        self.generation = generation
        self._dirty = True
        if save:
            self.flush(force=True)

    def follow(self, generation: int) -> tuple[int, int]:
        """Bring the in-memory indexes level with the store after other processes wrote
        (``generation``: the store generation read before this call). Appends segments newer
        than any held; only when the counts then differ (deletes) compares every id.
        Returns (added, removed). Nothing is saved: the process that wrote saves."""
        added = removed = 0
        for ids, raw in self.store.vectors_after(self.set.max_id()):
            self.set.add(ids, self.space.transform(raw))
            added += ids.size
        if self.store.segment_count() != self.set.ntotal:
            store_ids = self.store.segment_ids()
            gone = np.setdiff1d(self.set.ids(), store_ids, assume_unique=True)
            removed = self.set.remove(gone) if gone.size else 0
            missing = np.setdiff1d(store_ids, self.set.ids(), assume_unique=True)
            for ids, raw in self.store.vectors(missing) if missing.size else ():
                self.set.add(ids, self.space.transform(raw))
                added += ids.size
        self.generation = generation
        return added, removed

    # changes -------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, raw: np.ndarray,
            generation: tuple[int, int] | None = None) -> None:
        """Add what this process just wrote to the store. ``generation``: the store generation
        before and after that write; the indexes take the later one only when they reflected
        the earlier (else another writer came in between, and ``follow`` will catch up)."""
        if len(ids):
            self.set.add(ids, self.space.transform(raw))
            if generation is not None and generation[0] == self.generation:
                self.generation = generation[1]
            self._dirty = True
            self.flush()

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.set.remove(ids)
            self.generation = self.store.generation()
            self._dirty = True
            self.flush(force=True)

    def owners_changed(self, ids: np.ndarray) -> None:
        """Nothing to do: the FAISS indexes hold vectors only (labels come from the store)."""

    def flush(self, force: bool = False) -> bool:
        """Save the indexes if they changed (now when ``force``, else at most every flush_s);
        returns whether they were saved. Skipped while another process holds the writer lock,
        and when the saved files reflect a later store generation than these indexes."""
        if not force and (not self._dirty or time.monotonic() - self._last_flush < self.flush_s):
            return False
        if self.read_only:
            from speakerdb.errors import ReadOnlyError

            raise ReadOnlyError(f"{self.directory}: the home is read-only; its indexes cannot "
                                "be saved")
        with self.home_lock.try_hold() as allowed:
            if not allowed:
                log.debug("%s: not saving the indexes: another process is writing",
                          self.directory)
                return False
            on_disk = self.saved_generation()
            if on_disk > self.generation:
                log.debug("%s: not saving the indexes: the saved ones are newer (store "
                         "generation %d, these %d)", self.directory, on_disk, self.generation)
                return False
            self.set.save(self.model_sha256, self.revision, self.store.segment_extent()[1],
                          self.generation)
        self._dirty = False
        self._last_flush = time.monotonic()
        return True

    def close(self) -> None:
        """Drop the loaded vectors, unmapping their files (a later use opens them again)."""
        self.set = None

    def saved_generation(self) -> int:
        """The store generation the saved vectors reflect (0: not recorded)."""
        try:
            info = IndexSet.state(self.directory)
        except IndexOutOfDateError:
            return 0
        return info.store_generation if info is not None else 0

    # reading -------------------------------------------------------------------------------
    def dims(self) -> tuple[int, ...]:
        """The dimensions of the loaded indexes, smallest first."""
        self.ensure_open()
        return tuple(sorted(self.set.by_dim))

    def count(self) -> int:
        """How many vectors the loaded indexes hold."""
        self.ensure_open()
        return self.set.ntotal

    def search_cascade(self, query, config) -> list:
        """The cascade's hits for ``query`` ({dim: unit vector}) (``search/cascade.py``)."""
        from speakerdb.search.cascade import cascade_search

        self.ensure_open()
        return cascade_search(self.set.by_dim, query, config)

    def search_exhaustive(self, query: np.ndarray, k: int) -> list:
        """The ``k`` best hits for ``query`` at its own dimension (one of ``dims()``), scoring
        every vector."""
        from speakerdb.search.cascade import exhaustive_search

        self.ensure_open()
        d = int(np.shape(query)[-1])
        if d not in self.set.by_dim:
            raise ValueError(f"no {d}-D index (dimensions: {sorted(self.set.by_dim)})")
        return exhaustive_search(self.set.by_dim[d], query, k)

    def describe(self) -> dict:
        """What the saved vectors are and the bytes each part takes on disk: the rows
        (``vectors``), the screen, and their description; empty when none are saved."""
        try:
            info = IndexSet.state(self.directory)
        except IndexOutOfDateError:
            info = None
        if info is None:
            return {}
        from speakerdb.index.matrix import matrix_files

        rows = sum(p.stat().st_size for p in matrix_files(self.directory, info.matrix.epoch, info.matrix.deleted)
                   .values() if p.is_file())
        screen = self.directory / info.screen_file if info.screen_file else None
        return {"dims": list(info.dims), "ntotal": info.ntotal, "rows": info.matrix.rows,
                "removed_rows": info.matrix.deleted, "rows_bytes": rows,
                "screen": {"dim": info.dims[0], "index_key": info.index_key,
                           "index_param": info.index_param,
                           "bytes": screen.stat().st_size if screen and screen.is_file() else 0},
                "store_generation": info.store_generation}

    # checking ------------------------------------------------------------------------------
    def problems(self, quick: bool = False) -> list[str]:
        """Every disagreement between the saved indexes and the store (empty when they agree).

        Full (the default): every stored vector is compared with its copy in every index,
        a chunk at a time, and each file is hashed against the checksum in its JSON. ``quick``:
        ``_SAMPLE`` vectors spread over the ids are compared, and no file is hashed."""
        try:
            saved = IndexSet.load(self.directory, self.space.dims)
        except IndexOutOfDateError as e:
            return [str(e)]
        store_ids = self.store.segment_ids()
        sample = vectors = None
        if quick and store_ids.size:
            pick = np.unique(np.linspace(0, store_ids.size - 1, _SAMPLE).astype(int))
            parts = list(self.store.vectors(store_ids[pick]))
            sample = (np.concatenate([p[0] for p in parts]),
                      self.space.transform(np.concatenate([p[1] for p in parts])))
        elif not quick:
            vectors = ((ids, self.space.transform(raw)) for ids, raw in self.store.vectors())
        return saved.problems(
            store_ids,
            int(store_ids[-1]) if store_ids.size else 0,
            self.model_sha256,
            self.revision,
            raw_sample=sample,
            dims=self.space.dims,
            space=self.space.name,
            vectors=vectors,
            checksums=not quick,
        )
