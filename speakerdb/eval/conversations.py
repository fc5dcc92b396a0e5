"""Synthetic conversations built deterministically from a labelled folder, for measuring
diarization: speakers split into a dev and a test part (disjoint), each test speaker's files
split into enrollment files and conversation files (never both), conversations of 2-4
speakers with turns of 1-8 s, pauses, and in a fraction of them overlapping speech; the
reference turns come with each conversation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from speakerdb.diarize.turns import Turn
from speakerdb.errors import UsageError

__all__ = ["SPLITS", "Conversation", "SpeakerPool", "split_speakers", "pools",
           "build_conversation", "conversations"]

SPLITS = ("dev", "test")
RATE = 16000
TURN_S = (1.0, 8.0)  # s: the shortest and longest turn
PAUSE_S = (0.2, 1.2)  # s: silence between two turns that do not overlap
OVERLAP_S = (0.3, 1.2)  # s: how far a turn starts before the previous one ends
OVERLAP_TURNS = 0.3  # in a conversation with overlap: the share of turns that overlap
LEVEL_RMS = 0.05  # every turn is scaled to this RMS
ENROLL_FILES = 1  # files of each speaker kept for enrollment


@dataclass
class SpeakerPool:
    """One speaker's audio: ``enroll`` file paths (relative to the root) for enrollment, and
    ``talk`` samples (its other files joined) that conversations cut their turns from."""

    speaker: str
    enroll: list[str]
    talk: np.ndarray


@dataclass
class Conversation:
    name: str
    samples: np.ndarray  # (n,) float32 at 16 kHz
    reference: list[Turn]  # who really spoke when
    speakers: list[str]
    enrolled: list[str]  # those of ``speakers`` that the database holds
    overlap: bool
    enrolment: str = field(default="none")  # "all" | "some" | "none"

    @property
    def duration_s(self) -> float:
        return len(self.samples) / RATE


def split_speakers(speakers, dev_share: float = 1 / 3) -> dict[str, list[str]]:
    """{"dev": [...], "test": [...]}: a speaker is in dev when its name's sha256 falls in the
    first ``dev_share`` of the range (the same split whatever else the folder holds)."""
    out = {"dev": [], "test": []}
    for s in sorted(set(speakers)):
        h = int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "big") / 2 ** 64
        out["dev" if h < dev_share else "test"].append(s)
    return out


def _trim(x: np.ndarray, floor: float = 10 ** (-45 / 20)) -> np.ndarray:
    """``x`` without the quiet (below -45 dBFS in 25 ms frames) at its two ends."""
    from speakerdb.audio import frame_rms

    loud = np.flatnonzero(frame_rms(x, RATE) > floor)
    if not len(loud):
        return x[:0]
    size = int(0.025 * RATE)
    return x[loud[0] * size: (loud[-1] + 1) * size]


def pools(root, files, speakers) -> dict[str, SpeakerPool]:
    """{speaker: SpeakerPool} of ``speakers`` that have at least two files: their first
    ``ENROLL_FILES`` file(s) (sorted by path) for enrollment, the others for talking."""
    from speakerdb.audio import load

    by: dict[str, list[str]] = {}
    for f in files:
        by.setdefault(f.speaker, []).append(f.path)
    out = {}
    for s in speakers:
        paths = sorted(by.get(s, []))
        if len(paths) <= ENROLL_FILES:
            continue
        talk = [_trim(load(root / p, name=p).samples) for p in paths[ENROLL_FILES:]]
        out[s] = SpeakerPool(s, paths[:ENROLL_FILES], np.concatenate(talk))
    return out


def _piece(pool: SpeakerPool, seconds: float, rng) -> np.ndarray:
    """``seconds`` of ``pool.talk`` from a random point (wrapping round), at LEVEL_RMS."""
    talk = pool.talk
    n = int(seconds * RATE)
    start = int(rng.integers(0, len(talk)))
    x = np.take(talk, np.arange(start, start + n), mode="wrap").astype(np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return x * (LEVEL_RMS / max(rms, 1e-6))


def build_conversation(name: str, pools_: list[SpeakerPool], turns: int, overlap: bool,
                       seed: int) -> tuple[np.ndarray, list[Turn]]:
    """The samples and reference turns of one conversation among ``pools_``: ``turns`` turns,
    each by another speaker than the one before (every speaker speaks), 1-8 s, separated
    by pauses, or with ``overlap`` starting before the previous one ends for some."""
    rng = np.random.default_rng(seed)
    k = len(pools_)
    order = list(rng.permutation(k))
    while len(order) < turns:
        order.append(int(rng.choice([i for i in range(k) if i != order[-1]])))
    t = 0.5
    placed = []
    for i in order:
        seconds = float(rng.uniform(*TURN_S))
        if placed and overlap and rng.random() < OVERLAP_TURNS:
            prev = placed[-1]
            start = max(prev[0] + 0.2, prev[1] - float(rng.uniform(*OVERLAP_S)))
        elif placed:
            start = placed[-1][1] + float(rng.uniform(*PAUSE_S))
        else:
            start = t
        placed.append((start, start + seconds, i, _piece(pools_[i], seconds, rng)))
    end = max(p[1] for p in placed) + 0.5
    x = np.zeros(int(end * RATE) + 1, np.float32)
    ref = []
    for a, b, i, piece in placed:
        s = int(round(a * RATE))
        x[s: s + len(piece)] += piece
        ref.append(Turn(round(a, 3), round(a + len(piece) / RATE, 3), pools_[i].speaker))
    return np.clip(x, -1, 1), ref


def conversations(pools_: dict[str, SpeakerPool], enrolled: set[str], sizes=(2, 3, 4),
                  per_size: int = 10, overlap_share: float = 0.3, seed: int = 0):
    """Conversations of each size in ``sizes``, ``per_size`` of each, cycling through three
    enrolments (all speakers enrolled, some, none); a share ``overlap_share`` of them with
    overlapping turns. Same arguments, same conversations."""
    known = sorted(s for s in pools_ if s in enrolled)
    unknown = sorted(s for s in pools_ if s not in enrolled)
    plans = ("none", "all", "some")
    for k in sizes:
        for j in range(per_size):
            rng = np.random.default_rng([seed, k, j])
            plan = plans[j % 3]
            n_known = {"all": k, "none": 0, "some": max(1, k // 2)}[plan]
            if n_known > len(known) or k - n_known > len(unknown):
                raise UsageError(f"a {k}-speaker conversation with {plan} enrolled needs "
                                 f"{n_known} enrolled and {k - n_known} other speakers with "
                                 f"two files or more; the folder has {len(known)} and "
                                 f"{len(unknown)}")
            chosen = list(rng.choice(known, n_known, replace=False)) if n_known else []
            chosen += list(rng.choice(unknown, k - n_known, replace=False)) \
                if k - n_known else []
            overlap = bool(rng.random() < overlap_share)
            turns = int(rng.integers(2 * k + 2, 3 * k + 3))
            name = f"conv-{k}spk-{j:03d}"
            x, ref = build_conversation(name, [pools_[s] for s in chosen], turns, overlap,
                                        int(rng.integers(2 ** 31)))
            yield Conversation(name, x, ref, [str(s) for s in chosen],
                               [str(s) for s in chosen if s in enrolled], overlap, plan)
