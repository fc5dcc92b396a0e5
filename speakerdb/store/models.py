"""SQLAlchemy 2.0 typed models of the metadata store (the source of truth, vectors included).

Tables: ``models`` (the one model a database is bound to), ``speakers``, ``recordings`` (one per
distinct audio content), ``segments`` (offsets and the raw 256-D float32 vector), ``ingest_runs``
and ``failures`` (one per bad input content). Schema changes go through Alembic revisions in
``migrations/``; never ``create_all`` outside tests.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "ModelRow",
    "Speaker",
    "Recording",
    "Segment",
    "IngestRun",
    "Failure",
    "Setting",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    """The embedding model a database is bound to (exactly one row)."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    dims: Mapped[list] = mapped_column(JSON)
    raw_dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Speaker(Base):
    __tablename__ = "speakers"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(500), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    recordings: Mapped[list[Recording]] = relationship(back_populates="speaker")


class IngestRun(Base):
    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sources: Mapped[list] = mapped_column(JSON)
    layout: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="running")
    summary: Mapped[dict | None] = mapped_column(JSON)


class Recording(Base):
    """One distinct audio content (by sha256), as first seen."""

    __tablename__ = "recordings"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    speaker_id: Mapped[int | None] = mapped_column(
        ForeignKey("speakers.id", ondelete="RESTRICT"), index=True
    )
    duration_s: Mapped[float] = mapped_column(Float)
    sample_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    speaker: Mapped[Speaker | None] = relationship(back_populates="recordings")
    segments: Mapped[list[Segment]] = relationship(
        back_populates="recording", cascade="all, delete-orphan", order_by="Segment.start_s"
    )


class Segment(Base):
    """A searchable piece of a recording: offsets in seconds and the raw model output."""

    __tablename__ = "segments"
    __table_args__ = (
        UniqueConstraint("recording_id", "start_s", name="uq_segment_offset"),
        {"sqlite_autoincrement": True},  # ids are never reused: indexes key on them
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # raw float32, little-endian

    recording: Mapped[Recording] = relationship(back_populates="segments")


class Failure(Base):
    """An input that could not be ingested, with the reason (one per path and content)."""

    __tablename__ = "failures"
    __table_args__ = (UniqueConstraint("path", "sha256", name="uq_failure_input"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Setting(Base):
    """Database-wide settings that travel with the data (e.g. a calibrated threshold)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict | list | str | float | int | None] = mapped_column(JSON)
