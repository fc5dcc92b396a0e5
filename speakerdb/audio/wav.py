"""Writing WAV files in memory, byte for byte the same for the same samples (libsndfile's
writer adds a time-stamped PEAK chunk, so it is not used)."""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["wav_bytes"]


def wav_bytes(samples, rate: int, *, pcm16: bool = False) -> bytes:
    """A WAV file of ``samples`` ((n,) or (n, channels), float in [-1, 1]) whose header
    declares ``rate`` Hz (any rate, also those libsndfile refuses to write): 32-bit float, or
    16-bit PCM (clipped to [-1, 1], rounded) with ``pcm16``."""
    a = np.asarray(samples)
    if pcm16:
        a = np.round(np.clip(a, -1, 1) * 32767).astype("<i2")
        tag, width = 1, 2
    else:
        a = a.astype("<f4", copy=False)
        tag, width = 3, 4
    channels = 1 if a.ndim == 1 else a.shape[1]
    data = np.ascontiguousarray(a).tobytes()
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * width,
                      channels * width, 8 * width)
    return b"".join([b"RIFF", struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)), b"WAVE",
                     b"fmt ", struct.pack("<I", len(fmt)), fmt,
                     b"data", struct.pack("<I", len(data)), data])
