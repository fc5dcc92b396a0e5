"""The single audio input layer: decode any supported input, mix to mono, resample to 16 kHz,
check that there is enough signal, and cut long audio into segments.

Every failure is an ``AudioError`` (or its subclasses ``TooShortError`` / ``SilentAudioError``)
whose one-line message starts with the input's name; no soundfile, PyAV or OS exception escapes.
soundfile, soxr and PyAV are imported only when used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from speakerdb.errors import AudioError, SilentAudioError, TooShortError

# the submodule ``decode`` is loaded first: loading it later would rebind the package's name
# ``decode`` from the function below to the module (light: numpy and errors only)
from speakerdb.audio import decode as _decode_module  # noqa: E402, F401

__all__ = [
    "TARGET_RATE",
    "FRAME_S",
    "MAX_DURATION_S",
    "Waveform",
    "AudioInput",
    "AudioPolicy",
    "with_vad",
    "Segment",
    "Prepared",
    "describe",
    "open_input",
    "decode",
    "load",
    "frame_rms",
    "signal_seconds",
    "check_signal",
    "segment_bounds",
    "cut_pieces",
    "segment",
    "prepare",
]

TARGET_RATE = 16000  # Hz: the rate every model input has
FRAME_S = 0.025  # s: frame length of the silence measure
MAX_DURATION_S = 4 * 3600.0  # s: the default limit on one input (VoxCeleb, meetings)


@dataclass(frozen=True)
class Waveform:
    """Decoded audio: ``samples`` float32 in [-1, 1], shape (n,) mono or (n, channels);
    ``sample_rate`` in Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


AudioInput = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Waveform
"""What the audio functions accept (checked by ``inputs.audio_input``, which also takes its own
``AudioSource``):

* ``str`` or ``os.PathLike``: path of an audio file (wav, flac, ogg, mp3, ... via soundfile;
  m4a/AAC, mp4 and whatever else FFmpeg reads via PyAV);
* ``bytes``, ``bytearray`` or ``memoryview``: the bytes of such a file;
* a binary file object (``open(p, "rb")``, ``io.BytesIO``): read from its current position;
* ``Waveform``: samples already in memory (float arrays as they are, integer arrays scaled to
  [-1, 1], e.g. int16 / 32768).
"""


@dataclass(frozen=True)
class AudioPolicy:
    """How much signal is enough and how long audio is cut. Durations in seconds."""

    min_signal_s: float = 0.5  # less signal than this -> TooShortError
    silence_dbfs: float = -60.0  # 25 ms frames with RMS below this (dBFS) are not signal
    max_segment_s: float = 30.0  # audio up to this long stays one segment
    segment_s: float = 10.0  # longer audio is cut into consecutive pieces this long
    max_duration_s: float | None = MAX_DURATION_S  # longer inputs -> TooLongError (None: any)
    vad: str = "energy"  # speech detection (audio.vad): silero, energy or none; see with_vad


def with_vad(policy: AudioPolicy, vad: str) -> AudioPolicy:
    """``policy`` cutting with the speech detector ``vad`` (``audio.vad.VADS``): ``none``
    lowers the silence floor to digital silence, the others keep -60 dBFS."""
    from dataclasses import replace

    from speakerdb.audio.vad import NONE_FLOOR_DBFS, check_vad

    floor = NONE_FLOOR_DBFS if check_vad(vad) == "none" else AudioPolicy.silence_dbfs
    return replace(policy, vad=vad, silence_dbfs=floor)


@dataclass(frozen=True)
class Segment:
    """A piece of the input: ``start_s``/``end_s`` offsets in seconds from the start of the
    input; ``samples`` (n,) float32 mono at ``TARGET_RATE``."""

    start_s: float
    end_s: float
    samples: np.ndarray


@dataclass(frozen=True)
class Prepared:
    """One input ready for the model (what ingest and identify get)."""

    name: str  # describe(input), or the name given
    duration_s: float  # seconds of the whole decoded audio
    sample_rate: int  # Hz, the ORIGINAL rate of the source
    channels: int  # channels of the source
    segments: list[Segment]  # mono, TARGET_RATE, at least one
    signal_s: float | None = None  # seconds of signal in the segments, when their samples
    # were dropped after embedding (ingest of long inputs); None: measure ``segments``


