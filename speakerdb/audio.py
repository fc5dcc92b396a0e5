"""The single audio input layer: decode any supported input, mix to mono, resample to 16 kHz,
check that there is enough signal, and cut long audio into segments.

Every failure is an ``AudioError`` (or its subclasses ``TooShortError`` / ``SilentAudioError``)
whose one-line message starts with the input's name; no soundfile, PyAV or OS exception escapes.
soundfile, soxr and PyAV are imported only when used.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from speakerdb.errors import AudioError, SilentAudioError, TooShortError

__all__ = [
    "TARGET_RATE",
    "FRAME_S",
    "Waveform",
    "AudioInput",
    "AudioPolicy",
    "Segment",
    "Prepared",
    "describe",
    "decode",
    "load",
    "signal_seconds",
    "check_signal",
    "segment",
    "prepare",
]

TARGET_RATE = 16000  # Hz: the rate every model input has
FRAME_S = 0.025  # s: frame length of the silence measure
NOT_AUDIO = "not audio (no known audio format)"  # what neither libsndfile nor FFmpeg can open


@dataclass(frozen=True)
class Waveform:
    """Decoded audio: ``samples`` float32 in [-1, 1], shape (n,) mono or (n, channels);
    ``sample_rate`` in Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


AudioInput = str | os.PathLike | BinaryIO | Waveform
"""What the audio functions accept:

* ``str`` or ``os.PathLike``: path of an audio file (wav, flac, ogg, mp3, ... via soundfile;
  m4a/AAC, mp4 and whatever else FFmpeg reads via PyAV);
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


def describe(x: AudioInput) -> str:
    """The name errors and results use: the path as given, a file object's ``.name`` or
    ``"<stream>"``, ``"<waveform>"``."""
    if isinstance(x, Waveform):
        return "<waveform>"
    if isinstance(x, (str, os.PathLike)):
        return os.fsdecode(x)
    n = getattr(x, "name", None)
    if isinstance(n, (str, os.PathLike)):
        return os.fsdecode(n)
    if hasattr(x, "read"):
        return "<stream>"
    return f"<{type(x).__name__}>"


class _Unreadable(Exception):
    def __init__(self, reason: str, opened: bool):
        super().__init__(reason)
        self.reason, self.opened = reason, opened


def _short(e: BaseException) -> str:
    """A short one-line reason from a foreign exception."""
    text = getattr(e, "error_string", None) or getattr(e, "strerror", None) or str(e)
    text = " ".join(str(text).split()) or type(e).__name__
    if text.startswith("Error opening") and ": " in text:
        text = text.split(": ", 1)[1]
    return text.rstrip(".")[:120]


def _read_soundfile(src) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, rate = sf.read(src, dtype="float32", always_2d=True)
    return data, int(rate)


def _read_av(src) -> tuple[np.ndarray, int]:
    """(n, channels) float32 and the rate, decoded by FFmpeg; raises _Unreadable."""
    try:
        import av

        container = av.open(src, mode="r")
    except Exception as e:  # noqa: BLE001 - anything FFmpeg says means "cannot open"
        raise _Unreadable(_short(e), opened=False) from None
    try:
        with container:
            if not container.streams.audio:
                raise _Unreadable("no audio stream", opened=True)
            stream = container.streams.audio[0]
            chunks, rate, resampler = [], 0, None
            for frame in container.decode(stream):
                if resampler is None:
                    rate = frame.sample_rate
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            if resampler is not None:
                chunks += [f.to_ndarray() for f in resampler.resample(None)]
    except _Unreadable:
        raise
    except Exception as e:  # noqa: BLE001
        raise _Unreadable(_short(e), opened=True) from None
    if not chunks:
        return np.zeros((0, 1), np.float32), rate or 1
    return np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False), int(rate)


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


_HEAD_BYTES = 65536


def _check_header(head: bytes, size: int, name: str) -> None:
    from speakerdb.riff import wav_truncation

    reason = wav_truncation(head, size)
    if reason:
        raise AudioError(name, reason)


def decode(x: AudioInput, name: str | None = None) -> Waveform:
    """Decode ``x`` at its own rate and channel count: samples float32, (n,) for mono or
    (n, channels). Files are read by soundfile first, then by PyAV. Raises ``AudioError``."""
    name = describe(x) if name is None else name
    if isinstance(x, Waveform):
        return _from_waveform(x, name)
    if isinstance(x, (str, os.PathLike)):
        path = os.fsdecode(x)
        try:
            st = os.stat(path)
            if os.path.isdir(path):
                raise AudioError(name, "not a readable audio file (is a directory)")
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            raise AudioError(name, "no such file") from None
        except OSError as e:
            raise AudioError(name, f"cannot read ({_short(e)})") from None
        if st.st_size == 0:
            raise AudioError(name, "empty file (0 bytes)")
        try:
            with open(path, "rb") as fh:
                head = fh.read(_HEAD_BYTES)
        except OSError as e:
            raise AudioError(name, f"cannot read ({_short(e)})") from None
        _check_header(head, st.st_size, name)
        sources = (path, path)
    elif hasattr(x, "read"):
        try:
            data = x.read()
        except Exception as e:  # noqa: BLE001
            raise AudioError(name, f"cannot read ({_short(e)})") from None
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AudioError(name, "file object must be opened in binary mode")
        if len(data) == 0:
            raise AudioError(name, "empty file (0 bytes)")
        _check_header(bytes(data[:_HEAD_BYTES]), len(data), name)
        sources = (io.BytesIO(data), io.BytesIO(data))
    else:
        raise TypeError(f"cannot read audio from {type(x).__name__}; expected a path, "
                        "a binary file object or a Waveform")
    try:
        if isinstance(sources[0], str):  # by content, not by name: libsndfile would take a
            with open(sources[0], "rb") as fh:  # ".mp3" for MPEG and its decoder would
                samples, rate = _read_soundfile(fh)  # print "Note: ..." lines on stderr
        else:
            samples, rate = _read_soundfile(sources[0])
    except Exception as sf_error:  # noqa: BLE001 - soundfile cannot read it: try FFmpeg
        try:
            samples, rate = _read_av(sources[1])
        except _Unreadable as e:
            if not e.opened:  # no decoder knows the format: libsndfile's own words mislead
                raise AudioError(name, NOT_AUDIO) from None  # ("File does not exist", ...)
            raise AudioError(name, f"not a readable audio file ({e.reason})") from None
    if samples.shape[0] == 0:
        raise AudioError(name, "no audio samples")
    if samples.shape[1] == 1:
        samples = samples[:, 0]
    return Waveform(np.ascontiguousarray(samples, dtype=np.float32), rate)


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    import soxr

    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)


def _mono(w: Waveform, name: str) -> np.ndarray:
    s = w.samples
    if not np.isfinite(s).all():
        raise AudioError(name, "contains NaN or infinite samples")
    return s.mean(axis=1, dtype=np.float32) if s.ndim == 2 else s


def load(x: AudioInput, *, sample_rate: int = TARGET_RATE, name: str | None = None) -> Waveform:
    """Decode ``x``, mix down to mono (mean of the channels), reject NaN/inf and resample (soxr
    HQ) to ``sample_rate`` Hz. Returns a (n,) float32 ``Waveform``. Raises ``AudioError``."""
    name = describe(x) if name is None else name
    w = decode(x, name)
    return Waveform(_resample(_mono(w, name), w.sample_rate, sample_rate), sample_rate)


def _frame_rms(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS of each complete, non-overlapping 25 ms frame of mono ``samples``."""
    size = max(1, int(round(FRAME_S * sample_rate)))
    n = len(samples) // size
    frames = np.asarray(samples[: n * size], dtype=np.float32).reshape(n, size)
    return np.sqrt(np.mean(np.square(frames), axis=1, dtype=np.float64))


