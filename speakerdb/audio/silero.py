"""Silero VAD, batched: speech probabilities of 16 kHz signals and the regions they mark.

The model scores 512-sample chunks (32 ms) one after another, carrying a recurrent state per
signal. One call costs about as much for one chunk as for a dozen, so scored one signal at a
time a file costs about 0.6 % of its length on one core, close to what the speaker model
costs. ``silero_probs_many`` scores several signals side by side, one batch row each (rows of
similar length together, the shorter ones zero-padded at the end and their extra scores
dropped): every signal gets the scores it gets alone, at a fraction of the cost.

The probabilities are turned into regions with hysteresis, with the parameters the Silero
package documents for its own timestamps: speech starts at ``THRESHOLD``, ends where the
probability stays under ``THRESHOLD - 0.15`` for ``MIN_SILENCE_S``; regions shorter than
``MIN_SPEECH_S`` are dropped and the rest widened by ``PAD_S`` on each side.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["CHUNK", "silero_probs_many", "silero_regions_many", "regions_from_probs"]

RATE = 16000
CHUNK = 512  # samples per score
ROWS = 64  # signals scored side by side at most
SPREAD = 3.0  # the longest signal of a batch at most this times the shortest (padding is cheap)
THRESHOLD = 0.5
MIN_SPEECH_S = 0.25
MIN_SILENCE_S = 0.1
PAD_S = 0.06

_local = threading.local()


def _model():
    """This thread's Silero model (it keeps state between calls: one per thread)."""
    model = getattr(_local, "model", None)
    if model is None:
        from silero_vad import load_silero_vad

        model = _local.model = load_silero_vad()
    return model


def _chunks(samples: np.ndarray) -> int:
    return -(-len(samples) // CHUNK)


def _score_rows(signals: list[np.ndarray]) -> list[np.ndarray]:
    """Each signal's chunk probabilities, the signals scored as rows of one batch."""
    import torch

    steps = max(_chunks(x) for x in signals)
    rows = np.zeros((len(signals), steps * CHUNK), np.float32)
    for r, x in enumerate(signals):
        rows[r, :len(x)] = x
    x = torch.from_numpy(rows.reshape(len(signals), steps, CHUNK))
    out = np.empty((len(signals), steps), np.float32)
    model = _model()
    # no TorchScript optimisation passes: as fast once warm, without their first-call cost
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        model.reset_states()
        for t in range(steps):
            out[:, t] = model(x[:, t], RATE).reshape(-1).numpy()
    return [out[r, :_chunks(s)] for r, s in enumerate(signals)]


def silero_probs_many(signals: list[np.ndarray], rows: int = ROWS,
                      spread: float = SPREAD) -> list[np.ndarray]:
    """Speech probability of each 512-sample chunk of each mono 16 kHz signal (a last partial
    chunk zero-padded): ``(ceil(n / 512),)`` float32 each. Signals are scored ``rows`` at a
    time, the longest of a batch at most ``spread`` times the shortest."""
    out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(signals)
    order = [i for i in sorted(range(len(signals)), key=lambda i: len(signals[i]))
             if len(signals[i])]
    group: list[int] = []
    for i in order + [None]:
        if group and (i is None or len(group) == rows
                      or _chunks(signals[i]) > spread * _chunks(signals[group[0]])):
            for j, probs in zip(group, _score_rows([signals[j] for j in group])):
                out[j] = probs
            group = []
        if i is not None:
            group.append(i)
    return out


def regions_from_probs(probs: np.ndarray, n_samples: int) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech marked by chunk ``probs`` (hysteresis, minimum
    speech and silence, padding; see the module), in order, not overlapping."""
    low = THRESHOLD - 0.15
    min_silence = int(MIN_SILENCE_S * RATE)
    raw: list[list[int]] = []
    start = quiet_from = None
    for i, p in enumerate(probs):
        at = i * CHUNK
        if p >= THRESHOLD:
            if start is None:
                start = at
            quiet_from = None
        elif start is not None and p < low:
            if quiet_from is None:
                quiet_from = at
            if at - quiet_from >= min_silence:
                raw.append([start, quiet_from])
                start = quiet_from = None
    if start is not None:
        raw.append([start, n_samples])
    pad = int(PAD_S * RATE)
    out: list[list[int]] = []
    for a, b in raw:
        if b - a < MIN_SPEECH_S * RATE:
            continue
        a, b = max(0, a - pad), min(n_samples, b + pad)
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def silero_regions_many(signals: list[np.ndarray]) -> list[list[tuple[float, float]]]:
    """(start_s, end_s) of the speech in each mono 16 kHz signal, scored together."""
    probs = silero_probs_many([x if len(x) >= CHUNK else x[:0] for x in signals])
    return [[(a / RATE, b / RATE) for a, b in regions_from_probs(p, len(x))]
            for p, x in zip(probs, signals)]
