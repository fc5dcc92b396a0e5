"""Alembic migrations of the speakerdb metadata store (installed as ``speakerdb.migrations``)."""
