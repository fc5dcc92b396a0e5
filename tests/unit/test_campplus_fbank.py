"""The Kaldi-compatible fbank of the CAM++ front end against the reference fixtures."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from speakerdb.model.campplus.fbank import (  # noqa: E402
    LOG_FLOOR,
    fbank,
    mean_normalise,
    mel_banks,
    num_frames,
    povey_window,
)
from tests.campplus_ref import FIXTURES, NAMES, fixture  # noqa: E402

FRAMES = {"a_voiced_3s": 298, "b_noise_1s": 98, "c_chirp_noise_7p3s": 728, "d_espeak_4s": 398}


def _wav(name: str) -> np.ndarray:
    return fixture(name, "wav")


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.float64) - want)
    assert diff.max() <= 2e-3, f"max |diff| {diff.max():.3g}"
    assert diff.mean() <= 1e-4, f"mean |diff| {diff.mean():.3g}"


@pytest.mark.parametrize("name", NAMES)
def test_matches_reference_fbank(name):
    wave = _wav(name)
    raw = fbank(torch.from_numpy(wave))
    assert raw.dtype == torch.float32 and raw.shape == (1, FRAMES[name], 80)
    _close(raw[0].numpy(), np.load(FIXTURES / f"{name}.fbank_raw.npy"))
    _close(mean_normalise(raw)[0].numpy(), np.load(FIXTURES / f"{name}.fbank.npy"))


@pytest.mark.parametrize("name", ["a_voiced_3s", "d_espeak_4s"])
def test_float64_path(name):
    wave = _wav(name)
    f64 = fbank(torch.from_numpy(wave).double())
    assert f64.dtype == torch.float64
    asked = fbank(torch.from_numpy(wave), dtype=torch.float64)
    assert asked.dtype == torch.float64 and torch.equal(asked, f64)
    _close(mean_normalise(f64)[0].numpy(), np.load(FIXTURES / f"{name}.fbank.npy"))
    f32 = fbank(torch.from_numpy(wave))
    assert (f64 - f32.double()).abs().max().item() < 2e-3


def test_other_dtypes_are_refused():
    with pytest.raises(ValueError):
        fbank(torch.zeros(800), dtype=torch.float16)
    with pytest.raises(ValueError):
        fbank(torch.zeros(2, 2, 800))


@pytest.mark.parametrize("n", [400, 401, 559, 560, 719, 720, 16000, 48000, 48159, 48160])
def test_frame_count(n):
    want = 1 + (n - 400) // 160
    assert num_frames(n) == want
    assert fbank(torch.rand(n) - 0.5).shape == (1, want, 80)


@pytest.mark.parametrize("n", [0, 1, 160, 399])
def test_shorter_than_one_frame_gives_no_frames(n):
    assert num_frames(n) == 0
    out = fbank(torch.rand(2, n))
    assert out.shape == (2, 0, 80) and out.dtype == torch.float32


def test_batch_rows_equal_single_rows():
    g = torch.Generator().manual_seed(0)
    batch = torch.rand(3, 4000, generator=g) - 0.5
    out = fbank(batch)
    for i in range(3):
        assert torch.allclose(out[i], fbank(batch[i])[0], atol=1e-5, rtol=0)


def test_silence_is_floored_and_finite():
    out = fbank(torch.zeros(1600))
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.full_like(out, math.log(LOG_FLOOR)))
    assert mean_normalise(out).abs().max().item() < 1e-5


def test_input_is_not_rescaled():
    """Doubling the waveform adds ln 4 to every unfloored log-mel value (power spectrum)."""
    g = torch.Generator().manual_seed(1)
    wave = (torch.rand(8000, generator=g, dtype=torch.float64) - 0.5) * 0.2
    delta = fbank(2 * wave) - fbank(wave)
    assert torch.allclose(delta, torch.full_like(delta, math.log(4.0)), atol=1e-9)


def test_mean_normalise_removes_bin_means():
    feats = torch.randn(2, 50, 80) + 3.0
    out = mean_normalise(feats)
    assert out.shape == feats.shape
    assert out.mean(dim=1).abs().max().item() < 1e-5


def test_window_and_mel_bank_shapes():
    w = povey_window()
    assert w.shape == (400,) and w[0] == 0 and abs(w.max().item() - 1.0) < 1e-4
    bank = mel_banks(torch.float64)
    assert bank.shape == (80, 256) and (bank >= 0).all() and (bank <= 1).all()
    assert (bank.sum(dim=1) > 0).all()
    assert (bank[:, 0] == 0).all()  # 0 Hz lies below the 20 Hz lower edge
    bank.zero_()  # a caller mutating its copy must not change the cached bank
    assert mel_banks(torch.float64).sum() > 0


@pytest.mark.parametrize("seconds", [0.05, 1.0, 3.7])
def test_matches_kaldi_native_fbank(seconds):
    """Kaldi's own fbank (kaldi-native-fbank, the ``bench`` extra) with the options CAM++ uses:
    80 bins, 16 kHz, no dither, Kaldi's defaults otherwise."""
    knf = pytest.importorskip(
        "kaldi_native_fbank", reason="kaldi-native-fbank not installed (pip install -e '.[bench]')")
    rng = np.random.default_rng(int(seconds * 100))
    t = np.arange(int(seconds * 16000)) / 16000
    wave = (0.2 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 4 * t))
            + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    wave[: t.size // 4] *= 1e-3  # a near-silent stretch
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.dither = 0
    opts.mel_opts.num_bins = 80
    online = knf.OnlineFbank(opts)
    online.accept_waveform(16000, wave.tolist())
    online.input_finished()
    want = np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])
    assert want.shape == (num_frames(t.size), 80)
    _close(fbank(torch.from_numpy(wave))[0].numpy(), want.astype(np.float64))
