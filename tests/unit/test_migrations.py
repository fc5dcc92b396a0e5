"""The Alembic migrations and the SQLAlchemy models describe the same schema.

A store is created by running the migrations (``speakerdb.store.migrate.upgrade``) while the
code reads and writes it through the models (``speakerdb.store.models``); a column, index,
constraint or type added to one and not the other would only show up on a real database. Here
the migrations run on a fresh SQLite file and a fresh PostgreSQL database and Alembic's autogenerate compares the result with
the models' metadata: any difference is a failure.
"""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import Column, Integer, MetaData, create_engine

from speakerdb.store.migrate import current_revision, head_revision, upgrade
from speakerdb.store.models import Base


def _compare(engine, metadata: MetaData) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        # Types and server defaults are compared too. Nothing is filtered out: on SQLite the
        # comparison of this schema is exact (no unnamed constraints or dialect types that
        # SQLite would report differently), so any difference is a real one.
        ctx = MigrationContext.configure(conn, opts={"compare_type": True,
                                                     "compare_server_default": True})
        return compare_metadata(ctx, metadata)


@pytest.fixture
def migrated(store_url):
    """A store migrated to head: a SQLite file, and a PostgreSQL database."""
    from speakerdb.store.engine import make_engine

    engine = make_engine(store_url) if store_url.startswith("postgresql") else \
        create_engine(store_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_migrations_reach_head(migrated):
    assert current_revision(migrated) == head_revision()


def test_migrations_match_the_models(migrated):
    diffs = _compare(migrated, Base.metadata)
    assert diffs == [], "models and migrations differ (add a migration): " + repr(diffs)


def test_a_column_only_in_the_models_is_a_difference(migrated):
    metadata = copy.deepcopy(Base.metadata)
    table = metadata.tables["speakers"]
    table.append_column(Column("drifted", Integer, nullable=True))
    diffs = _compare(migrated, metadata)
    assert [(d[0], d[2], d[3].name) for d in diffs] == [("add_column", "speakers", "drifted")]


def test_a_table_only_in_the_migrations_is_a_difference(migrated):
    metadata = copy.deepcopy(Base.metadata)
    metadata.remove(metadata.tables["failures"])
    diffs = _compare(migrated, metadata)
    assert [(d[0], d[1].name) for d in diffs if d[0] == "remove_table"] == [
        ("remove_table", "failures")]
