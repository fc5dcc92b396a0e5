"""Deterministic synthetic voices for fast tests: each speaker has its own pitch and formants,
each utterance its own phases, jitter, syllable rhythm and noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RATE = 16000


def voice(speaker: int, utterance: int, seconds: float = 1.5, rate: int = RATE) -> np.ndarray:
    """(n,) float32 in [-1, 1]: a vowel-like signal for ``speaker``; same args, same samples."""
    srng = np.random.default_rng(1000 + speaker)
    f0 = srng.uniform(90, 260)
    formants = np.sort(srng.uniform([300, 900, 2000], [900, 2200, 3400]))
    urng = np.random.default_rng(10_000 * (speaker + 1) + utterance)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = f0 * (1 + 0.03 * np.sin(2 * np.pi * urng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    x = np.zeros(n)
    for h in range(1, int(4000 / f0)):
        fh = h * f0
        gain = sum(1.0 / (1 + ((fh - f) / 120.0) ** 2) for f in formants)
        x += gain * np.sin(h * phase + urng.uniform(0, 2 * np.pi))
    rhythm = 0.55 + 0.45 * np.sin(2 * np.pi * urng.uniform(3, 5) * t + urng.uniform(0, 6)) ** 2
    x = x * rhythm + 0.02 * urng.standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def write_corpus(root: Path, speakers: int = 4, utterances: int = 3, seconds: float = 1.5,
                 first_speaker: int = 0) -> dict[str, list[Path]]:
    """``root/spk<k>/utt<j>.wav`` for a folders-layout ingest; returns {speaker: [paths]}."""
    import soundfile as sf

    out: dict[str, list[Path]] = {}
    for k in range(first_speaker, first_speaker + speakers):
        d = root / f"spk{k:02d}"
        d.mkdir(parents=True, exist_ok=True)
        out[d.name] = []
        for j in range(utterances):
            p = d / f"utt{j}.wav"
            sf.write(p, voice(k, j, seconds), RATE, subtype="PCM_16")
            out[d.name].append(p)
    return out


class Flat192:
    """A model with a raw 192-D output and no nested prefixes (like an official ReDimNet)."""

    name, dims, raw_dim, sample_rate, default_threshold = "flat192", (192,), 192, 16000, 0.8

    def __init__(self):
        from speakerdb.model.spectral import SpectralEmbedder

        self.inner = SpectralEmbedder()
        self.sha256 = "f" * 64

    def __call__(self, waves):
        return self.inner(waves)[:, :192]
