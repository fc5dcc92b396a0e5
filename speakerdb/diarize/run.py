"""Diarizing one input against a database: speech regions (the database's speech detector),
windows of ``WINDOW_S`` every ``HOP_S`` embedded with its model, clustered
(``cluster.cluster_windows``), each cluster identified like a query (``SpeakerDB.identify_embedding``:
a known name with score and margin, or ``unknown-1``, ``unknown-2``, ...), frames labelled by
the window whose centre is nearest and merged into turns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from speakerdb.diarize.turns import Turn, frames_to_turns, label_frames
from speakerdb.errors import TooShortError, UsageError

__all__ = ["WINDOW_S", "HOP_S", "DiarizedSpeaker", "DiarizeResult", "windows_of", "diarize",
           "diarize_samples"]

WINDOW_S = 1.5  # s: the length of the windows that are embedded and clustered
HOP_S = 0.75  # s: from one window's start to the next
MIN_REGION_S = 0.25  # s: speech regions shorter than this are left out
JOIN_GAP_S = 0.8  # s: one speaker's turns with a shorter pause between them are one turn (dev split)


@dataclass
class DiarizedSpeaker:
    """One voice found in the input: ``speaker`` is a database label or ``unknown-k``."""

    speaker: str
    decision: str  # "match" | "unknown"
    score: float | None  # identification score of the best candidate
    margin: float | None
    speech_s: float  # seconds of turns given to this voice
    candidate: str | None = None  # the best candidate (also for an unknown voice)

    def as_dict(self) -> dict:
        r = _rounded
        return {"speaker": self.speaker, "decision": self.decision, "score": r(self.score),
                "margin": r(self.margin), "speech_s": round(self.speech_s, 3),
                "candidate": self.candidate}


@dataclass
class DiarizeResult:
    input: str
    duration_s: float  # seconds of the whole input
    speech_s: float  # seconds of speech found
    vad: str  # the speech detector
    speakers: list[DiarizedSpeaker]  # by first appearance
    turns: list[Turn]
    windows: int = 0  # windows embedded
    seconds: float = 0.0  # wall time of the whole
    timings: dict = field(default_factory=dict)  # seconds per stage

    def as_dict(self) -> dict:
        return {"input": self.input, "duration_s": round(self.duration_s, 3),
                "speech_s": round(self.speech_s, 3), "vad": self.vad,
                "speakers": [s.as_dict() for s in self.speakers],
                "turns": [t.as_dict() for t in self.turns], "windows": self.windows,
                "seconds": round(self.seconds, 3),
                "timings": {k: round(v, 3) for k, v in self.timings.items()}}


def _rounded(v):
    return None if v is None else round(float(v), 4)


def windows_of(regions, window_s: float = WINDOW_S, hop_s: float = HOP_S):
    """(start_s, end_s) windows over speech ``regions``: a region up to ``window_s`` long is
    one window; a longer one is covered by windows every ``hop_s``, the last ending where the
    region ends."""
    out = []
    for a, b in regions:
        if b - a < MIN_REGION_S:
            continue
        if b - a <= window_s:
            out.append((a, b))
            continue
        s = a
        while s + window_s < b - 1e-9:
            out.append((s, s + window_s))
            s += hop_s
        out.append((b - window_s, b))
    return out


def _check_counts(num_speakers, max_speakers):
    if num_speakers is not None and max_speakers is not None:
        raise UsageError("give num_speakers or max_speakers, not both", option="num_speakers",
                         also=("max_speakers",))
    for opt, v in (("num_speakers", num_speakers), ("max_speakers", max_speakers)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UsageError(f"{opt} must be a whole number of at least 1, got {v!r}",
                             option=opt)


def diarize(db, audio, *, num_speakers: int | None = None, max_speakers: int | None = None,
            name: str | None = None, min_duration_s: float | None = None,
            distance: float | None = None, **identify) -> DiarizeResult:
    """``SpeakerDB.diarize`` (see there)."""
    from speakerdb.audio import describe, load

    _check_counts(num_speakers, max_speakers)
    name = describe(audio) if name is None else name
    t0 = time.perf_counter()
    wave = load(audio, name=name, max_duration_s=db.policy.max_duration_s)
    res = diarize_samples(db, wave.samples, name, num_speakers=num_speakers,
                          max_speakers=max_speakers, min_duration_s=min_duration_s,
                          distance=distance, **identify)
    res.timings = {"decode": res.timings.get("start", 0.0) - t0, **res.timings}
    res.timings.pop("start", None)
    res.seconds = time.perf_counter() - t0
    return res


def diarize_samples(db, samples: np.ndarray, name: str, *, num_speakers=None,
                    max_speakers=None, min_duration_s=None, distance=None,
                    **identify) -> DiarizeResult:
    """``diarize`` of mono 16 kHz ``samples``."""
    from speakerdb.audio import TARGET_RATE
    from speakerdb.audio.gates import gate_seconds
    from speakerdb.audio.vad import speech_regions
    from speakerdb.diarize.cluster import cluster_windows, default_distance
    from speakerdb.ingest.runner import embed_segments

    _check_counts(num_speakers, max_speakers)
    t = {"start": time.perf_counter()}
    policy, rate = db.policy, TARGET_RATE
    duration = len(samples) / rate
    regions = [r for r in speech_regions(samples, rate, policy.vad, policy.silence_dbfs)
               if r[1] - r[0] >= MIN_REGION_S]
    speech = sum(b - a for a, b in regions)
    gate = gate_seconds(min_duration_s, db.gates.min_query_s)
    if speech < gate:
        raise TooShortError(name, f"too short: {speech:.2f} s of speech, need at least "
                                  f"{gate:g} s")
    t["vad"] = time.perf_counter()
    wins = windows_of(regions)
    pieces = [samples[int(a * rate): int(b * rate)] for a, b in wins]
    raw = embed_segments(db.embedder, pieces, batch=32)
    t["embed"] = time.perf_counter()
    dist = default_distance(db.embedder) if distance is None else float(distance)
    labels = cluster_windows(raw, dist, num_speakers, max_speakers,
                             weights=[b - a for a, b in wins])
    t["cluster"] = time.perf_counter()
    names, scores, speakers = _identify_clusters(db, raw, labels, name, identify)
    frames = label_frames(duration, regions, wins, labels)
    turns = frames_to_turns(frames, names, scores, JOIN_GAP_S)
    spoken: dict[str, float] = {}
    for tr in turns:
        spoken[tr.speaker] = spoken.get(tr.speaker, 0.0) + tr.duration
    found = [s for s in speakers if s.speaker in spoken]
    for s in found:
        s.speech_s = float(spoken[s.speaker])
    t["identify"] = time.perf_counter()
    steps = list(t)
    timings = {"start": t["start"], **{k: t[k] - t[p] for p, k in zip(steps, steps[1:])}}
    return DiarizeResult(name, duration, speech, policy.vad, found, turns, len(wins),
                         time.perf_counter() - t["start"], timings)


def _identify_clusters(db, raw, labels, name, identify):
    """({cluster: speaker name}, {cluster: score}, [DiarizedSpeaker] by first appearance).
    Clusters identified as the same database speaker share its name (and one entry)."""
    from speakerdb.model.prefixes import mean_embedding
    from speakerdb.search.query import AudioEmbedding

    names, scores, by_name = {}, {}, {}
    unknown = 0
    searchable = db.store.counts().get("speakers", 1) > 0
    for c in range(int(labels.max()) + 1 if len(labels) else 0):
        rc = raw[labels == c]
        r = None
        if searchable:
            emb = AudioEmbedding(f"{name}#{c + 1}", 0.0, len(rc), rc.mean(axis=0),
                                 mean_embedding(rc, db.embedder.dims), rc)
            r = db.identify_embedding(emb, **identify)
        if r is not None and r.decision == "match":
            label = r.speaker
        else:
            unknown += 1
            label = f"unknown-{unknown}"
        names[c], scores[c] = label, None if r is None else r.score
        if label in by_name:  # a second cluster of one known speaker: keep the better score
            s = by_name[label]
            if r.score is not None and (s.score is None or r.score > s.score):
                s.score, s.margin = r.score, r.margin
            continue
        best = r.candidates[0].speaker if r is not None and r.candidates else None
        matched = r is not None and r.decision == "match"
        by_name[label] = DiarizedSpeaker(label, "match" if matched else "unknown",
                                         None if r is None else r.score,
                                         None if r is None else r.margin, 0.0, best)
    return names, scores, list(by_name.values())
