import numpy as np

from speakerdb.model.base import Embedder
from speakerdb.model.prefixes import prefix
from tests.synth import voice


def test_is_an_embedder(spectral_embedder):
    assert isinstance(spectral_embedder, Embedder)
    assert spectral_embedder.dims == (64, 128, 192, 256)
    assert len(spectral_embedder.sha256) == 64


def test_same_audio_same_vector_different_audio_different(spectral_embedder):
    a, b = voice(0, 0), voice(0, 1)
    out = spectral_embedder([a, a.copy(), b])
    assert out.shape == (3, 256) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.allclose(out[0], out[2])


def test_batch_equals_single(spectral_embedder):
    xs = [voice(1, 0, 1.0), voice(2, 0, 2.5), voice(3, 0, 0.6)]
    batched = spectral_embedder(xs)
    for x, row in zip(xs, batched):
        np.testing.assert_allclose(spectral_embedder([x])[0], row, rtol=1e-6)


def test_separates_synthetic_speakers(spectral_embedder):
    xs = [voice(k, j) for k in range(6) for j in range(3)]
    spk = np.repeat(np.arange(6), 3)
    p = prefix(spectral_embedder(xs), 64)
    s = p @ p.T
    np.fill_diagonal(s, -2)
    assert (spk[s.argmax(1)] == spk).all()


def test_deterministic_across_instances():
    from speakerdb.model.spectral import SpectralEmbedder

    x = voice(4, 2)
    np.testing.assert_array_equal(SpectralEmbedder()([x]), SpectralEmbedder()([x]))
    assert SpectralEmbedder(seed=1).sha256 != SpectralEmbedder().sha256
