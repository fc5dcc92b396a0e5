"""Several processes on one home: catching up with others' writes, and taking turns to write.

``refresh(db)``: one small query (the store generation) tells whether any process wrote since
this ``SpeakerDB`` last caught up; if so its in-memory indexes follow the store (append what
is new, drop what was deleted, rebuild on a new vector space) and the cached speaker state
(centroids, cohorts) is dropped. ``identify`` and ``verify`` call it first, so a long-running
server answers from what the store holds now, not from what it held at start.

``writing(db)``: hold the home's writer lock (``store/home_lock.py``) for one write operation,
caught up first, so that this process's indexes are level with the store before it adds to
them and saves them. ``db.lock_wait_s`` says how long to wait for another writer (None: as
long as it takes; 0: ``Busy`` at once).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

__all__ = ["refresh", "writing"]

log = logging.getLogger("speakerdb.database.processes")


def refresh(db) -> bool:
    """Catch up with what other processes wrote; returns whether anything had changed."""
    indexes = db.indexes
    generation = db.store.generation()
    if generation == indexes.generation:
        return False
    with db.lock:
        if generation == indexes.generation:  # another thread caught up meanwhile
            return False
        was_open = indexes.is_open
        if _follow_space(db):
            if was_open:  # the vectors are all different: load (or rebuild) in the new space
                indexes.open(catch_up=True)
        elif was_open:
            added, removed = indexes.follow(generation)
            if added or removed:
                log.debug("%s: caught up with other processes (+%d -%d segments)",
                          db.home, added, removed)
        indexes.generation = max(indexes.generation, generation)
        db.scorer.invalidate()
    return True


def _follow_space(db) -> bool:
    """Take over a rotation another process fitted (models without nested prefixes only);
    returns whether the space changed."""
    from speakerdb.database.opening import stored_space

    if len(db.model.dims) > 1 or db.space.rotation is not None:
        return False
    space = stored_space(db.store, db.model)
    if space.name == db.space.name:
        return False
    db.indexes.space = space
    return True


@contextmanager
def writing(db):
    """Hold the writer lock of ``db``'s home for the block (re-entrant), caught up first; a
    read-only home is a ReadOnlyError before any lock is tried."""
    db.require_writable("changing the database")
    lock = db.indexes.home_lock
    with lock.hold(db.lock_wait_s):
        if lock.depth == 1:
            refresh(db)
        yield
