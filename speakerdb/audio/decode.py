"""Reading audio in blocks: open an input (path or bytes), check what its header declares, and
yield its samples a block at a time, so that memory does not grow with the input's length.

soundfile (libsndfile) is tried first, then PyAV (FFmpeg). A sample rate below ``MIN_RATE``
and audio longer than the ``max_duration_s`` given are failures with the reason; audio past the
limit is never decoded. Every failure is an ``AudioError`` naming the input.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from speakerdb.errors import AudioError, TooLongError

NOT_AUDIO = "not audio (no known audio format)"  # what neither libsndfile nor FFmpeg can open

__all__ = ["NOT_AUDIO", "MIN_RATE", "BLOCK_FRAMES", "Blocks", "open_blocks", "check_rate", "short_reason",
           "too_long"]

MIN_RATE = 4000  # Hz: lower declared rates are broken headers, not speech
BLOCK_FRAMES = 1 << 16  # frames per block read from soundfile
_HEAD_BYTES = 65536


@dataclass
class Blocks:
    """An opened input: its rate and channel count, and ``blocks``, an iterator of
    (n, channels) float32 arrays that raises ``AudioError`` (``TooLongError`` past the limit)."""

    rate: int
    channels: int
    blocks: Iterator[np.ndarray]


class _Unreadable(Exception):
    def __init__(self, reason: str, opened: bool):
        super().__init__(reason)
        self.reason, self.opened = reason, opened


def short_reason(e: BaseException) -> str:
    """A short one-line reason from a foreign exception."""
    text = getattr(e, "error_string", None) or getattr(e, "strerror", None) or str(e)
    text = " ".join(str(text).split()) or type(e).__name__
    if text.startswith("Error opening") and ": " in text:
        text = text.split(": ", 1)[1]
    return text.rstrip(".")[:120]


def check_rate(rate, name: str) -> None:
    if rate < MIN_RATE:
        raise AudioError(name, f"sample rate {rate:g} Hz is below the {MIN_RATE} Hz floor "
                               "(a broken header, not speech)")


def too_long(name: str, limit: float, declared: float | None = None) -> TooLongError:
    if declared is not None:
        return TooLongError(name, f"too long: {declared:.1f} s of audio, the limit is "
                                  f"{limit:g} s (max_duration)")
    return TooLongError(name, f"too long: more than {limit:g} s of audio, the limit "
                              "(max_duration); the rest was not read")


def _check_header(head: bytes, size: int, name: str) -> None:
    from speakerdb.audio.riff import wav_truncation

    reason = wav_truncation(head, size)
    if reason:
        raise AudioError(name, reason)


def _sources(src, name: str):
    """What soundfile and PyAV open for ``src`` (an ``inputs.AudioSource`` with a path or
    bytes): the path (bytes for soundfile, so that any name the file system allows works) or
    one in-memory copy of the bytes."""
    if src.path is not None:
        path = src.path
        try:
            size = os.stat(path).st_size
            with open(path, "rb") as fh:
                head = fh.read(_HEAD_BYTES)
        except OSError as e:  # gone or changed since ``audio_input`` looked at it
            from speakerdb.audio.inputs import file_error

            raise file_error(name, e) from None
        if size == 0:
            raise AudioError(name, "empty file (0 bytes)")
        _check_header(head, size, name)
        return os.fsencode(path), path
    data = src.data
    if len(data) == 0:
        raise AudioError(name, "empty file (0 bytes)")
    _check_header(data[:_HEAD_BYTES], len(data), name)
    return io.BytesIO(data), io.BytesIO(data)


def open_blocks(x, name: str, max_duration_s: float | None = None) -> Blocks:
    """Open ``x``, an ``inputs.AudioSource`` with a path or bytes. Raises ``AudioError`` for
    what can be told before decoding: no such file, empty, truncated WAV, not audio, a rate
    below ``MIN_RATE``, a declared length over ``max_duration_s``."""
    for_sf, for_av = _sources(x, name)
    try:
        return _sf_blocks(for_sf, name, max_duration_s)
    except AudioError:
        raise
    except Exception:  # noqa: BLE001 - soundfile cannot read it: try FFmpeg
        try:
            return _av_blocks(for_av, name, max_duration_s)
        except _Unreadable as e:
            if not e.opened:  # no decoder knows the format: libsndfile's own words mislead
                raise AudioError(name, NOT_AUDIO) from None  # ("File does not exist", ...)
            raise AudioError(name, f"not a readable audio file ({e.reason})") from None


def _limit_frames(rate: int, max_duration_s: float | None) -> int | None:
    return None if max_duration_s is None else int(max_duration_s * rate)


def _close(fh) -> None:
    if fh is not None:
        fh.close()


def _closing(fh):
    import contextlib

    return contextlib.closing(fh) if fh is not None else contextlib.nullcontext()


def _sf_blocks(src, name: str, max_duration_s: float | None) -> Blocks:
    import soundfile as sf

    # a path is opened here and read by content, not by name: libsndfile would take a ".mp3"
    # for MPEG and its decoder would print "Note: ..." lines on stderr for what is not MPEG
    fh = open(src, "rb") if isinstance(src, (bytes, str)) else None
    try:
        f = sf.SoundFile(fh if fh is not None else src)
    except BaseException:
        _close(fh)
        raise
    try:
        rate, channels = int(f.samplerate), int(f.channels)
        check_rate(rate, name)
        limit = _limit_frames(rate, max_duration_s)
        if limit is not None and f.frames > limit:
            raise too_long(name, max_duration_s, f.frames / rate)
        if f.seekable():
            f.seek(0)  # as soundfile.read does: libsndfile's MPEG decoder starts otherwise
        # libsndfile decodes MPEG differently (and wrongly) when read in pieces: read it whole
        size = max(int(f.frames), 1) if f.format == "MP3" else BLOCK_FRAMES
    except BaseException:
        f.close()
        _close(fh)
        raise

    def blocks():
        with f, _closing(fh):
            seen = 0
            while True:
                try:
                    block = f.read(size, dtype="float32", always_2d=True)
                except Exception as e:  # noqa: BLE001
                    raise AudioError(name, f"not a readable audio file ({short_reason(e)})") \
                        from None
                if len(block) == 0:
                    return
                seen += len(block)
                if limit is not None and seen > limit:
                    raise too_long(name, max_duration_s)
                yield block

    return Blocks(rate, channels, blocks())


def _av_blocks(src, name: str, max_duration_s: float | None) -> Blocks:
    """Blocks decoded by FFmpeg (its first audio stream, as float); the rate and channels are
    those of the first decoded frame. Raises _Unreadable when it cannot open ``src``, finds no
    audio stream or cannot decode its start."""
    try:
        import av

        container = av.open(os.fsdecode(src) if isinstance(src, bytes) else src, mode="r")
    except Exception as e:  # noqa: BLE001 - anything FFmpeg says means "cannot open"
        raise _Unreadable(short_reason(e), opened=False) from None
    state = {"rate": 0, "limit": None}

    def frames():
        if not container.streams.audio:
            raise _Unreadable("no audio stream", opened=True)
        stream = container.streams.audio[0]
        resampler, seen = None, 0
        for frame in container.decode(stream):
            if resampler is None:
                state["rate"] = rate = int(frame.sample_rate)
                check_rate(rate, name)
                state["limit"] = _limit_frames(rate, max_duration_s)
                resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
            out = resampler.resample(frame)
            for f in out:
                seen += f.samples
                if state["limit"] is not None and seen > state["limit"]:
                    raise too_long(name, max_duration_s)
                yield f.to_ndarray().T
        if resampler is not None:
            for f in resampler.resample(None):
                seen += f.samples
                if state["limit"] is not None and seen > state["limit"]:
                    raise too_long(name, max_duration_s)
                yield f.to_ndarray().T

    def guarded(it):
        with container:
            try:
                yield from it
            except (AudioError, _Unreadable):
                raise
            except Exception as e:  # noqa: BLE001
                raise _Unreadable(short_reason(e), opened=True) from None

    it = guarded(frames())
    try:
        first = next(it, None)
    except BaseException:
        container.close()
        raise
    if first is None:
        return Blocks(state["rate"] or 1, 1, iter(()))

    def rest():
        yield first
        try:
            yield from it
        except _Unreadable as e:
            raise AudioError(name, f"not a readable audio file ({e.reason})") from None

    return Blocks(state["rate"], first.shape[1], rest())
