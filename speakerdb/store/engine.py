"""Engine set-up: SQLite (WAL, foreign keys and a busy timeout) or PostgreSQL (psycopg 3,
the ``postgres`` extra; connections checked before use, so a restarted server is reconnected).

The one module that knows which database the store is in: a home without a ``db_url`` keeps
its store in a SQLite file (``home_store_url``), and whether a store may be written, how it is
opened read-only and which errors mean a full disk or a damaged file depend on its URL here.
Everything else reaches the store through its URL and ``store.Store``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from speakerdb.errors import StoreError, UsageError

__all__ = ["HOME_STORE_FILE", "POSTGRES_EXTRA", "STORE_FILE_SUFFIXES", "home_has_store",
           "home_store_url", "insert_ignore", "lock_store", "lost_connection", "make_engine",
           "mask_passwords", "redact", "upsert", "sqlite_read_only", "sqlite_url", "store_error", "url_read_only"]

HOME_STORE_FILE = "speakerdb.sqlite"  # the store of a home created without a db_url
STORE_FILE_SUFFIXES = (".sqlite",)  # files in a home that are a store
POSTGRES_EXTRA = "pip install 'speakerdb[postgres]'"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def home_store_url(home: Path) -> str:
    """The URL of the store a home keeps in itself (created without a ``db_url``)."""
    return sqlite_url(Path(home) / HOME_STORE_FILE)


def home_has_store(home: Path) -> bool:
    """Whether ``home`` holds the store file of a home created without a ``db_url``."""
    return (Path(home) / HOME_STORE_FILE).is_file()


def url_read_only(url: str) -> bool:
    """Whether the store at ``url`` is a file this process may not write (a read-only mount
    or permissions); False for a server's store and for a malformed URL (``make_engine``
    reports that)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return False
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return sqlite_read_only(Path(parsed.database))


def redact(url: str) -> str:
    """The URL with any password hidden, for messages (also in a URL SQLAlchemy cannot
    parse: whatever lies between ``user:`` and ``@``)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        return mask_passwords(str(url))


def mask_passwords(text: str) -> str:
    """``text`` with the password of every URL in it (``scheme://user:password@``) hidden."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def _normalise(parsed: URL) -> URL:
    """``postgresql://`` without a driver means psycopg (v3), the driver of the extra."""
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "memory":
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_read_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")  # nothing that writes
    cur.close()


def sqlite_read_only(path: Path) -> bool:
    """Whether this process may not write the SQLite file ``path`` or its folder (where
    SQLite keeps its journal): a read-only mount, or files it has no write permission on."""
    path = Path(path)
    return not os.access(path.parent, os.W_OK) or (path.exists()
                                                   and not os.access(path, os.W_OK))


def _read_only_url(path: str) -> URL:
    """A URL that opens the SQLite file ``path`` for reading only. ``mode=ro`` needs the
    WAL index (``-shm``) to exist or be creatable; where it cannot be, the file is opened as
    ``immutable`` (no locking: only right when nobody writes it meanwhile, as on a read-only
    mount)."""
    import sqlite3

    name = f"file:{quote(str(Path(path).resolve()))}"
    query = {"mode": "ro"}
    try:
        con = sqlite3.connect(f"{name}?mode=ro", uri=True)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:
        query["immutable"] = "1"
    except sqlite3.DatabaseError:
        pass  # damaged: the first real query says so
    return URL.create("sqlite", database=name, query={**query, "uri": "true"})


def make_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for ``url``; raises UsageError for a malformed URL, StoreError if unusable.
    ``read_only`` (SQLite files only) opens the file without ever writing to it or its
    folder."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(f"db_url {redact(url)!r}: not a database URL", option="db_url") from None
    parsed = _normalise(parsed)
    read_only = read_only and parsed.get_backend_name() == "sqlite" and \
        parsed.database not in (None, "", ":memory:")
    if read_only:
        db = parsed.database
        if not Path(db).is_file():
            raise StoreError(f"{redact(url)}: no such database file (and its folder is "
                             "read-only)")
        parsed = _read_only_url(db)
    server = parsed.get_backend_name() != "sqlite"
    try:
        engine = create_engine(parsed, pool_pre_ping=True) if server else create_engine(parsed)
    except ImportError as e:
        from speakerdb.errors import StoreDriverMissing

        how = f"; {POSTGRES_EXTRA}" if parsed.get_backend_name() == "postgresql" else ""
        raise StoreDriverMissing(f"{redact(url)}: the database driver is not installed "
                                 f"({e.name or e}){how}") from None
    except (ArgumentError, SQLAlchemyError) as e:
        raise StoreError(f"{redact(url)}: cannot open ({e.__class__.__name__}: "
                         f"{mask_passwords(str(e))})") from None
    if engine.dialect.name == "sqlite":
        db = parsed.database
        if read_only:
            event.listen(engine, "connect", _sqlite_read_pragmas)
            return engine
        if db and db != ":memory:" and not Path(db).parent.exists():
            raise StoreError(f"{redact(url)}: directory {Path(db).parent} does not exist")
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def lost_connection(e: BaseException) -> bool:
    """Whether ``e`` is a database server that could not be reached or went away (its
    transaction, if any, was rolled back by the server)."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(e, DBAPIError) and e.connection_invalidated:
        return True
    orig = getattr(e, "orig", None) or e
    module = type(orig).__module__ or ""
    if not module.startswith("psycopg"):
        return False
    state = getattr(getattr(orig, "diag", None), "sqlstate", None) or ""
    # 08: connection exceptions; 57P01-03: admin shutdown, crash shutdown, cannot connect now
    return (type(orig).__name__ == "OperationalError" and not state) or \
        state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _insert(bind, model):
    if bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(model)


def insert_ignore(bind, model):
    """``INSERT ... ON CONFLICT DO NOTHING`` into ``model``'s table in the dialect of ``bind``
    (an engine, connection or session; SQLite and PostgreSQL both have it)."""
    return _insert(_bind(bind), model).on_conflict_do_nothing()


def upsert(bind, model, values: dict, keys: tuple[str, ...]):
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` of ``values`` (one statement, so two
    processes writing one row at once never clash on its key)."""
    stmt = _insert(_bind(bind), model).values(**values)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={k: stmt.excluded[k] for k in values if k not in keys})


