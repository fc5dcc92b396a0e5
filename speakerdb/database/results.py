"""Typed results of the library's operations; ``as_dict`` gives the JSON contract's shape."""

from __future__ import annotations

from dataclasses import dataclass, field

from speakerdb.search.decision import Candidate

__all__ = ["IdentifyResult", "VerifyResult", "CheckReport", "Threshold", "choose_threshold",
           "stored_calibration", "SpeakerInfo", "EnrollResult"]


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
    threshold_source: str = "model default"  # "given", "calibrated ...", "... default ..."
    score_norm: str = "none"  # "none" | "asnorm": the space of score, threshold and margin
    aggregation: str = "max"  # the speaker score rule ("topk:3" for topk with k=3)
    cosine: float | None = None  # the best candidate's score before normalisation
    cohort: dict | None = None  # with asnorm: {"source", "size", "top_n"}

    def as_dict(self) -> dict:
        norm = self.score_norm != "none"
        return {
            "input": self.input,
            "decision": self.decision,
            "speaker": self.speaker,
            "score": _r(self.score),
            "threshold": _r(self.threshold),
            "threshold_source": self.threshold_source,
            "margin": _r(self.margin),
            "min_margin": _r(self.min_margin),
            "score_norm": self.score_norm,
            "aggregation": self.aggregation,
            "cosine": _r(self.cosine),
            **({"cohort": self.cohort} if norm else {}),
            "candidates": [
                {"speaker": c.speaker, "score": _r(c.score), "segments": c.segments,
                 **({"cosine": _r(c.cosine)} if norm else {})}
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
    threshold_source: str = "given"
    score_norm: str = "none"  # "asnorm": scores, score and threshold are AS-normalised
    cosines: dict[int, float] | None = None  # the cosine scores (= scores without norm)
    cohort: dict | None = None  # with asnorm: {"source", "size", "top_n"}

    def as_dict(self) -> dict:
        cos = self.scores if self.cosines is None else self.cosines
        return {
            "inputs": [self.a, self.b],
            "scores": {str(k): _r(v) for k, v in self.scores.items()},
            "score": _r(self.score),
            "threshold": _r(self.threshold),
            "threshold_source": self.threshold_source,
            "decision": self.decision,
            "score_norm": self.score_norm,
            "cosines": {str(k): _r(v) for k, v in cos.items()},
            **({"cohort": self.cohort} if self.cohort is not None else {}),
        }


@dataclass(frozen=True)
class CheckReport:
    """What ``check`` found. mode: ``full`` (every vector and each file's checksum) or
    ``quick`` (a sample of vectors); seconds: how long the check (and any repair) took;
    notes: what could not be verified but is not a disagreement."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    repaired: bool = False
    mode: str = "full"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "problems": self.problems, "counts": self.counts,
                "repaired": self.repaired, "mode": self.mode,
                "seconds": round(float(self.seconds), 3), "notes": self.notes}


@dataclass(frozen=True)
class SpeakerInfo:
    """One labelled speaker: its recordings, their segments and seconds of audio."""

    label: str
    recordings: int
    segments: int
    seconds: float

    def as_dict(self) -> dict:
        return {"label": self.label, "recordings": self.recordings, "segments": self.segments,
                "seconds": round(float(self.seconds), 3)}


@dataclass(frozen=True)
class EnrollResult:
    """What ``enroll`` did: recordings and segments added for ``speaker``, inputs skipped
    (``{"input", "reason"}``: already stored or repeated) and failed (``{"input", "reason",
    "error"}``)."""

    speaker: str
    added: int
    segments: int
    skipped: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"speaker": self.speaker, "added": self.added, "segments": self.segments,
                "skipped": list(self.skipped), "failed": list(self.failed)}


@dataclass(frozen=True)
class Threshold:
    """The threshold a decision used and where it came from: "given", "calibrated far=0.01
    (n targets, m nontargets)", "calibrated eer (...)", "model default", "asnorm default", the
    last two with the reason when a stored calibration is for another score space."""

    value: float
    source: str


def stored_calibration(stored) -> dict | None:
    """The stored calibration as a dict with at least ``value`` (older forms: a bare number or
    ``{"value": x}``), or None."""
    if isinstance(stored, (int, float)) and not isinstance(stored, bool):
        return {"value": float(stored)}
    if isinstance(stored, dict) and isinstance(stored.get("value"), (int, float)):
        return dict(stored)
    return None


def choose_threshold(given: float | None, stored, score_norm: str, default: float,
                     rule: str | None = None, dim: int | None = None) -> Threshold:
    """The threshold to decide with: ``given``, else a stored calibration made for the same
    score normalisation (and aggregation rule and dimension when those are given), else
    ``default`` (the model's, or the AS-norm default) with the reason a calibration was not
    used."""
    if given is not None:
        return Threshold(float(given), "given")
    cal = stored_calibration(stored)
    name = "model default" if score_norm == "none" else f"{score_norm} default"
    if cal is None:
        return Threshold(float(default), name)
    why = []
    if cal.get("score_norm", "none") != score_norm:
        why.append(f"score-norm {cal.get('score_norm', 'none')}")
    if rule is not None and cal.get("aggregation", rule) != rule:
        why.append(f"aggregation {cal['aggregation']}")
    if dim is not None and cal.get("dim", dim) != dim:
        why.append(f"{cal['dim']}-D")
    if why:
        return Threshold(float(default), f"{name} (the calibration is for {', '.join(why)})")
    if "method" not in cal:
        return Threshold(float(cal["value"]), "calibrated")
    counts = f" ({cal.get('targets', 0)} targets, {cal.get('nontargets', 0)} nontargets)"
    return Threshold(float(cal["value"]), f"calibrated {cal['method']}{counts}")
