"""Speech detection: which parts of a mono 16 kHz signal are speech.

Three detectors, chosen per database (``AudioPolicy.vad``, recorded in the store):

* ``silero``: Silero VAD (the ``silero-vad`` package; its model ships in the wheel). Non-speech
  is dropped before the signal is cut into segments, so the speech seconds drive the duration
  gates. The default for a network embedder (``default_vad``).
* ``energy``: 25 ms frames above the policy's silence floor (-60 dBFS) are signal. Nothing is
  cut out before segmentation. The default for the test embedders, whose generated signals are
  not speech, and what a database that records no choice was made with.
* ``none``: every frame that is not digital silence is signal.
"""

from __future__ import annotations

import numpy as np

from speakerdb.errors import UsageError

__all__ = ["VADS", "LEGACY_VAD", "default_vad", "NONE_FLOOR_DBFS", "check_vad", "speech_regions",
           "silero_regions", "silero_regions_many", "keep_speech", "silero_available"]

VADS = ("silero", "energy", "none")
LEGACY_VAD = "energy"  # what a database that records no choice was made with
NONE_FLOOR_DBFS = -200.0  # the silence floor of ``none``: only digital silence is not signal
ENERGY_MIN_GAP_S = 0.3  # energy regions: pauses shorter than this stay inside a region
ENERGY_MIN_REGION_S = 0.1  # energy regions shorter than this are dropped


def check_vad(vad) -> str:
    """``vad`` if it names a detector, else a UsageError; ``silero`` without its package
    installed is a UsageError saying how to install it."""
    if vad not in VADS:
        raise UsageError(f"vad {vad!r}: choose one of {', '.join(VADS)}", option="vad")
    if vad == "silero" and not silero_available():
        raise UsageError("vad 'silero' needs the silero-vad package: "
                         "pip install silero-vad", option="vad")
    return vad


def default_vad(embedder) -> str:
    """The detector a new database for ``embedder`` cuts with unless told: the embedder's own
    ``default_vad`` (``silero`` for the networks), else ``energy``."""
    return getattr(embedder, "default_vad", "energy")


def silero_available() -> bool:
    from importlib.util import find_spec

    return find_spec("silero_vad") is not None


def _energy_regions(samples: np.ndarray, rate: int, floor_dbfs: float) -> list[tuple[float, float]]:
    from speakerdb.audio import FRAME_S, frame_rms

    above = frame_rms(samples, rate) > 10.0 ** (floor_dbfs / 20.0)
    regions: list[list[float]] = []
    for i in np.flatnonzero(above):
        a, b = i * FRAME_S, (i + 1) * FRAME_S
        if regions and a - regions[-1][1] < ENERGY_MIN_GAP_S:
            regions[-1][1] = b
        else:
            regions.append([a, b])
    return [(a, b) for a, b in regions if b - a >= ENERGY_MIN_REGION_S]


def speech_regions(samples: np.ndarray, rate: int, vad: str,
                   floor_dbfs: float = -60.0) -> list[tuple[float, float]]:
    """(start_s, end_s) of the speech in mono ``samples``, in order, not overlapping.
    ``energy``/``none``: runs of frames above ``floor_dbfs`` (``none``: above digital
    silence), pauses under 0.3 s bridged."""
    if vad == "silero":
        return silero_regions(samples, rate)
    return _energy_regions(samples, rate, NONE_FLOOR_DBFS if vad == "none" else floor_dbfs)


def silero_regions(samples: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """(start_s, end_s) of the speech in mono 16 kHz ``samples`` by Silero VAD."""
    return silero_regions_many([samples], rate)[0]


def silero_regions_many(signals: list[np.ndarray], rate: int) -> list[list[tuple[float, float]]]:
    """``silero_regions`` of each signal, scored together (``audio.silero``)."""
    check_vad("silero")
    if rate != 16000:
        raise ValueError("silero regions need 16 kHz samples")
    from speakerdb.audio import silero

    return silero.silero_regions_many(signals)


def keep_speech(samples: np.ndarray, rate: int,
                regions: list[tuple[float, float]] | None = None) -> np.ndarray:
    """The speech of ``samples`` by Silero VAD (or in ``regions``, found before), joined (an
    empty array when there is none)."""
    if regions is None:
        regions = silero_regions(samples, rate)
    parts = [samples[int(a * rate): int(b * rate)] for a, b in regions]
    return np.concatenate(parts).astype(np.float32, copy=False) if parts \
        else np.zeros(0, np.float32)
