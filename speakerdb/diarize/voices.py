"""How many voices one ingested recording holds, and its dominant voice's speech: the
recording's speech (its segments, joined) cut into windows, embedded and clustered as
``diarize.run`` does; with ``keep="dominant"`` only the largest cluster's speech is
segmented again and stored."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

__all__ = ["KEEPS", "split_voices"]

KEEPS = ("all", "dominant")


def split_voices(prepared, embedder, policy, keep: str = "all", batch: int = 32):
    """(report, prepared): ``report`` is None for a recording of one voice, else
    ``{"input", "voices", "shares", "kept"}`` (shares of its speech per voice, largest first);
    ``prepared`` is the recording as given, or with ``keep="dominant"`` cut again from the
    largest voice's speech alone (an ``AudioError`` when that is too short)."""
    from speakerdb.audio import TARGET_RATE, Waveform, segment
    from speakerdb.audio.vad import speech_regions
    from speakerdb.diarize.cluster import cluster_windows, default_distance
    from speakerdb.diarize.run import windows_of
    from speakerdb.diarize.turns import STEP_S, label_frames
    from speakerdb.ingest.runner import embed_segments

    rate = TARGET_RATE
    x = np.concatenate([s.samples for s in prepared.segments])
    regions = speech_regions(x, rate, "none" if policy.vad == "none" else "energy",
                             policy.silence_dbfs)
    wins = windows_of(regions)
    if len(wins) < 2:
        return None, prepared
    raw = embed_segments(embedder, [x[int(a * rate): int(b * rate)] for a, b in wins], batch)
    labels = cluster_windows(raw, default_distance(embedder),
                             weights=[b - a for a, b in wins])
    frames = label_frames(len(x) / rate, regions, wins, labels)
    counts = np.bincount(frames[frames >= 0], minlength=int(labels.max()) + 1)
    voices = int(np.count_nonzero(counts))
    if voices < 2:
        return None, prepared
    order = np.argsort(-counts)
    report = {"input": prepared.name, "voices": voices,
              "shares": [round(float(counts[i] / counts.sum()), 3) for i in order if counts[i]],
              "kept": "all"}
    if keep != "dominant":
        return report, prepared
    mask = np.repeat(frames == order[0], int(round(STEP_S * rate)))[: len(x)]
    mask = np.concatenate([mask, np.zeros(len(x) - len(mask), bool)])
    kept = x[mask]
    report["kept"] = "dominant"
    report["kept_s"] = round(len(kept) / rate, 2)
    segs = segment(Waveform(kept, rate), replace(policy, vad="energy"), name=prepared.name)
    return report, replace(prepared, segments=segs, signal_s=None)
