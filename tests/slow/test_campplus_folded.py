"""The optimised default embedder (``campplus``: folded, frozen CAM++) against the eager modules
on real speech, and against the fixtures of the original 3D-Speaker code.

Needs the CAM++ weights and the shared fixtures / ../shared/data/speech-dev; skips with the
reason when they are absent."""

from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from speakerdb.model.campplus.folded import FoldedCampp  # noqa: E402
from tests.campplus_ref import NAMES, weights_or_skip  # noqa: E402
from tests.campplus_ref import cosines as _cosines  # noqa: E402
from tests.campplus_ref import fixture as _fx  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedders():
    from speakerdb.model.registry import load_embedder

    weights_or_skip()
    fast, eager = load_embedder("campplus", "cpu"), load_embedder("campplus", "cpu",
                                                                  optimize=False)
    assert isinstance(fast.module, FoldedCampp)
    assert not isinstance(eager.module, FoldedCampp)
    assert fast.sha256 == eager.sha256 and fast.min_samples == eager.min_samples
    return fast, eager


def test_equals_eager_on_real_speech(embedders, speech_dev):
    from speakerdb.audio import AudioPolicy, prepare

    fast, eager = embedders
    with open(speech_dev / "manifest.csv", newline="") as f:
        paths = [speech_dev / r["path"] for r in csv.DictReader(f)][::8]
    segs = [s.samples[:6 * 16000] for p in paths for s in prepare(p, AudioPolicy()).segments]
    segs += [segs[0][:n] for n in (0, 1, 100, 719, 1600, 4000)]  # tiled short inputs
    a, b = fast(segs), eager(segs)
    cos = _cosines(a, b)
    assert cos.min() >= 0.99999, (cos.min(), int(cos.argmin()))
    assert np.abs(a - b).max() <= 1e-3
    assert np.all(a[:, 192:] == 0)  # the head's zero rows


def test_batched_rows_equal_single_rows(embedders, speech_dev):
    fast, _ = embedders
    wav = sorted(speech_dev.rglob("*.wav"))[0]
    w = sf.read(wav, dtype="float32")[0]
    n = min(len(w), 48000)
    clips = [w[:n], w[-n:], w[:n] * 0.5]
    together = fast(clips)
    alone = np.stack([fast([c])[0] for c in clips])
    assert _cosines(together, alone).min() >= 0.999999
    assert np.abs(together - alone).max() <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_fixture_embeddings_through_the_folded_model(embedders, name):
    """The head's first 192 rows are orthonormal, so the CAM++ embedding is recovered from the
    raw output and compared with the original implementation's, as the eager test does."""
    fast, _ = embedders
    from speakerdb.model.campplus.head import read_head

    weight, _ = read_head()
    raw = fast([_fx(name, "wav")])[0].astype(np.float64)
    got = weight[:192].astype(np.float64).T @ raw[:192]
    for ref in ("embedding.npy", "embedding_from_torchaudio_fbank.npy"):
        want = _fx(name, ref).astype(np.float64)
        assert _cosines(got, want) >= 0.9999
        assert np.abs(got - want).max() <= 1e-3
