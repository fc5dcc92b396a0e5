"""The plain-torch mel front end: buffers, options of spec_params, dtypes and short inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from speakerdb.model.redimnet.config import resolve_spec_params  # noqa: E402
from speakerdb.model.redimnet.frontend import MelFrontEnd, hamming_window, mel_filterbank  # noqa: E402

FIX = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "redimnet"


def _wave(n=16000, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000.0
    return (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(batch, n, generator=g)).float()


@pytest.mark.skipif(not (FIX / "manifest.json").exists(), reason=f"ReDimNet fixtures not found at {FIX}")
@pytest.mark.parametrize("name, key", [
    ("redimnet-official-b0.pt", "spec.torchfbank.2."),
    ("mrl-redimnet-b2-best.pt", "backbone.spec.torchfbank.2."),
])
def test_fresh_buffers_equal_the_checkpoint_buffers(name, key):
    from speakerdb.model.checkpoint import read_checkpoint

    _, payload = read_checkpoint(FIX / "checkpoints" / name)
    sd = payload.get("state_dict") or payload["model_state_dict"]
    fb = sd[key + "mel_scale.fb"]
    torch.testing.assert_close(mel_filterbank(512, fb.shape[1]), fb, atol=1e-6, rtol=0)
    torch.testing.assert_close(hamming_window(400), sd[key + "spectrogram.window"], atol=0, rtol=0)


def test_shapes_hops_and_dtype():
    for hop in (160, 240):
        fe = MelFrontEnd(72, hop, resolve_spec_params({}))
        for n in (16000, 48001):
            y = fe(_wave(n).double())
            assert y.dtype == torch.float32 and y.shape == (1, 72, 1 + n // hop)
            torch.testing.assert_close(y.mean(dim=-1), torch.zeros(1, 72), atol=1e-5, rtol=0)


def test_norm_signal_is_applied_first():
    x = _wave(8000) * 0.2 + 0.05
    plain = MelFrontEnd(40, 160, resolve_spec_params({}))
    normed = MelFrontEnd(40, 160, resolve_spec_params({"norm_signal": True}))
    pre = (x - x.mean()) / (x.std(unbiased=False) + 1e-6)
    torch.testing.assert_close(normed(x), plain(pre), atol=0, rtol=0)
    assert not torch.allclose(normed(x), plain(x), atol=1e-3)


def test_mvn_and_no_preemphasis():
    x = _wave(8000)
    mn = MelFrontEnd(40, 160, resolve_spec_params({}))(x)
    mvn = MelFrontEnd(40, 160, resolve_spec_params({"spec_norm": "mvn"}))(x)
    torch.testing.assert_close(mvn, mn / (mn.std(dim=-1, keepdim=True) + 1e-8), atol=1e-5, rtol=1e-5)
    nopre = MelFrontEnd(40, 160, resolve_spec_params({"do_preemph": False}))
    assert "torchfbank.1.flipped_filter" not in nopre.state_dict()
    assert not torch.allclose(nopre(x), mn, atol=1e-2)


def test_preemphasis_reflects_the_first_sample():
    fe = MelFrontEnd(40, 160, resolve_spec_params({}))
    x = torch.tensor([[0.5, -0.25, 0.125, 1.0]])
    y = fe.torchfbank[1](x)
    expected = torch.tensor([[0.5 - 0.97 * -0.25, -0.25 - 0.97 * 0.5, 0.125 + 0.97 * 0.25, 1.0 - 0.97 * 0.125]])
    torch.testing.assert_close(y, expected, atol=1e-7, rtol=0)


def test_too_short_input_is_a_clear_error():
    fe = MelFrontEnd(40, 240, resolve_spec_params({}))
    assert fe.min_samples == 257
    fe(_wave(257))
    with pytest.raises(ValueError, match="too short"):
        fe(_wave(256))