def signal_seconds(samples: np.ndarray, sample_rate: int, silence_dbfs: float) -> float:
    """Seconds of signal in mono ``samples``: the total length of complete non-overlapping
    25 ms frames whose RMS is above ``silence_dbfs`` (dBFS, full scale = 1.0)."""
    rms = _frame_rms(samples, sample_rate)
    size = max(1, int(round(FRAME_S * sample_rate)))
    return int(np.count_nonzero(rms > 10.0 ** (silence_dbfs / 20.0))) * size / sample_rate


def check_signal(samples: np.ndarray, sample_rate: int, policy: AudioPolicy, name: str) -> None:
    """Raise ``SilentAudioError`` when no 25 ms frame is above the silence floor and
    ``TooShortError`` when there is less than ``policy.min_signal_s`` of signal (audio shorter
    than one frame is too short, not silent)."""
    rms = _frame_rms(samples, sample_rate)
    if len(rms) and not np.any(rms > 10.0 ** (policy.silence_dbfs / 20.0)):
        raise SilentAudioError(name, f"silent (no signal above {policy.silence_dbfs:g} dBFS)")
    got = signal_seconds(samples, sample_rate, policy.silence_dbfs)
    if got < policy.min_signal_s:
        raise TooShortError(name, f"too short: {got:.2f} s of signal, need {policy.min_signal_s} s")


def _bounds(n: int, rate: int, policy: AudioPolicy) -> list[tuple[int, int]]:
    """Sample ranges of the segments of ``n`` samples at ``rate`` Hz."""
    piece = int(round(policy.segment_s * rate))
    if n / rate <= policy.max_segment_s or piece <= 0 or n < piece:
        return [(0, n)]
    bounds = [(i, i + piece) for i in range(0, n - piece + 1, piece)]
    rest = n - bounds[-1][1]
    if rest > 0:
        if rest < piece / 2:
            bounds[-1] = (bounds[-1][0], n)
        else:
            bounds.append((bounds[-1][1], n))
    return bounds


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
    out = []
    for a, b in _bounds(len(s), rate, policy):
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
            name: str | None = None) -> Prepared:
    """Decode once, mix to mono, resample to ``TARGET_RATE``, check the whole signal
    (``TooShortError`` / ``SilentAudioError``) and segment. Raises ``AudioError``."""
    name = describe(x) if name is None else name
    w = decode(x, name)
    channels = 1 if w.samples.ndim == 1 else w.samples.shape[1]
    mono = Waveform(_resample(_mono(w, name), w.sample_rate, TARGET_RATE), TARGET_RATE)
    check_signal(mono.samples, TARGET_RATE, policy, name)
    return Prepared(
        name=name,
        duration_s=w.duration_s,
        sample_rate=w.sample_rate,
        channels=channels,
        segments=segment(mono, policy, name=name),
    )