def describe(x: AudioInput) -> str:
    """The name errors and results use: the path as given (``names.display_name``: valid
    UTF-8 whatever its bytes), a file object's ``.name`` or ``"<stream>"``, ``"<waveform>"``,
    ``"<bytes>"``; an ``inputs.AudioSource``'s own name."""
    if isinstance(x, Waveform):
        return "<waveform>"
    from speakerdb.audio.inputs import AudioSource
    from speakerdb.audio.names import display_name

    if isinstance(x, AudioSource):
        return x.name

    if isinstance(x, (str, os.PathLike)):
        return display_name(x)
    n = getattr(x, "name", None)
    if isinstance(n, (str, bytes, os.PathLike)):
        return display_name(n)
    if hasattr(x, "read"):
        return "<stream>"
    return f"<{type(x).__name__}>"


def _from_waveform(w: Waveform, name: str) -> Waveform:
    a = np.asarray(w.samples)
    rate = w.sample_rate
    try:
        ok = not isinstance(rate, bool) and float(rate).is_integer() and rate > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise AudioError(name, f"sample rate must be a positive integer, got {rate!r}")
    if a.ndim not in (1, 2) or (a.ndim == 2 and not 1 <= a.shape[1] <= 64):
        raise AudioError(name, f"samples must have shape (n,) or (n, channels), got {a.shape}")
    if a.dtype == np.uint8:
        a = (a.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(a.dtype, np.signedinteger):
        a = a.astype(np.float32) / float(-np.iinfo(a.dtype).min)
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32, copy=False)
    else:
        raise AudioError(name, f"unsupported sample type {a.dtype}")
    if a.shape[0] == 0:
        raise AudioError(name, "no audio samples")
    return Waveform(np.ascontiguousarray(a), int(rate))


def open_input(x: AudioInput, name: str, max_duration_s: float | None = None):
    """``decode.Blocks`` of ``x``: its rate, channels and (n, channels) float32 blocks. A rate
    below ``decode.MIN_RATE`` or more than ``max_duration_s`` seconds is an ``AudioError``; so
    is an input ``inputs.audio_input`` refuses."""
    from speakerdb.audio.decode import Blocks, check_rate, open_blocks, too_long
    from speakerdb.audio.inputs import audio_input

    src = audio_input(x, name)
    if src.waveform is not None:
        w = _from_waveform(src.waveform, name)
        check_rate(w.sample_rate, name)
        if max_duration_s is not None and len(w.samples) > int(max_duration_s * w.sample_rate):
            raise too_long(name, max_duration_s, w.duration_s)
        a = w.samples if w.samples.ndim == 2 else w.samples[:, None]
        return Blocks(w.sample_rate, a.shape[1], iter([a]))
    return open_blocks(src, name, max_duration_s)


def decode(x: AudioInput, name: str | None = None, *,
           max_duration_s: float | None = None) -> Waveform:
    """Decode ``x`` at its own rate and channel count: samples float32, (n,) for mono or
    (n, channels). Files are read by soundfile first, then by PyAV. Raises ``AudioError``."""
    name = describe(x) if name is None else name
    src = open_input(x, name, max_duration_s)
    blocks = list(src.blocks)
    if sum(len(b) for b in blocks) == 0:
        raise AudioError(name, "no audio samples")
    samples = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    if samples.shape[1] == 1:
        samples = samples[:, 0]
    return Waveform(np.ascontiguousarray(samples, dtype=np.float32), src.rate)


def load(x: AudioInput, *, sample_rate: int = TARGET_RATE, name: str | None = None,
         max_duration_s: float | None = None) -> Waveform:
    """Decode ``x``, mix down to mono (mean of the channels), reject NaN/inf and resample (soxr
    HQ) to ``sample_rate`` Hz, a block at a time. Returns a (n,) float32 ``Waveform``. Raises
    ``AudioError``."""
    from speakerdb.audio.stream import mono_blocks

    name = describe(x) if name is None else name
    src = open_input(x, name, max_duration_s)
    out = list(mono_blocks(src, name, sample_rate))
    return Waveform(out[0] if len(out) == 1 else np.concatenate(out), sample_rate)



