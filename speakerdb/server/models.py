"""Response bodies of the HTTP API, as documented in the OpenAPI schema.

The library's ``as_dict`` shapes are the contract; these models name their fixed keys and
let further keys through (``extra="allow"``), like the JSON contract of the command line.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Candidate",
    "DeletedOut",
    "EmbedOut",
    "EnrollOut",
    "ErrorBody",
    "ErrorOut",
    "HealthOut",
    "IdentifyOut",
    "MergeIn",
    "RenameIn",
    "SpeakerChange",
    "SpeakerOut",
    "SpeakersOut",
    "StatsOut",
    "VerifyOut",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    type: str = Field(description="The error class, e.g. AudioError, NotFound, ValidationError")
    message: str = Field(description="One line saying what went wrong and where")


class ErrorOut(BaseModel):
    error: ErrorBody


class HealthOut(_Open):
    ok: bool
    model: str
    counts: dict[str, int | float]


class StatsOut(_Open):
    home: str
    model: dict
    counts: dict
    vectors: dict = Field(description="The saved vectors: dims, count, rows and their bytes, "
                                      "the screen (empty before the first save)")


class Candidate(_Open):
    speaker: str
    score: float
    segments: int


class IdentifyOut(_Open):
    input: str
    decision: str = Field(description='"match" or "unknown"')
    speaker: str | None
    score: float | None
    threshold: float
    threshold_source: str
    score_norm: str
    candidates: list[Candidate]


class TurnOut(_Open):
    start: float = Field(description="Seconds from the start of the upload")
    end: float
    speaker: str = Field(description="A database speaker, or unknown-1, unknown-2, ...")
    score: float | None


class VoiceOut(_Open):
    speaker: str
    decision: str = Field(description='"match" or "unknown"')
    score: float | None
    margin: float | None
    speech_s: float


class DiarizeOut(_Open):
    input: str
    duration_s: float
    speech_s: float
    vad: str
    speakers: list[VoiceOut]
    turns: list[TurnOut]


class VerifyOut(_Open):
    inputs: list[str]
    scores: dict[str, float]
    score: float
    threshold: float
    threshold_source: str
    decision: str = Field(description='"same" or "different"')


class EmbedOut(_Open):
    model: dict
    input: str
    duration_s: float
    segments: int
    embeddings: dict[str, list[float]]


class SpeakerOut(_Open):
    label: str
    recordings: int
    segments: int
    seconds: float


class SpeakersOut(BaseModel):
    speakers: list[SpeakerOut]


class EnrollOut(_Open):
    speaker: str
    added: int
    segments: int
    skipped: list[dict]
    failed: list[dict]


class SpeakerChange(BaseModel):
    speaker: SpeakerOut
    renamed: str | None = None
    merged: str | None = None


class DeletedOut(BaseModel):
    deleted: str
    segments: int


LABEL_RULE = ("1 to 200 characters, no white space at either end, none of / < > ? # % nor "
              "control characters, not . or ..; any other label is a 400 UsageError, as on "
              "the command line")


class RenameIn(BaseModel):
    label: str = Field(description=f"The speaker's new label: {LABEL_RULE}")


class MergeIn(BaseModel):
    into: str = Field(description="The speaker that receives every recording (it must exist "
                                  f"and its label follow the rule: {LABEL_RULE})")
