"""Plain dataclasses passed into and out of the store (no SQLAlchemy objects leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RecordingIn", "FailureIn", "LabelIn", "SegmentRef", "BoundModel"]


@dataclass
class RecordingIn:
    """One decoded, embedded input ready to be written."""

    sha256: str
    path: str
    speaker: str | None
    duration_s: float
    sample_rate: int
    channels: int
    source: str
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    raw: np.ndarray | None = None  # (n_segments, raw_dim) float32


@dataclass(frozen=True)
class FailureIn:
    path: str
    sha256: str
    reason: str
    message: str


@dataclass(frozen=True)
class LabelIn:
    """A label given (by a re-ingest) for a stored recording: applied only while the recording
    still has the ``stored`` label (None: unlabelled)."""

    sha256: str
    stored: str | None
    given: str
    input: str = ""  # the input's name, for reports


@dataclass(frozen=True)
class SegmentRef:
    """What a search hit points at."""

    segment_id: int
    speaker: str | None
    path: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class BoundModel:
    name: str
    sha256: str
    dims: tuple[int, ...]
    raw_dim: int