def frame_rms(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS of each complete, non-overlapping 25 ms frame of mono ``samples``."""
    size = max(1, int(round(FRAME_S * sample_rate)))
    n = len(samples) // size
    frames = np.asarray(samples[: n * size], dtype=np.float32).reshape(n, size)
    return np.sqrt(np.mean(np.square(frames), axis=1, dtype=np.float64))


def signal_seconds(samples: np.ndarray, sample_rate: int, silence_dbfs: float) -> float:
    """Seconds of signal in mono ``samples``: the total length of complete non-overlapping
    25 ms frames whose RMS is above ``silence_dbfs`` (dBFS, full scale = 1.0)."""
    rms = frame_rms(samples, sample_rate)
    size = max(1, int(round(FRAME_S * sample_rate)))
    return int(np.count_nonzero(rms > 10.0 ** (silence_dbfs / 20.0))) * size / sample_rate


def check_signal(samples: np.ndarray, sample_rate: int, policy: AudioPolicy, name: str) -> None:
    """Raise ``SilentAudioError`` when no 25 ms frame is above the silence floor and
    ``TooShortError`` when there is less than ``policy.min_signal_s`` of signal (audio shorter
    than one frame is too short, not silent)."""
    rms = frame_rms(samples, sample_rate)
    if len(rms) and not np.any(rms > 10.0 ** (policy.silence_dbfs / 20.0)):
        raise SilentAudioError(name, f"silent (no signal above {policy.silence_dbfs:g} dBFS)")
    got = signal_seconds(samples, sample_rate, policy.silence_dbfs)
    if got < policy.min_signal_s:
        raise TooShortError(name, f"too short: {got:.2f} s of signal, need {policy.min_signal_s} s")


def segment_bounds(n: int, rate: int, policy: AudioPolicy) -> list[tuple[int, int]]:
    """Sample ranges of the segments of ``n`` samples at ``rate`` Hz."""
    piece = int(round(policy.segment_s * rate))
    if n / rate <= policy.max_segment_s or piece <= 0 or n < piece:
        return [(0, n)]
    return cut_pieces(n, piece)


def cut_pieces(n: int, piece: int) -> list[tuple[int, int]]:
    """``n >= piece`` samples cut into pieces of ``piece``; a remainder shorter than half a
    piece joins the last one."""
    bounds = [(i, i + piece) for i in range(0, n - piece + 1, piece)]
    rest = n - bounds[-1][1]
    if rest > 0:
        if rest < piece / 2:
            bounds[-1] = (bounds[-1][0], n)
        else:
            bounds.append((bounds[-1][1], n))
    return bounds


def only_speech(samples: np.ndarray, rate: int, name: str,
                regions: list[tuple[float, float]] | None = None) -> np.ndarray:
    """The speech of mono ``samples`` (Silero VAD, or ``regions`` it found before), joined;
    ``SilentAudioError`` when there is none. ``rate`` must be ``TARGET_RATE``."""
    from speakerdb.audio.vad import keep_speech

    speech = keep_speech(np.asarray(samples, dtype=np.float32), rate, regions)
    if len(speech) == 0:
        raise SilentAudioError(name, "no speech found (silero VAD)")
    return speech


def segment(w: Waveform, policy: AudioPolicy = AudioPolicy(), *,
            name: str = "<waveform>") -> list[Segment]:
    """Cut mono ``w`` (at its own rate) into segments; offsets in seconds.

    Audio up to ``max_segment_s`` long is one segment; longer audio is cut into consecutive
    ``segment_s`` pieces, a trailing remainder shorter than ``segment_s / 2`` joining the piece
    before it. Pieces without enough signal (``check_signal``) are dropped. If none is left, the
    error of the whole signal is raised (``TooShortError`` if the whole has enough signal but
    no single piece does).
    """
    s = w.samples if w.samples.ndim == 1 else w.samples.mean(axis=1, dtype=np.float32)
    rate = w.sample_rate
    if policy.vad == "silero":
        s = only_speech(s, rate, name)
    out = []
    for a, b in segment_bounds(len(s), rate, policy):
        try:
            check_signal(s[a:b], rate, policy, name)
        except AudioError:
            continue
        out.append(Segment(a / rate, b / rate, s[a:b]))
    if not out:
        check_signal(s, rate, policy, name)
        raise TooShortError(name, f"too short: no {policy.segment_s:g} s segment has "
                                  f"{policy.min_signal_s} s of signal")
    return out


def prepare(x: AudioInput, policy: AudioPolicy = AudioPolicy(), *,
            name: str | None = None, regions: list | None = None) -> Prepared:
    """Decode, mix to mono, resample to ``TARGET_RATE``, check the whole signal
    (``TooShortError`` / ``SilentAudioError``) and segment, a block at a time
    (``stream.Preparing``). ``regions``: the speech Silero VAD found in it before (with
    ``audio.vad.silero_regions_many``). Raises ``AudioError``."""
    from speakerdb.audio.stream import Preparing

    p = Preparing(x, policy, name=name)
    p.regions = regions
    segments = list(p)
    return Prepared(name=p.name, duration_s=p.duration_s, sample_rate=p.sample_rate,
                    channels=p.channels, segments=segments)
