"""The store generation: a number in the settings table bumped by every write transaction.

A process that keeps a database open (a server) compares it with the generation it last
caught up to, one small query per request, and catches up from the store when another
process wrote in between. Every transaction of ``Store.session`` that changes speakers,
recordings, segments, settings or the model bumps it just before its commit, inside the same
transaction (so a reader never sees the change without the new number); writes to the
bookkeeping tables alone (``ingest_runs``, ``failures``) do not.

Several processes (several homes) may write one server store at once: the bump reads the
number with ``SELECT ... FOR UPDATE`` (a row lock that PostgreSQL holds to the commit, so a
second writer waits and then reads the first one's number: no two commits get the same
generation; SQLite needs no lock, one writer at a time holds the whole file), and the row is
created with ``INSERT ... ON CONFLICT DO NOTHING`` where it is missing.
"""

from __future__ import annotations

from itertools import chain

from sqlalchemy import Engine, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from speakerdb.store.engine import insert_ignore
from speakerdb.store.models import Setting

__all__ = ["CHANGE", "GENERATION_KEY", "read_generation", "track_writes"]

GENERATION_KEY = "generation"
_QUIET = frozenset({"ingest_runs", "failures"})
_FLAG = "speakerdb_wrote"
CHANGE = "speakerdb_generation"  # session.info: (before, after) of a committed bump


def track_writes(sessions: sessionmaker) -> None:
    """Make every write transaction of ``sessions`` bump the generation."""
    event.listen(sessions, "after_flush", _after_flush)
    event.listen(sessions, "do_orm_execute", _on_execute)
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_commit", _clear)
    event.listen(sessions, "after_rollback", _clear)


def read_generation(engine: Engine) -> int:
    """The store's generation now (0 for a store never written since this was added)."""
    with engine.connect() as c:
        value = c.execute(select(Setting.value).where(Setting.key == GENERATION_KEY)).scalar()
    return int(value) if isinstance(value, (int, float)) else 0


def _table(obj) -> str:
    return getattr(getattr(obj, "__table__", None), "name", "")


def _after_flush(session: Session, _ctx) -> None:
    if any(_table(o) not in _QUIET for o in chain(session.new, session.dirty, session.deleted)):
        session.info[_FLAG] = True


def _on_execute(state) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(getattr(state.statement, "table", None), "name", "")
        if table not in _QUIET:
            state.session.info[_FLAG] = True


def _before_commit(session: Session) -> None:
    session.flush()  # pending changes decide, and their writes take SQLite's write lock
    if not session.info.pop(_FLAG, False):
        return
    locked = select(Setting.value).where(Setting.key == GENERATION_KEY).with_for_update()
    row = session.execute(locked).first()
    if row is None:
        new = insert_ignore(session, Setting).values(key=GENERATION_KEY, value=0)
        session.execute(new)
        row = session.execute(locked).first()
    current = row[0] if row is not None else 0
    before = int(current) if isinstance(current, (int, float)) else 0
    session.execute(update(Setting).where(Setting.key == GENERATION_KEY)
                    .values(value=before + 1))
    session.info.pop(_FLAG, None)  # set again by the update above
    session.info[CHANGE] = (before, before + 1)


def _clear(session: Session) -> None:
    session.info.pop(_FLAG, None)
