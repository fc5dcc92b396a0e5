"""A tiny deterministic embedder derived from the signal, for tests and demos without weights.

Log band energies of 25 ms / 10 ms frames (40 mel-spaced bands), their cepstra, per-coefficient
mean and log standard deviation over time, both taken relative to the same statistics of seeded
pink noise (so speech in general does not look alike), liftered, then a fixed seeded random
projection to 256-D. Same audio gives the same vector; different audio gives a different one; it
separates voices only roughly. Pure numpy: hundreds of clips per second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from speakerdb.model.prefixes import DIMS, FULL_DIM

__all__ = ["SpectralEmbedder"]

_VERSION = "speakerdb-spectral-v1"


def _mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _band_matrix(n_fft: int, rate: int, n_bands: int) -> np.ndarray:
    """(n_fft // 2 + 1, n_bands) triangular mel filters."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    edges = np.linspace(_mel(20.0), _mel(rate / 2 - 200.0), n_bands + 2)
    hz = 700.0 * (10 ** (edges / 2595.0) - 1.0)
    m = np.zeros((freqs.size, n_bands), dtype=np.float64)
    for b in range(n_bands):
        lo, mid, hi = hz[b], hz[b + 1], hz[b + 2]
        up = (freqs - lo) / (mid - lo)
        down = (hi - freqs) / (hi - mid)
        m[:, b] = np.clip(np.minimum(up, down), 0.0, None)
    return m


class SpectralEmbedder:
    """Embedder protocol implementation; see the module docstring."""

    name = "spectral"
    dims = DIMS
    raw_dim = FULL_DIM
    sample_rate = 16000
    default_threshold = 0.8

    def __init__(self, n_bands: int = 40, n_ceps: int = 24, seed: int = 0):
        self.n_bands, self.n_ceps, self.seed = n_bands, n_ceps, seed
        self.frame, self.hop, self.n_fft = 400, 160, 512
        self.sha256 = hashlib.sha256(f"{_VERSION}:{n_bands}:{n_ceps}:{seed}".encode()).hexdigest()

    @cached_property
    def _bands(self) -> np.ndarray:
        return _band_matrix(self.n_fft, self.sample_rate, self.n_bands)

    @cached_property
    def _dct(self) -> np.ndarray:
        n = np.arange(self.n_bands)
        k = np.arange(1, self.n_ceps + 1)[:, None]
        return np.cos(np.pi * k * (n + 0.5) / self.n_bands)  # (n_ceps, n_bands), c0 dropped

    @cached_property
    def _projection(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.standard_normal((2 * self.n_ceps, self.raw_dim)) / np.sqrt(2 * self.n_ceps)

    @cached_property
    def _reference(self) -> np.ndarray:
        """Features of 4 s of seeded pink noise: the origin of the feature space."""
        rng = np.random.default_rng(self.seed)
        spectrum = np.fft.rfft(rng.standard_normal(4 * self.sample_rate))
        freqs = np.fft.rfftfreq(4 * self.sample_rate, 1.0 / self.sample_rate)
        spectrum[0] = 0.0
        spectrum[1:] /= np.sqrt(freqs[1:])
        pink = np.fft.irfft(spectrum)
        return self.features(0.5 * pink / np.abs(pink).max())

    def features(self, x: np.ndarray) -> np.ndarray:
        """(2 * n_ceps,) mean and std of the cepstra of ``x`` (n,) float at 16 kHz."""
        x = np.asarray(x, dtype=np.float64)
        if x.size < self.frame:
            x = np.pad(x, (0, self.frame - x.size))
        n_frames = 1 + (x.size - self.frame) // self.hop
        idx = np.arange(self.frame)[None, :] + self.hop * np.arange(n_frames)[:, None]
        frames = x[idx] * np.hamming(self.frame)
        power = np.abs(np.fft.rfft(frames, self.n_fft, axis=1)) ** 2
        logbands = np.log(power @ self._bands + 1e-10)
        ceps = logbands @ self._dct.T  # (frames, n_ceps)
        return np.concatenate([ceps.mean(axis=0), ceps.std(axis=0)])

    def __call__(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        if len(waveforms) == 0:
            return np.zeros((0, self.raw_dim), dtype=np.float32)
        feats = np.stack([self.features(w) for w in waveforms])
        ref, n = self._reference, self.n_ceps
        lifter = np.sqrt(np.arange(1, n + 1)) / 10.0
        means = (feats[:, :n] - ref[:n]) * lifter
        spreads = 0.5 * (np.log(feats[:, n:] + 1e-10) - np.log(ref[n:] + 1e-10))
        return (np.concatenate([means, spreads], axis=1) @ self._projection).astype(np.float32)
