"""Turns (who spoke from when to when) from labelled windows, and RTTM files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerdb.errors import ManifestError

__all__ = ["STEP_S", "Turn", "label_frames", "frames_to_turns", "write_rttm", "read_rttm",
           "rttm_lines"]

STEP_S = 0.01  # s: the time grid turns are built on


@dataclass(frozen=True)
class Turn:
    start: float  # s from the start of the input
    end: float
    speaker: str  # a database speaker's label, or unknown-1, unknown-2, ...
    score: float | None = None  # the cluster's identification score

    @property
    def duration(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3),
                "speaker": self.speaker,
                "score": None if self.score is None else round(float(self.score), 4)}


def label_frames(duration_s: float, regions, windows, labels) -> np.ndarray:
    """One cluster label per ``STEP_S`` frame of the input (-1: no speech). A frame inside a
    speech region takes the label of the window, among those covering it, whose centre is
    nearest; ``windows`` are (start_s, end_s) pairs inside the ``regions``."""
    n = int(np.ceil(duration_s / STEP_S))
    out = np.full(n, -1, dtype=np.int64)
    if not len(windows):
        return out
    w = np.asarray(windows, dtype=np.float64)
    centres = (w[:, 0] + w[:, 1]) / 2
    labels = np.asarray(labels)
    for a, b in regions:
        i0, i1 = int(round(a / STEP_S)), min(n, int(round(b / STEP_S)))
        if i1 <= i0:
            continue
        t = (np.arange(i0, i1) + 0.5) * STEP_S
        inside = (w[:, 0] < b) & (w[:, 1] > a)
        idx = np.flatnonzero(inside)
        if not len(idx):
            continue
        nearest = idx[np.abs(t[:, None] - centres[idx][None, :]).argmin(axis=1)]
        out[i0:i1] = labels[nearest]
    return out


def frames_to_turns(frames: np.ndarray, names: dict, scores: dict | None = None,
                    join_gap_s: float = 0.0) -> list[Turn]:
    """Runs of equal labels (not -1) as turns, named by ``names[label]``; two turns of one
    speaker with a pause shorter than ``join_gap_s`` between them (and no other speaker) are
    one turn."""
    turns: list[Turn] = []
    scores = scores or {}
    change = np.flatnonzero(np.diff(frames) != 0) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(frames)]])
    for a, b in zip(starts, ends):
        lab = int(frames[a])
        if lab < 0 or b <= a:
            continue
        name = names[lab]
        if turns and turns[-1].speaker == name and a * STEP_S - turns[-1].end < \
                max(join_gap_s, 1e-9):
            turns[-1] = Turn(turns[-1].start, float(b * STEP_S), name, turns[-1].score)
        else:
            turns.append(Turn(float(a * STEP_S), float(b * STEP_S), name, scores.get(lab)))
    return turns


def rttm_lines(turns, file_id: str) -> list[str]:
    """NIST RTTM ``SPEAKER`` lines of ``turns`` (spaces in names and ids become _)."""
    fid = "_".join(file_id.split()) or "audio"
    return [f"SPEAKER {fid} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> "
            f"{'_'.join(t.speaker.split())} <NA> <NA>" for t in turns]


def write_rttm(path: str | Path, turns, file_id: str) -> None:
    from speakerdb.files.atomic import atomic_write

    atomic_write(Path(path), "".join(line + "\n" for line in rttm_lines(turns, file_id)))


def read_rttm(path: str | Path) -> dict[str, list[Turn]]:
    """{file id: turns in order} of an RTTM file; a malformed SPEAKER line is a
    ManifestError naming the file and line."""
    out: dict[str, list[Turn]] = {}
    for no, line in enumerate(Path(path).read_text().splitlines(), 1):
        f = line.split()
        if not f or f[0] != "SPEAKER":
            continue
        try:
            if len(f) < 8:
                raise ValueError("fewer than 8 fields")
            start, dur = float(f[3]), float(f[4])
            if not (np.isfinite(start) and np.isfinite(dur)) or dur < 0 or start < 0:
                raise ValueError("bad times")
        except ValueError as e:
            raise ManifestError(f"{path}:{no}: not an RTTM SPEAKER line ({e})") from None
        out.setdefault(f[1], []).append(Turn(start, start + dur, f[7]))
    for turns in out.values():
        turns.sort(key=lambda t: (t.start, t.end))
    return out
