"""Preparing audio as a stream: blocks are mixed to mono, resampled (soxr's ``ResampleStream``)
and cut into segments as they arrive, so that memory holds a few segments whatever the length
of the input. The results are the same, sample for sample, as those of preparing the whole
signal at once (``audio.segment`` and ``audio.check_signal`` on the whole).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from speakerdb.audio import (FRAME_S, TARGET_RATE, AudioInput, AudioPolicy, Segment,
                             check_signal, cut_pieces, describe, frame_rms, only_speech,
                             open_input, segment_bounds)
from speakerdb.errors import AudioError, SilentAudioError, TooShortError

__all__ = ["mono_blocks", "Segmenter", "Preparing"]


def mono_blocks(src, name: str, target: int = TARGET_RATE) -> Iterator[np.ndarray]:
    """(n,) float32 blocks of ``src`` (``decode.Blocks``): the mean of its channels, resampled
    (soxr HQ) to ``target`` Hz. NaN or infinite samples and an input without samples are
    ``AudioError``s."""
    stream = None
    frames = 0
    for block in src.blocks:
        if not np.isfinite(block).all():
            raise AudioError(name, "contains NaN or infinite samples")
        if frames == 0 and src.rate != target:
            import soxr

            stream = soxr.ResampleStream(src.rate, target, 1, dtype="float32", quality="HQ")
        frames += len(block)
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if stream is not None:
            mono = stream.resample_chunk(mono, last=False)
        if len(mono):
            yield mono
    if frames == 0:
        raise AudioError(name, "no audio samples")
    if stream is not None:
        tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
        if len(tail):
            yield tail


class Segmenter:
    """Cuts mono ``TARGET_RATE`` blocks into the segments ``audio.segment`` gives for their
    concatenation. ``feed`` returns the segments that are final (with enough signal),
    ``finish`` the rest, after checking the whole signal as ``audio.check_signal`` would."""

    def __init__(self, policy: AudioPolicy, name: str, rate: int = TARGET_RATE):
        self.policy, self.name, self.rate = policy, name, rate
        self.piece = int(round(policy.segment_s * rate))
        self.frame = max(1, int(round(FRAME_S * rate)))
        self.floor = 10.0 ** (policy.silence_dbfs / 20.0)
        self.n = 0  # samples seen
        self.start = 0  # first sample not yet in an emitted segment
        self.pending: list[np.ndarray] = []  # samples from ``start`` on
        self.unmeasured = np.zeros(0, np.float32)  # samples after the last complete frame
        self.frames = self.above = 0  # complete 25 ms frames of the whole; those above the floor
        self.kept = 0

    def _measure(self, block: np.ndarray) -> None:
        x = np.concatenate([self.unmeasured, block]) if len(self.unmeasured) else block
        rms = frame_rms(x, self.rate)
        self.frames += len(rms)
        self.above += int(np.count_nonzero(rms > self.floor))
        self.unmeasured = x[len(rms) * self.frame:].copy()

    def _keep(self, a: int, b: int, samples: np.ndarray) -> list[Segment]:
        try:
            check_signal(samples, self.rate, self.policy, self.name)
        except AudioError:
            return []
        self.kept += 1
        return [Segment(a / self.rate, b / self.rate, samples)]

    def feed(self, block: np.ndarray) -> list[Segment]:
        self._measure(block)
        self.n += len(block)
        self.pending.append(block)
        out: list[Segment] = []
        piece = self.piece
        # a piece is final once the input is surely cut (longer than max_segment_s) and a
        # whole piece follows it (so it is not the last one, which may take the remainder)
        while (piece > 0 and self.n / self.rate > self.policy.max_segment_s
               and self.n >= self.start + 2 * piece):
            buf = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
            out += self._keep(self.start, self.start + piece, buf[:piece].copy())
            self.pending = [buf[piece:]]
            self.start += piece
        return out

    def finish(self) -> list[Segment]:
        """The last segments; raises ``SilentAudioError`` / ``TooShortError`` for the whole."""
        policy, name = self.policy, self.name
        if self.frames and not self.above:
            raise SilentAudioError(name, f"silent (no signal above {policy.silence_dbfs:g} dBFS)")
        got = self.above * self.frame / self.rate
        if got < policy.min_signal_s:
            raise TooShortError(name, f"too short: {got:.2f} s of signal, need "
                                      f"{policy.min_signal_s} s")
        buf = (np.concatenate(self.pending) if len(self.pending) != 1 else self.pending[0]) \
            if self.pending else np.zeros(0, np.float32)
        self.pending = []
        if self.start == 0:
            bounds = segment_bounds(self.n, self.rate, self.policy)
        else:
            bounds = cut_pieces(self.n - self.start, self.piece)
        out: list[Segment] = []
        s0 = self.start
        for a, b in bounds:
            a, b = (a, b) if self.start == 0 else (a + s0, b + s0)
            out += self._keep(a, b, buf[a - s0 : b - s0])
        if not self.kept:
            raise TooShortError(name, f"too short: no {policy.segment_s:g} s segment has "
                                      f"{policy.min_signal_s} s of signal")
        return out


class Preparing:
    """One input being prepared: ``name``, ``sample_rate`` and ``channels`` of the source are
    known at once; iterating yields its segments (mono, ``TARGET_RATE``) as they are cut and
    raises ``AudioError`` where ``audio.prepare`` would; ``duration_s`` is known at the end."""

    def __init__(self, x: AudioInput, policy: AudioPolicy = AudioPolicy(), *,
                 name: str | None = None):
        self.name = describe(x) if name is None else name
        self.policy = policy
        self._src = open_input(x, self.name, policy.max_duration_s)
        self.sample_rate, self.channels = self._src.rate, self._src.channels
        self.duration_s: float | None = None
        self.regions: list[tuple[float, float]] | None = None  # speech found beforehand
        self._frames = 0
        self._whole: np.ndarray | None = None

    def whole(self) -> np.ndarray:
        """The whole mono ``TARGET_RATE`` signal, decoded once and kept until iterated: what
        Silero VAD sees (``audio.vad.silero_regions_many`` of several inputs at once, into
        ``regions``). Raises ``AudioError``."""
        if self._whole is None:
            src = self._src
            counted = type(src)(src.rate, src.channels, self._counted())
            parts = list(mono_blocks(counted, self.name))
            self._whole = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return self._whole

    def _counted(self):
        for block in self._src.blocks:
            self._frames += len(block)
            yield block

    def __iter__(self) -> Iterator[Segment]:
        src = self._src
        cut = Segmenter(self.policy, self.name)
        if self.policy.vad == "silero":  # the detector sees the whole signal, then cuts
            whole, self._whole = self.whole(), None
            blocks = iter([only_speech(whole, TARGET_RATE, self.name, self.regions)])
        else:
            blocks = mono_blocks(type(src)(src.rate, src.channels, self._counted()), self.name)
        for block in blocks:
            yield from cut.feed(block)
        self.duration_s = self._frames / self.sample_rate
        yield from cut.finish()
