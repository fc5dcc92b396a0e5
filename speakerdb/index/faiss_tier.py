"""The FAISS indexes of one database, kept in agreement with its metadata store.

The store is the source of truth. Indexes are saved after ingest (and at most every
``flush_s`` seconds during one); on open, indexes that are behind the store catch up (append
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
    """The FAISS vector tier (``speakerdb.index.tier.VectorTier``): one exact index per
    nested dimension of the space, saved in the home next to JSON descriptions."""

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
        action = self.plan()
        if action == "current":
            try:
                self.set = IndexSet.load(self.directory, self.space.dims)
            except IndexOutOfDateError:
                action = "rebuild"
        if action == "append":
            try:
                self.set = IndexSet.load(self.directory, self.space.dims)
                have = self.set.ids()
                store_ids = self.store.segment_ids()
                missing = np.setdiff1d(store_ids, have, assume_unique=True)
                for ids, raw in self.store.vectors(missing):
                    self.set.add(ids, self.space.transform(raw))
                self._save_if_possible()
            except IndexOutOfDateError:
                action = "rebuild"
        if action == "rebuild":
            self.rebuild(save=False)
            self.generation = generation
            self._save_if_possible()
        return action

    def _save_if_possible(self) -> None:
        """Save a catch-up; where the home cannot be written (read-only, disk full) keep it
        in memory: a reader needs no write, the next writable open catches up again."""
        from speakerdb.errors import DiskFullError, ReadOnlyError

        if self.read_only:
            self.unsaved = True
            return
        try:
            if self.flush(force=True):
                self._remove_stale_files()
        except (DiskFullError, ReadOnlyError):
            self.unsaved, self._dirty = True, False

    def plan(self) -> str:
        """``current``, ``append`` or ``rebuild``: what open() would do, from the JSONs alone."""
        try:
            infos = IndexSet.state(self.directory, self.space.dims)
        except IndexOutOfDateError:
            return "rebuild"
        if not infos:
            return "rebuild"
        if len({(i.ntotal, i.ids_digest) for i in infos.values()}) > 1:
            return "rebuild"  # a save interrupted between dimensions: they hold different ids
        store_ids = self.store.segment_ids()
        store_max = int(store_ids[-1]) if store_ids.size else 0
        plans = set()
        for info in infos.values():
            if (info.model_sha256, info.schema_revision, info.space) != (
                    self.model_sha256, self.revision, self.space.name):
                return "rebuild"
            plans.add(catch_up_plan(info, store_ids, store_max))
        if "rebuild" in plans:
            return "rebuild"
        return "append" if "append" in plans else "current"

    def rebuild(self, save: bool = True) -> None:
        generation = self.store.generation()
        ids, raw = self.store.all_vectors()
        self.set = IndexSet.build(self.directory, ids, self.space.transform(raw),
                                  self.model_sha256, self.revision, self.space.dims,
                                  self.space.name)
        self.generation = generation
        self._dirty = True
        if save and self.flush(force=True):
            self._remove_stale_files()

    def follow(self, generation: int) -> tuple[int, int]:
        """Bring the in-memory indexes level with the store after other processes wrote
        (``generation``: the store generation read before this call). Appends segments newer
        than any held; only when the counts then differ (deletes) compares every id.
        Returns (added, removed). Nothing is saved: the process that wrote saves."""
        added = removed = 0
        have = self.set.ids()
        for ids, raw in self.store.vectors_after(int(have[-1]) if have.size else 0):
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

    def _remove_stale_files(self) -> None:
        """Index files of dimensions this space does not use (left by an earlier space)."""
        from speakerdb.index import index_paths, saved_dims

        for d in set(saved_dims(self.directory)) - set(self.space.dims):
            for p in index_paths(self.directory, d):
                p.unlink(missing_ok=True)

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
            on_disk = self._saved_generation()
            if on_disk > self.generation:
                log.debug("%s: not saving the indexes: the saved ones are newer (store "
                         "generation %d, these %d)", self.directory, on_disk, self.generation)
                return False
            ids = self.store.segment_ids()
            self.set.save(self.model_sha256, self.revision, int(ids[-1]) if ids.size else 0,
                          self.generation)
        self._dirty = False
        self._last_flush = time.monotonic()
        return True

    def _saved_generation(self) -> int:
        try:
            infos = IndexSet.state(self.directory, self.space.dims) or {}
        except IndexOutOfDateError:
            return 0
        return max((i.store_generation for i in infos.values()), default=0)

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

    def describe(self) -> dict[int, dict]:
        """{dim: index key, parameter, vector count, file size} of the saved indexes."""
        try:
            infos = IndexSet.state(self.directory, self.space.dims) or {}
        except IndexOutOfDateError:
            infos = {}
        return {d: {"index_key": i.index_key, "index_param": i.index_param,
                    "ntotal": i.ntotal, "size_bytes": i.size_bytes}
                for d, i in sorted(infos.items())}

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

    def unchecksummed(self) -> list[int]:
        """The dimensions whose saved JSON records no checksum (saved by an older version)."""
        try:
            infos = IndexSet.state(self.directory, self.space.dims) or {}
        except IndexOutOfDateError:
            return []
        return sorted(d for d, info in infos.items() if not info.sha256)
