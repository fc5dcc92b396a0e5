"""Kaldi-compatible log-mel filter bank in plain torch (the CAM++ front end).

Matches ``torchaudio.compliance.kaldi.fbank(wave, num_mel_bins=80, sample_frequency=16000,
dither=0)`` and kaldi-native-fbank with the same options: 25 ms frames every 10 ms with
``snip_edges`` (T = 1 + (n - 400) // 160, or 0 when n < 400), per-frame DC removal,
pre-emphasis 0.97 (the first sample uses itself as predecessor), povey window, FFT size 512,
power spectrum, 80 triangular mel filters (mel = 1127 ln(1 + f/700)) from 20 Hz to the
Nyquist frequency, ``log(max(energy, float32 eps))``.

The waveform is used as given: floats in [-1, 1] (int16 / 32768), NOT rescaled to int16 range.
Computation is float32 unless the input is float64 (or ``dtype=torch.float64`` is asked).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

__all__ = ["SAMPLE_RATE", "NUM_MEL_BINS", "FRAME_LENGTH", "FRAME_SHIFT", "N_FFT",
           "LOG_FLOOR", "num_frames", "fbank", "fbank_lean", "mean_normalise", "mel_banks",
           "povey_window"]

SAMPLE_RATE = 16000
NUM_MEL_BINS = 80
FRAME_LENGTH = 400
"""Samples per frame (25 ms)."""
FRAME_SHIFT = 160
"""Samples between frame starts (10 ms)."""
N_FFT = 512
PREEMPH = 0.97
LOW_FREQ = 20.0
LOG_FLOOR = float(torch.finfo(torch.float32).eps)
"""1.1920929e-07, the floor applied before the log (ln = -15.9424)."""


def num_frames(n: int) -> int:
    """Frames produced from ``n`` samples (snip_edges): ``1 + (n - 400) // 160``, 0 if n < 400."""
    return 0 if n < FRAME_LENGTH else 1 + (n - FRAME_LENGTH) // FRAME_SHIFT


def _mel(f):
    return 1127.0 * math.log1p(f / 700.0)


@lru_cache(maxsize=1)
def _mel_banks64() -> torch.Tensor:
    """(80, 256) float64 Kaldi mel weights over FFT bins 0..255 (the Nyquist bin is unused)."""
    n_bins = N_FFT // 2
    bin_hz = SAMPLE_RATE / N_FFT
    lo, hi = _mel(LOW_FREQ), _mel(SAMPLE_RATE / 2)
    delta = (hi - lo) / (NUM_MEL_BINS + 1)
    mel = 1127.0 * torch.log1p(torch.arange(n_bins, dtype=torch.float64) * bin_hz / 700.0)
    b = torch.arange(NUM_MEL_BINS, dtype=torch.float64)[:, None]
    left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    w = torch.where(mel <= centre, up, down)
    return torch.where((mel > left) & (mel < right), w, torch.zeros(()).double())


def mel_banks(dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """(80, 256) mel filter weights in ``dtype`` on ``device``."""
    return _mel_banks64().to(device=device, dtype=dtype, copy=True)


@lru_cache(maxsize=1)
def _povey64() -> torch.Tensor:
    i = torch.arange(FRAME_LENGTH, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * i / (FRAME_LENGTH - 1))).pow(0.85)


def povey_window(dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """(400,) Kaldi povey window: (0.5 - 0.5 cos(2 pi i / 399)) ** 0.85."""
    return _povey64().to(device=device, dtype=dtype, copy=True)


def fbank(wave: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Log-mel fbank of ``wave`` (n,) or (B, n) at 16 kHz → (B, T, 80), T = num_frames(n).

    ``dtype``: float32 or float64; default float64 for float64 input, else float32.
    Inputs shorter than one frame (n < 400) give T = 0 frames."""
    if wave.dim() == 1:
        wave = wave[None]
    if wave.dim() != 2:
        raise ValueError(f"fbank expects (n,) or (B, n) samples, got shape {tuple(wave.shape)}")
    if dtype is None:
        dtype = torch.float64 if wave.dtype == torch.float64 else torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"fbank computes in float32 or float64, not {dtype}")
    wave = wave.to(dtype)
    b, n = wave.shape
    t = num_frames(n)
    if t == 0:
        return wave.new_zeros((b, 0, NUM_MEL_BINS))
    frames = wave.unfold(-1, FRAME_LENGTH, FRAME_SHIFT)            # (B, T, 400), a view
    frames = frames - frames.mean(dim=-1, keepdim=True)           # DC removal (copies)
    prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = (frames - PREEMPH * prev) * povey_window(dtype, wave.device)
    spec = torch.fft.rfft(frames, n=N_FFT)                        # (B, T, 257) complex
    power = torch.view_as_real(spec[..., : N_FFT // 2]).pow(2).sum(-1)   # (B, T, 256)
    mel = torch.matmul(power, mel_banks(dtype, wave.device).T)   # (B, T, 80)
    return mel.clamp_min(LOG_FLOOR).log()


def fbank_lean(wave: torch.Tensor, window: torch.Tensor, mel_t: torch.Tensor) -> torch.Tensor:
    """``fbank(wave)`` for float32 (B, n ≥ 400) input in fewer passes over the frames: the
    pre-emphasised frames are written into a zero-padded (B, T, 512) buffer (no padding copy
    inside the FFT), the power spectrum is ``re² + im²`` of the 256 used bins.

    ``window``: ``povey_window()`` (400,); ``mel_t``: ``mel_banks().T.contiguous()`` (256, 80),
    both on the waveform's device (callers keep them as buffers). No checks: this is the inner
    loop of the optimised models; ``fbank`` is the reference."""
    frames = wave.unfold(-1, FRAME_LENGTH, FRAME_SHIFT)               # (B, T, 400), a view
    frames = frames - frames.mean(dim=-1, keepdim=True)
    buf = frames.new_empty((*frames.shape[:-1], N_FFT))
    buf[..., FRAME_LENGTH:].zero_()
    torch.sub(frames[..., 1:], frames[..., :-1], alpha=PREEMPH, out=buf[..., 1:FRAME_LENGTH])
    torch.mul(frames[..., :1], 1.0 - PREEMPH, out=buf[..., :1])
    buf[..., :FRAME_LENGTH] *= window
    spec = torch.fft.rfft(buf)[..., : N_FFT // 2]                     # (B, T, 256) complex
    power = spec.real.square() + spec.imag.square()
    return torch.matmul(power, mel_t).clamp_min_(LOG_FLOOR).log_()


def mean_normalise(feats: torch.Tensor) -> torch.Tensor:
    """Subtract each bin's mean over time: (B, T, F) or (T, F) → same shape."""
    return feats - feats.mean(dim=-2, keepdim=True)
