"""Engine set-up: any SQLAlchemy URL; SQLite gets WAL, foreign keys and a busy timeout."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from speakerdb.errors import StoreError, UsageError

__all__ = ["make_engine", "sqlite_url", "redact"]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def redact(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "memory":
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; raises UsageError for a malformed URL, StoreError if unusable."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise UsageError(f"--db-url {url!r}: not a database URL ({e})") from None
    try:
        engine = create_engine(parsed)
    except (ArgumentError, SQLAlchemyError, ImportError) as e:
        raise StoreError(f"{redact(url)}: cannot open ({e.__class__.__name__}: {e})") from None
    if engine.dialect.name == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not Path(db).parent.exists():
            raise StoreError(f"{redact(url)}: directory {Path(db).parent} does not exist")
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine
