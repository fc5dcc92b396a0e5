"""The Qdrant vector tier: one collection per database, a point per segment (id: the segment
id) holding the unit prefix of every dimension of the space as a named cosine vector
(``d64`` … ``d256``) and the segment's recording and speaker ids as payload.

The store stays the source of truth: the collection is derived from it like the FAISS
indexes. Its metadata records the model, schema revision and vector space it was built for
and the store generation it reflects; on open, a collection at the store's generation holding
as many points as the store (and its newest segment) is used as it is, one behind is caught up
(points of new segments uploaded, points of deleted ones removed), and one built for another
model or space is rebuilt. Writes go to the collection as they happen (upserts in batches,
waited for); ``flush`` records the generation.

identify's cascade is one Query API request: nested prefetches screen at the first dimension
and rescore at the next ones, the query ranks at the last (``search_cascade``); the shared
code (``speakerdb.search.decision``, AS-norm) turns its hits into speakers as for FAISS.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from speakerdb.index.qdrant_link import connect, guarded, vector_name
from speakerdb.index.space import VectorSpace
from speakerdb.model.prefixes import prefix
from speakerdb.store.home_lock import HomeLock
from speakerdb.store.store import Store

__all__ = ["QdrantTier"]

log = logging.getLogger("speakerdb.index.qdrant_tier")

BATCH = 256  # points per upsert
META = "speakerdb"  # the collection metadata key of what it was built for


def _unit_prefixes(x: np.ndarray, dims) -> dict[int, np.ndarray]:
    x = np.asarray(x, np.float32)
    if len(dims) == 1 and dims[0] == x.shape[-1]:  # a space without nested prefixes
        n = np.linalg.norm(x, axis=-1, keepdims=True)
        return {dims[0]: (x / np.maximum(n, 1e-12)).astype(np.float32)}
    return {d: prefix(x, d) for d in dims}


class QdrantTier:
    """``speakerdb.index.tier.VectorTier`` on a Qdrant collection (``qdrant_link``)."""

    def __init__(self, directory: Path, store: Store, model_sha256: str, revision: str,
                 space: VectorSpace, location: str, collection: str, flush_s: float = 30.0,
                 read_only: bool = False):
        self.directory, self.store, self.space = Path(directory), store, space
        self.model_sha256, self.revision, self.flush_s = model_sha256, revision, flush_s
        self.location, self.collection, self.read_only = location, collection, read_only
        self.client = None
        self._dirty = False
        self._last_flush = time.monotonic()
        self.home_lock = HomeLock(self.directory)
        self.generation = store.generation()

    @property
    def is_open(self) -> bool:
        return self.client is not None

    @property
    def dirty(self) -> bool:
        """Whether the collection changed since its generation was last recorded."""
        return self._dirty

    def _call(self, doing: str):
        return guarded(self.location, doing)

    def _connect(self) -> None:
        if self.client is None:
            self.client = connect(self.location)

    def ensure_open(self) -> None:
        if self.client is None:
            self.open(catch_up=True)

    # the collection ------------------------------------------------------------------------
    def _built_for(self) -> dict:
        return {"model_sha256": self.model_sha256, "schema_revision": self.revision,
                "space": self.space.name, "dims": list(self.space.dims)}

    def _meta(self) -> dict | None:
        """What the collection records (None: there is no collection)."""
        with self._call("reading the collection"):
            if not self.client.collection_exists(self.collection):
                return None
            info = self.client.get_collection(self.collection)
        vectors = info.config.params.vectors or {}
        sizes = {k: v.size for k, v in vectors.items()} if isinstance(vectors, dict) else {}
        meta = dict((info.config.metadata or {}).get(META) or {})
        meta["sizes"] = sizes
        return meta

    def _layout_ok(self, meta: dict | None) -> bool:
        if meta is None:
            return False
        want = {vector_name(d): d for d in self.space.dims}
        built = {k: meta.get(k) for k in ("model_sha256", "schema_revision", "space", "dims")}
        return meta["sizes"] == want and built == self._built_for()

    def _create(self) -> None:
        from qdrant_client import models as m

        config = {vector_name(d): m.VectorParams(size=d, distance=m.Distance.COSINE)
                  for d in self.space.dims}
        with self._call("creating the collection"):
            if self.client.collection_exists(self.collection):
                self.client.delete_collection(self.collection)
            self.client.create_collection(self.collection, vectors_config=config,
                                          metadata={META: {**self._built_for(),
                                                           "store_generation": 0}})

    # opening -------------------------------------------------------------------------------
    def open(self, catch_up: bool = True) -> str:
        """Connect and, with ``catch_up``, bring the collection level with the store: returns
        ``current``, ``append`` (missing points uploaded, points of deleted segments removed),
        ``rebuild`` or ``loaded`` (no catch-up)."""
        self._connect()
        if not catch_up and self._layout_ok(self._meta()):
            return "loaded"  # (a collection that is not there, e.g. in memory, is built)
        self.generation = generation = self.store.generation()
        action = self.plan()
        if action == "rebuild":
            self.rebuild(save=False)
        elif action == "append":
            self._sync_ids()
        self.generation = generation
        if action != "current":
            self._dirty = True
            self._save_if_possible()
        return action

    def plan(self) -> str:
        """``current``, ``append`` or ``rebuild``: what open() would do."""
        self._connect()
        meta = self._meta()
        if not self._layout_ok(meta):
            return "rebuild"
        n, top = self.store.segment_extent()
        if meta.get("store_generation") == self.store.generation() and self._holds(n, top):
            return "current"
        return "append"

    def saved_generation(self) -> int:
        """The store generation the collection reflects (0: not recorded, or none)."""
        self._connect()
        value = (self._meta() or {}).get("store_generation")
        return int(value) if isinstance(value, (int, float)) else 0

    def _holds(self, n: int, top: int) -> bool:
        """Whether the collection has ``n`` points, the newest segment ``top`` among them."""
        with self._call("counting points"):
            if self.client.count(self.collection, exact=True).count != n:
                return False
            return not top or bool(self.client.retrieve(self.collection, [top]))

    def point_ids(self) -> np.ndarray:
        """Every point id of the collection, sorted."""
        out, offset = [], None
        with self._call("listing points"):
            while True:
                points, offset = self.client.scroll(self.collection, limit=10000, offset=offset,
                                                    with_payload=False, with_vectors=False)
                out += [int(p.id) for p in points]
                if offset is None:
                    break
        return np.sort(np.asarray(out, np.int64))

    def _sync_ids(self) -> tuple[int, int]:
        """Upload the segments the collection lacks, remove the points the store lacks;
        returns (added, removed)."""
        store_ids, held = self.store.segment_ids(), self.point_ids()
        gone = np.setdiff1d(held, store_ids, assume_unique=True)
        missing = np.setdiff1d(store_ids, held, assume_unique=True)
        self._delete(gone)
        added = 0
        for ids, raw in self.store.vectors(missing) if missing.size else ():
            self._upsert(ids, raw)
            added += ids.size
        return added, int(gone.size)

    def follow(self, generation: int) -> tuple[int, int]:
        """Bring the collection level with what other processes wrote (a shared server
        collection usually is already: only a difference in count or newest id is looked
        into)."""
        n, top = self.store.segment_extent()
        added = removed = 0
        if not self._holds(n, top):
            added, removed = self._sync_ids()
        self.generation = generation
        return added, removed

    # changes -------------------------------------------------------------------------------
    def _upsert(self, ids: np.ndarray, raw: np.ndarray) -> None:
        from qdrant_client import models as m

        ids = np.asarray(ids, np.int64)
        owners = self.store.segment_owners(ids)
        vecs = _unit_prefixes(self.space.transform(raw), self.space.dims)
        for a in range(0, ids.size, BATCH):
            part = ids[a : a + BATCH]
            payloads = [{"segment": int(i), "recording": owners.get(int(i), (None, None))[0],
                         "speaker": owners.get(int(i), (None, None))[1]} for i in part]
            batch = m.Batch(ids=[int(i) for i in part], payloads=payloads,
                            vectors={vector_name(d): v[a : a + BATCH].tolist()
                                     for d, v in vecs.items()})
            with self._call("uploading points"):
                self.client.upsert(self.collection, points=batch, wait=True)

    def _delete(self, ids: np.ndarray) -> None:
        from qdrant_client import models as m

        ids = [int(i) for i in np.asarray(ids).ravel()]
        for a in range(0, len(ids), 1000):
            with self._call("deleting points"):
                self.client.delete(self.collection, m.PointIdsList(points=ids[a : a + 1000]),
                                   wait=True)

    def add(self, ids: np.ndarray, raw: np.ndarray,
            generation: tuple[int, int] | None = None) -> None:
        """Upload what this process just wrote to the store (``generation``: the store
        generation before and after that write, as for the FAISS tier)."""
        if len(ids):
            self._upsert(ids, raw)
            if generation is not None and generation[0] == self.generation:
                self.generation = generation[1]
            self._dirty = True
            self.flush()

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._delete(ids)
            self.generation = self.store.generation()
            self._dirty = True
            self.flush(force=True)

    def owners_changed(self, ids: np.ndarray) -> None:
        """Write again the recording and speaker ids of segments ``ids`` (a merge moved them)."""
        from qdrant_client import models as m

        self._connect()
        groups: dict[tuple, list[int]] = {}
        for sid, owner in self.store.segment_owners(ids).items():
            groups.setdefault(owner, []).append(int(sid))
        for (rec, spk), points in groups.items():
            with self._call("updating payloads"):
                self.client.set_payload(self.collection, {"recording": rec, "speaker": spk},
                                        points=m.PointIdsList(points=points), wait=True)

    def flush(self, force: bool = False) -> bool:
        """Record the store generation the collection reflects (now when ``force``, else at
        most every flush_s); skipped while another process holds the writer lock."""
        if not force and (not self._dirty or time.monotonic() - self._last_flush < self.flush_s):
            return False
        if self.read_only:
            from speakerdb.errors import ReadOnlyError

            raise ReadOnlyError(f"{self.directory}: the home is read-only; its vector tier "
                                "cannot be written")
        with self.home_lock.try_hold() as allowed:
            if not allowed:
                return False
            meta = self._meta() or {}
            if int(meta.get("store_generation") or 0) > self.generation:
                return False
            with self._call("recording the store generation"):
                self.client.update_collection(self.collection, metadata={META: {
                    **self._built_for(), "store_generation": int(self.generation)}})
        self._dirty = False
        self._last_flush = time.monotonic()
        return True

    def _save_if_possible(self) -> None:
        from speakerdb.errors import DiskFullError, ReadOnlyError

        if self.read_only:  # the collection is level; its metadata waits for a writer
            self._dirty = False
            return
        try:
            self.flush(force=True)
        except (DiskFullError, ReadOnlyError):
            self._dirty = False

    def close(self) -> None:
        """Let go of the client (a local folder's lock included)."""
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a lost connection must not fail
                log.debug("closing the Qdrant client failed", exc_info=True)

    def rebuild(self, save: bool = True) -> None:
        """Make the collection agree with the store: one of the right layout has what differs
        uploaded again (``qdrant_checks.repair``); any other is created afresh from the store."""
        from speakerdb.index.qdrant_checks import repair

        self._connect()
        generation = self.store.generation()
        if self._layout_ok(self._meta()):
            repair(self)
        else:
            self._create()
            for ids, raw in self.store.vectors():
                self._upsert(ids, raw)
        self.generation = generation
        self._dirty = True
        if save:
            self.flush(force=True)

    # reading -------------------------------------------------------------------------------
    def dims(self) -> tuple[int, ...]:
        self.ensure_open()
        return tuple(self.space.dims)

    def count(self) -> int:
        self.ensure_open()
        with self._call("counting points"):
            return int(self.client.count(self.collection, exact=True).count)

    def search_cascade(self, query, config) -> list:
        from speakerdb.index.qdrant_search import cascade

        self.ensure_open()
        return cascade(self, query, config)

    def search_exhaustive(self, query: np.ndarray, k: int) -> list:
        from speakerdb.index.qdrant_search import exhaustive

        self.ensure_open()
        return exhaustive(self, query, k)

    def describe(self) -> dict:
        """The collection: where, its dimensions, points and the generation it reflects."""
        try:
            self._connect()
            meta = self._meta()
            n = self.count() if meta is not None else 0
        except Exception as e:  # noqa: BLE001 - stats report an unreachable engine, not fail
            return {"engine": "qdrant", "location": self.location,
                    "collection": self.collection, "error": str(e)}
        if meta is None:
            return {}
        return {"engine": "qdrant", "location": self.location, "collection": self.collection,
                "dims": list(meta.get("dims") or []), "ntotal": n,
                "store_generation": meta.get("store_generation")}

    def problems(self, quick: bool = False) -> list[str]:
        from speakerdb.index.qdrant_checks import problems

        self._connect()
        return problems(self, quick)
