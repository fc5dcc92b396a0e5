"""``--vad`` on the commands that embed without a database (embed, verify): the model's
default detector unless named; with ``--home``, the database's, and naming another is an
error."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def padded(tmp_path, speech_dev):
    """A speech-dev utterance with 3 s of noise at -34 dBFS before and after it."""
    import soundfile as sf

    x, rate = sf.read(speech_dev / "libri-1334" / "1334-135589-0000_s2.wav", dtype="float32")
    noise = 0.02 * np.random.default_rng(5).standard_normal(3 * rate).astype(np.float32)
    p = tmp_path / "padded.wav"
    sf.write(p, np.concatenate([noise, x, noise]), rate, subtype="PCM_16")
    return p


def _vector(cli, *args):
    [r] = cli("embed", *args, "--model", "spectral", "--json").json()["results"]
    return np.asarray(r["embeddings"]["256"])


def test_embed_cuts_with_the_named_detector(cli, padded):
    default = _vector(cli, padded)
    energy = _vector(cli, padded, "--vad", "energy")
    silero = _vector(cli, padded, "--vad", "silero")
    assert np.array_equal(default, energy)  # the spectral model's default detector
    assert not np.allclose(silero, energy, atol=1e-3)  # the noise around the speech is cut


def test_another_detector_than_the_databases_is_one_error_line(cli, built, padded):
    for cmd in (("embed", padded), ("verify", padded, padded)):
        run = cli(*cmd, "--home", built.home, "--vad", "silero", expect=2)
        assert "energy speech detector; --vad 'silero' differs" in run.error_line()
    assert "choose one of silero, energy, none" in cli(
        "embed", padded, "--model", "spectral", "--vad", "webrtc", expect=2).error_line()


def test_verify_without_a_database_takes_a_detector(cli, padded):
    doc = cli("verify", padded, padded, "--model", "spectral", "--vad", "silero",
              "--json").json()
    assert doc["decision"] == "same" and doc["score"] == pytest.approx(1.0, abs=1e-5)
