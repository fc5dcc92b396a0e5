"""Calibrating identification for a target FPIR on a database's own labelled speakers.

Leave-one-speaker-out: each speaker in turn is unknown; its probe vectors against every other
speaker (all of their items) are the impostor comparisons and their best score is what an
unknown voice would have scored. Known probes are leave-one-recording-out: each item against
its own speaker's other recordings and every other speaker. Both come from one matrix,
``search.leave_one_out.loo_matrix``. The impostor comparisons fit the model of
``search.openset``; its threshold for the target FPIR at the gallery's size is the decision
threshold, and the achieved rates on the same probes are reported beside it:

* ``fpir``: unknown probes (every item, against the other ``S - 1`` speakers) whose best score
  reaches the threshold;
* ``dir``: known probes (items with another recording of their speaker) whose own speaker is
  the best candidate and reaches the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from speakerdb.errors import UsageError
from speakerdb.search.openset import ImpostorModel, fit_impostors, impostor_matrix

__all__ = ["DEFAULT_FPIR", "IdentifyCalibration", "calibrate_identification", "check_fpir"]

DEFAULT_FPIR = 0.01


def check_fpir(fpir) -> float:
    ok = isinstance(fpir, (int, float, np.floating)) and not isinstance(fpir, bool)
    if not ok or not 0.0 < float(fpir) < 1.0:
        raise UsageError(f"target FPIR must be a number strictly between 0 and 1, got {fpir!r}")
    return float(fpir)


@dataclass(frozen=True)
class IdentifyCalibration:
    """An identification calibration: the impostor model, the target FPIR, and the rates the
    threshold for ``speakers`` achieved on the database's own probes."""

    target_fpir: float
    threshold: float  # at the gallery size it was made for (``speakers``)
    speakers: int
    fpir: float | None  # achieved on unknown (left-out speaker) probes
    dir: float | None  # achieved on known probes
    unknown_probes: int
    known_probes: int
    score_norm: str
    aggregation: str
    dim: int
    model: ImpostorModel

    @property
    def method(self) -> str:
        return f"fpir={self.target_fpir!r}"

    def threshold_at(self, n: int) -> float:
        """The threshold for the target FPIR at a gallery of ``n`` speakers."""
        return self.model.threshold(self.target_fpir, n)

    def to_dict(self) -> dict:
        return {"method": self.method, "target_fpir": self.target_fpir,
                "threshold": float(self.threshold), "speakers": int(self.speakers),
                "fpir": self.fpir, "dir": self.dir, "unknown_probes": int(self.unknown_probes),
                "known_probes": int(self.known_probes), "score_norm": self.score_norm,
                "aggregation": self.aggregation, "dim": int(self.dim),
                "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> IdentifyCalibration:
        try:
            return cls(float(d["target_fpir"]), float(d["threshold"]), int(d["speakers"]),
                       d.get("fpir"), d.get("dir"), int(d["unknown_probes"]),
                       int(d["known_probes"]), str(d["score_norm"]), str(d["aggregation"]),
                       int(d["dim"]), ImpostorModel.from_dict(d["model"]))
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"unusable identification calibration ({e!r})") from None


def rates(agg: np.ndarray, spk: np.ndarray, threshold: float) -> dict:
    """Achieved rates of ``threshold`` on a leave-one-out matrix (see the module docstring)."""
    n = agg.shape[0]
    imp = impostor_matrix(agg, spk)
    best = np.nanmax(np.where(np.isnan(imp), -np.inf, imp), axis=1)
    own = agg[np.arange(n), spk]
    known = ~np.isnan(own)
    hit = known & (own >= best) & (own >= threshold)
    return {"fpir": float(np.mean(best >= threshold)) if n else None,
            "dir": float(hit.sum() / known.sum()) if known.any() else None,
            "unknown_probes": int(n), "known_probes": int(known.sum())}


def calibrate_identification(agg: np.ndarray, spk: np.ndarray, target_fpir: float, *,
                             gallery_speakers: int | None = None, score_norm: str = "none",
                             aggregation: str = "max", dim: int = 256,
                             segments_per_speaker: float = 0.0,
                             source: str = "") -> IdentifyCalibration:
    """Fit the impostor model on the leave-one-out matrix ``agg`` (items x speakers, own
    column ``spk``) and choose the threshold for ``target_fpir`` at ``gallery_speakers``
    (default: the matrix's speakers)."""
    target = check_fpir(target_fpir)
    model = fit_impostors(agg, spk, segments_per_speaker=segments_per_speaker, source=source)
    n = agg.shape[1] if gallery_speakers is None else int(gallery_speakers)
    thr = model.threshold(target, n)
    r = rates(agg, spk, thr)
    return IdentifyCalibration(target, thr, n, r["fpir"], r["dir"], r["unknown_probes"],
                               r["known_probes"], score_norm, aggregation, int(dim), model)
