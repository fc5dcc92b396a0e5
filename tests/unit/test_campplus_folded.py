"""The folded CAM++ (BatchNorm folded, time-major, frozen trace) equals the eager modules, on a
randomly initialised network with random BatchNorm statistics (negative and zero scales
included), without the real weights."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from speakerdb.model.campplus.fbank import fbank, fbank_lean, mel_banks, povey_window  # noqa: E402
from speakerdb.model.campplus.folded import (  # noqa: E402
    FoldedCampp,
    FoldedNet,
    bn_scale_shift,
    fold_bn_relu,
    fold_conv_bn,
)
from speakerdb.model.campplus.head import CamppMRL, MatryoshkaHead  # noqa: E402
from speakerdb.model.campplus.network import CAMPPlus, CamppWave  # noqa: E402
from speakerdb.model.optimize import FrozenTrace  # noqa: E402


def _randomise_bn(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Running stats and affine parameters far from the identity; a few scales negative or
    zero, as in trained networks (the CAM++ release has 7 negative scales)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            if m.weight is not None:
                w = 0.5 + torch.rand(c, generator=gen)
                w[torch.rand(c, generator=gen) < 0.05] *= -1
                w[0] = 0.0 if c > 64 else w[0]
                m.weight.data.copy_(w)
                m.bias.data.copy_(0.2 * torch.randn(c, generator=gen))


@pytest.fixture(scope="module")
def mrl() -> CamppMRL:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = CAMPPlus().eval()
    with torch.no_grad():
        _randomise_bn(net, gen)
    head = torch.randn(256, 192, generator=gen) / 14
    head[192:] = 0
    return CamppMRL(CamppWave(net), MatryoshkaHead(head)).eval()


@pytest.fixture(scope="module")
def frozen(mrl) -> FoldedCampp:
    return FoldedCampp(mrl, freeze=True)


def _waves(b: int, n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    w = 0.1 * rng.standard_normal((b, n)) + 0.3 * np.sin(2 * np.pi * 220 * t)
    return torch.from_numpy(w.astype(np.float32))


def _agree(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and torch.isfinite(got).all()
    got, want = got.double(), want.double()
    cos = torch.nn.functional.cosine_similarity(got, want, dim=-1)
    assert cos.min().item() >= 0.99999, cos
    scale = want.norm(dim=-1, keepdim=True)
    assert ((got - want).abs() / scale).max().item() <= 1e-5
    assert (got[:, 192:] == 0).all()  # zero head rows stay exactly zero


def test_bn_scale_shift_and_conv_fold_are_exact():
    gen = torch.Generator().manual_seed(1)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=True)
    bn = torch.nn.BatchNorm2d(6).eval()
    _randomise_bn(bn, gen)
    x = torch.randn(2, 4, 7, 9, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        conv, bn = conv.double(), bn.double()
        want = bn(conv(x))
        scale, shift = bn_scale_shift(bn)
        y = conv(x)
        assert (scale[:, None, None] * y + shift[:, None, None] - want).abs().max() <= 1e-12
        w, b = fold_conv_bn(conv.weight, bn, conv.bias)
        got = torch.nn.functional.conv2d(x, w, b, padding=1)
    assert (got - want).abs().max().item() <= 1e-12


def test_bn_relu_as_a_clamp_is_exact_for_every_sign_of_the_scale():
    bn = torch.nn.BatchNorm1d(5).double().eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.7, 0.0, 0.0, 2.0]))
        bn.bias.copy_(torch.tensor([0.3, 0.4, 0.5, -0.5, -1.0]))
        bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0, 1.0]))
        bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 1.0, 0.25]))
    x = torch.linspace(-4, 4, 801, dtype=torch.float64).repeat(5, 1)[None]
    scale, shift, lo, hi = fold_bn_relu(bn)
    with torch.no_grad():
        want = torch.relu(bn(x))
    got = scale[:, None] * torch.clamp(x, lo[:, None], hi[:, None]) + shift[:, None]
    assert (got - want).abs().max().item() <= 1e-12
    assert want[0, 1].min() == 0 and want[0, 1].max() > 0  # the negative scale is exercised


@pytest.mark.parametrize("b,n", [(1, 720), (1, 1600), (3, 1601), (2, 8000), (1, 23_456)])
def test_folded_eager_equals_the_eager_modules(mrl, b, n):
    folded = FoldedCampp(mrl, freeze=False)
    assert isinstance(folded.net, FoldedNet)
    x = _waves(b, n, seed=n)
    with torch.inference_mode():
        _agree(folded(x), mrl(x))


@pytest.mark.parametrize("b,n", [(1, 0), (1, 1), (1, 100), (2, 719), (1, 1600), (4, 1600),
                                 (2, 4321), (1, 16_000), (3, 33_333), (1, 160_000)])
def test_frozen_trace_follows_batch_and_length(frozen, mrl, b, n):
    """Traced once (0.5 s, batch 1), run on other batch sizes and lengths: short ones are tiled
    like CamppWave tiles them, long ones span several 100-frame context segments."""
    x = _waves(b, n, seed=7 + n)
    with torch.inference_mode():
        got = frozen(x)
        want = mrl(x)
    _agree(got, want)
    assert isinstance(frozen.net.graph(x.device), torch.jit.ScriptModule)


def test_frozen_trace_outside_inference_mode_and_rows_are_independent(frozen, mrl):
    x = _waves(3, 5000, seed=3)
    with torch.no_grad():
        together = frozen(x)
        alone = torch.cat([frozen(x[i : i + 1]) for i in range(3)])
        _agree(together, mrl(x))
    assert (together - alone).abs().max().item() <= 1e-4 * together.norm(dim=-1).max().item()


def test_fbank_lean_equals_fbank():
    win, mel_t = povey_window(), mel_banks().T.contiguous()
    for b, n in [(1, 400), (1, 559), (3, 16_000), (2, 48_123)]:
        x = _waves(b, n, seed=n)
        want = fbank(x.double())
        got = fbank_lean(x, win, mel_t)
        assert got.shape == want.shape == (b, 1 + (n - 400) // 160, 80)
        ref32 = fbank(x)
        err, err32 = (got.double() - want).abs(), (ref32.double() - want).abs()
        assert err.mean() <= 2 * err32.mean() + 1e-7 and err.max() <= 1e-2


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.lin(x).relu() * x.shape[0]


def _toy_example(device):
    return (torch.zeros(2, 8, device=device),)


def test_frozen_trace_per_device_and_after_moves():
    torch.manual_seed(0)
    toy = _Toy().eval()
    ft = FrozenTrace(toy, _toy_example)
    x = torch.randn(5, 8)
    assert torch.allclose(ft(x), toy(x))            # traced sizes follow the input
    g = ft.graph("cpu")
    assert ft.graph(torch.device("cpu")) is g       # one trace per device
    ft.double()                                     # a move or cast traces again
    assert ft.graph("cpu") is not g
    assert torch.allclose(ft(x.double()), toy(x.double()))
    for clone in (copy.deepcopy(ft), pickle.loads(pickle.dumps(ft))):
        assert torch.allclose(clone(x.double()), toy(x.double()))
