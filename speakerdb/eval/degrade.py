"""Deterministic signal recipes for harder test sides: crops, babble, coloured noise, mixing at
a given SNR. Every random choice comes from a generator seeded by a stable
hash of a key (``rng_for``), so a condition built twice from the same audio is identical."""

from __future__ import annotations

import zlib

import numpy as np

SR = 16000


def rng_for(*key) -> np.random.Generator:
    """A generator seeded by a stable hash of ``key`` (strings and ints)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()) & 0xFFFFFFFF)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def crop(x: np.ndarray, n: int, rng: np.random.Generator, tries: int = 20) -> np.ndarray:
    """A random window of ``n`` samples (the whole signal tiled if shorter), retried until
    its RMS is at least half the signal's so that crops are not pauses."""
    if len(x) <= n:
        return np.resize(x, n).astype(np.float32)
    floor = 0.5 * rms(x)
    for i in range(tries):
        o = int(rng.integers(0, len(x) - n + 1))
        w = x[o:o + n]
        if rms(w) >= floor or i == tries - 1:
            return w.astype(np.float32)
    raise AssertionError


def mix(target: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """target + noise scaled to ``snr_db`` (RMS over the whole window)."""
    g = rms(target) / rms(noise) * 10.0 ** (-snr_db / 20.0)
    return (target + g * noise).astype(np.float32)


def babble(waves: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of one random ``n``-sample crop of each wave, each scaled to unit RMS."""
    out = np.zeros(n, np.float64)
    for w in waves:
        c = crop(w, n, rng)
        out += c / rms(c)
    return out.astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with a 1/f**exponent power spectrum (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / f ** (exponent / 2.0), n).astype(np.float32)
