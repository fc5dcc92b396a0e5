"""The FAISS indexes of one database, kept in agreement with its metadata store.

The store is the source of truth. Indexes are saved after ingest (and at most every
``flush_s`` seconds during one); on open, indexes that are behind the store catch up (append
what is missing) or, if they disagree in any other way, are rebuilt from the stored vectors.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.index import IndexSet, catch_up_plan
from speakerdb.space import VectorSpace
from speakerdb.store.store import Store

__all__ = ["Indexes"]

_SAMPLE = 64  # stored vectors compared with their index copies by check


class Indexes:
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

    # opening -------------------------------------------------------------------------------
    def open(self, catch_up: bool = True) -> str:
        """Load the indexes; with ``catch_up`` bring them level with the store first.

        Returns what was done: ``current``, ``append``, ``rebuild``, or ``loaded`` (no catch-up).
        """
        if not catch_up:
            self.set = IndexSet.load(self.directory, self.space.dims)
            return "loaded"
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
            self.flush(force=True)
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
        ids, raw = self.store.all_vectors()
        self.set = IndexSet.build(self.directory, ids, self.space.transform(raw),
                                  self.model_sha256, self.revision, self.space.dims,
                                  self.space.name)
        if save:
            self.flush(force=True)
            self._remove_stale_files()

    def _remove_stale_files(self) -> None:
        """Index files of dimensions this space does not use (left by an earlier space)."""
        from speakerdb.index import index_paths, saved_dims

        for d in set(saved_dims(self.directory)) - set(self.space.dims):
            for p in index_paths(self.directory, d):
                p.unlink(missing_ok=True)

    # changes -------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, raw: np.ndarray) -> None:
        if len(ids):
            self.set.add(ids, self.space.transform(raw))
            self._dirty = True
            self.flush()

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.set.remove(ids)
            self._dirty = True
            self.flush(force=True)

    def flush(self, force: bool = False) -> None:
        """Save the indexes if they changed (now when ``force``, else at most every flush_s)."""
        if not force and (not self._dirty or time.monotonic() - self._last_flush < self.flush_s):
            return
        if self.read_only:
            from speakerdb.errors import ReadOnlyError

            raise ReadOnlyError(f"{self.directory}: the home is read-only; its indexes cannot "
                                "be saved")
        ids = self.store.segment_ids()
        self.set.save(self.model_sha256, self.revision, int(ids[-1]) if ids.size else 0)
        self._dirty = False
        self._last_flush = time.monotonic()

    # checking ------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every disagreement between the saved indexes and the store (empty when they agree)."""
        try:
            saved = IndexSet.load(self.directory, self.space.dims)
        except IndexOutOfDateError as e:
            return [str(e)]
        store_ids = self.store.segment_ids()
        sample = None
        if store_ids.size:
            pick = np.unique(np.linspace(0, store_ids.size - 1, _SAMPLE).astype(int))
            parts = list(self.store.vectors(store_ids[pick]))
            sample = (np.concatenate([p[0] for p in parts]),
                      self.space.transform(np.concatenate([p[1] for p in parts])))
        return saved.problems(
            store_ids,
            int(store_ids[-1]) if store_ids.size else 0,
            self.model_sha256,
            self.revision,
            raw_sample=sample,
            dims=self.space.dims,
            space=self.space.name,
        )