STORE_LOCK = 0x5EA4E2DC  # PostgreSQL advisory lock key of ``lock_store``


def lock_store(session) -> None:
    """Hold a store-wide lock to the end of ``session``'s transaction, for the rare writes that
    must not interleave between processes (binding the model). PostgreSQL: an advisory lock;
    SQLite: nothing (one writer holds the file; a unique key catches the rest)."""
    if _bind(session).dialect.name == "postgresql":
        from sqlalchemy import text

        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": STORE_LOCK})


def _bind(bind):
    return bind.get_bind() if hasattr(bind, "get_bind") else bind


CONFLICT_STATES = ("40P01", "40001")
"""PostgreSQL's deadlock and serialization failures: the server rolled this transaction back
in favour of another writer's, and running it again resolves it."""


def writers_conflicted(e: BaseException | None) -> bool:
    """Whether ``e`` (a SQLAlchemy error) is one of ``CONFLICT_STATES``."""
    state = getattr(getattr(getattr(e, "orig", None), "diag", None), "sqlstate", None)
    return state in CONFLICT_STATES


def retried_on_conflict(fn, attempts: int = 5):
    """``fn`` (one store transaction) run again when another writer's transaction made the
    server roll it back (a ``StoreError`` caused by ``writers_conflicted``), up to
    ``attempts`` times in all."""
    import functools

    @functools.wraps(fn)
    def run(*args, **kwargs):
        for attempt in range(attempts):
            try:
                return fn(*args, **kwargs)
            except StoreError as e:
                if attempt == attempts - 1 or not writers_conflicted(e.__cause__):
                    raise
        raise AssertionError("unreachable")

    return run


def store_error(where: str, e: BaseException) -> StoreError:
    """The typed error of a failed store operation, saying what happened: the server could
    not be reached or went away (``StoreUnavailable``), the disk is full (``DiskFullError``),
    the store may not be written (``ReadOnlyError``), the file is not a database or is corrupt
    (``DamagedStoreError``), else a plain ``StoreError``. Never shows a password."""
    from speakerdb.errors import DamagedStoreError, DiskFullError, ReadOnlyError, StoreUnavailable

    orig = getattr(e, "orig", None) or e
    name = getattr(orig, "sqlite_errorname", "") or ""
    text = mask_passwords(" ".join(str(orig).split()) or type(orig).__name__)
    if "password authentication failed" in text or "no password supplied" in text:
        return StoreError(f"{where}: the database server refused the login ({text}); give the "
                          "password in PGPASSWORD or ~/.pgpass")
    if lost_connection(e):
        return StoreUnavailable(f"{where}: the database server could not be reached or the "
                                f"connection was lost ({text}); nothing of the interrupted "
                                "transaction was kept: run the command again")
    low = text.lower()
    if name == "SQLITE_FULL" or "database or disk is full" in low:
        return DiskFullError(f"{where}: the disk is full ({text}); free some space and run "
                             "the command again")
    if name.startswith("SQLITE_READONLY") or "readonly database" in low:
        return ReadOnlyError(f"{where}: read-only for this process, and this command writes "
                             f"to it ({text})")
    if name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB" or \
            "malformed" in low or "file is not a database" in low:
        return DamagedStoreError(f"{where}: the store is damaged ({text}); restore it from a "
                                 "backup")
    return StoreError(f"{where}: {text}")
