"""Typed results of the library's operations; ``as_dict`` gives the JSON contract's shape."""

from __future__ import annotations

from dataclasses import dataclass, field

from speakerdb.search.decision import Candidate

__all__ = ["IdentifyResult", "VerifyResult", "CheckReport"]


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(float(x), nd)


@dataclass(frozen=True)
class IdentifyResult:
    input: str
    decision: str  # "match" | "unknown"
    speaker: str | None
    score: float | None
    threshold: float
    margin: float | None
    min_margin: float
    candidates: list[Candidate]
    mode: str  # "cascade" | "exhaustive"
    segments_scored: int
    seconds: float

    def as_dict(self) -> dict:
        return {
            "input": self.input,
            "decision": self.decision,
            "speaker": self.speaker,
            "score": _r(self.score),
            "threshold": _r(self.threshold),
            "margin": _r(self.margin),
            "min_margin": _r(self.min_margin),
            "candidates": [
                {"speaker": c.speaker, "score": _r(c.score), "segments": c.segments}
                for c in self.candidates
            ],
            "mode": self.mode,
            "segments_scored": self.segments_scored,
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class VerifyResult:
    a: str
    b: str
    scores: dict[int, float]
    score: float
    threshold: float
    decision: str  # "same" | "different"

    def as_dict(self) -> dict:
        return {
            "inputs": [self.a, self.b],
            "scores": {str(k): _r(v) for k, v in self.scores.items()},
            "score": _r(self.score),
            "threshold": _r(self.threshold),
            "decision": self.decision,
        }


@dataclass(frozen=True)
class CheckReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    repaired: bool = False

    def as_dict(self) -> dict:
        return {"ok": self.ok, "problems": self.problems, "counts": self.counts,
                "repaired": self.repaired}
