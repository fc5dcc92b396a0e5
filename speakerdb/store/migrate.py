"""Alembic, driven from code: the revisions live in ``migrations/`` (packaged as
``speakerdb.migrations`` in a wheel), so a database can be created or upgraded anywhere."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text

__all__ = ["migrations_dir", "alembic_config", "upgrade", "current_revision", "head_revision"]


_MIGRATION_LOCK = 0x5EA4E2DB  # PostgreSQL advisory lock key held while migrating


def migrations_dir() -> Path:
    """The Alembic script directory: the installed package, else the checkout's ``migrations/``."""
    try:
        import speakerdb.migrations as pkg

        here = Path(pkg.__file__).parent
        if (here / "env.py").exists():
            return here
    except ImportError:
        pass
    return Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(engine: Engine | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # two processes creating one store take turns
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
