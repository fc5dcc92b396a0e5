"""ReDimNet's log-mel front end in plain torch (no torchaudio).

Input (B, n) float waveforms at 16 kHz; output (B, n_mels, 1 + n // hop_length) float32:

1. optional signal normalisation: (x - mean) / (population std + 1e-6) per utterance;
2. pre-emphasis y[n] = x[n] - 0.97 x[n-1] with x[-1] := x[1] (reflect), via the checkpoint's
   ``flipped_filter`` buffer [1, 1, 2];
3. power spectrogram: n_fft-point STFT of centred, reflect-padded frames, hop ``hop_length``,
   the checkpoint's ``window`` buffer (periodic Hamming of ``win_length``) zero-padded to n_fft
   in the middle, |X|^2;
4. mel: ``spec^T @ fb`` with the checkpoint's ``fb`` buffer [n_fft // 2 + 1, n_mels];
5. log(mel + 1e-6), then per-band normalisation over time (``mn``: mean subtraction; ``mvn``: also
   divide by the unbiased std + 1e-8; ``bn``: a BatchNorm1d in eval mode).

Always computed in float32. Buffer names follow upstream (``torchfbank.1.flipped_filter``,
``torchfbank.2.spectrogram.window``, ``torchfbank.2.mel_scale.fb``) so state dicts load as is.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["MelFrontEnd", "hamming_window", "mel_filterbank"]


def hamming_window(win_length: int) -> torch.Tensor:
    """Periodic Hamming window (win_length,) float32, as ``torch.hamming_window``."""
    return torch.hamming_window(win_length, periodic=True, dtype=torch.float32)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int = 16000, f_min: float = 20.0,
                   f_max: float = 7600.0) -> torch.Tensor:
    """HTK-scale triangular filters without area normalisation, (n_fft // 2 + 1, n_mels) float32.
    Used only to initialise a fresh model; checkpoints carry their own filter bank."""
    def hz_to_mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    all_freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    m_pts = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).to(torch.float32)


class _PreEmphasis(nn.Module):
    def __init__(self, coef: float = 0.97):
        super().__init__()
        self.register_buffer("flipped_filter", torch.tensor([[[-coef, 1.0]]], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n) -> (B, n)
        x = nn.functional.pad(x.unsqueeze(1), (1, 0), mode="reflect")
        return nn.functional.conv1d(x, self.flipped_filter).squeeze(1)


class _NormalizeSignal(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n) -> (B, n)
        return (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True, unbiased=False) + 1e-6)


class _Holder(nn.Module):
    """A module that only holds one named buffer (upstream's ``spectrogram`` / ``mel_scale``)."""

    def __init__(self, name: str, value: torch.Tensor):
        super().__init__()
        self.register_buffer(name, value)


class _MelSpectrogram(nn.Module):
    def __init__(self, n_fft: int, win_length: int, hop_length: int, n_mels: int,
                 sample_rate: int, f_min: float, f_max: float):
        super().__init__()
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.spectrogram = _Holder("window", hamming_window(win_length))
        self.mel_scale = _Holder("fb", mel_filterbank(n_fft, n_mels, sample_rate, f_min, f_max))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n) -> (B, n_mels, T)
        spec = torch.stft(x, n_fft=self.n_fft, hop_length=self.hop_length,
                          win_length=self.win_length, window=self.spectrogram.window,
                          center=True, pad_mode="reflect", normalized=False, onesided=True,
                          return_complex=True)
        power = spec.abs().pow(2.0)  # (B, n_fft // 2 + 1, T)
        return torch.matmul(power.transpose(-1, -2), self.mel_scale.fb).transpose(-1, -2)


class MelFrontEnd(nn.Module):
    """Waveforms (B, n) → normalised log-mel features (B, n_mels, 1 + n // hop_length) float32.

    spec: resolved MelBanks arguments (see ``config.resolve_spec_params``). Inputs shorter than
    ``min_samples`` raise ValueError (reflect padding and the pooling statistics need them)."""

    def __init__(self, n_mels: int, hop_length: int, spec: dict[str, Any]):
        super().__init__()
        self.n_mels, self.hop_length = n_mels, hop_length
        # reflect padding needs more than n_fft // 2 samples; >= 2 frames keep statistics finite
        self.min_samples = max(int(spec["n_fft"]) // 2 + 1, hop_length)
        self.spec_norm_kind = spec["spec_norm"]
        self.torchfbank = nn.Sequential(
            _NormalizeSignal() if spec["norm_signal"] else nn.Identity(),
            _PreEmphasis() if spec["do_preemph"] else nn.Identity(),
            _MelSpectrogram(int(spec["n_fft"]), int(spec["win_length"]), hop_length, n_mels,
                            int(spec["sample_rate"]), float(spec["f_min"]), float(spec["f_max"])),
        )
        if self.spec_norm_kind == "bn":
            self.spec_norm = nn.BatchNorm1d(n_mels)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.ndim == 3 and wave.shape[1] == 1:
            wave = wave[:, 0]
        if wave.ndim != 2:
            raise ValueError(f"expected waveforms (B, n), got shape {tuple(wave.shape)}")
        if wave.shape[-1] < self.min_samples:
            raise ValueError(f"waveform of {wave.shape[-1]} samples is too short "
                             f"(this front end needs at least {self.min_samples})")
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = self.torchfbank(wave.float())
            x = torch.log(x + 1e-6)
            if self.spec_norm_kind == "mn":
                x = x - x.mean(dim=-1, keepdim=True)
            elif self.spec_norm_kind == "mvn":
                x = (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + 1e-8)
            else:
                x = self.spec_norm(x)
        return x
