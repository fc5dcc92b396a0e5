"""The optimised ReDimNet inference graph (``fast``) against the eager forward pass: BatchNorm
folding exact on random weights, the same embeddings for every architecture variant and many
input lengths, the fixture checkpoints' reference outputs, and when ``forward`` uses which."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from speakerdb.model.redimnet import RedimnetConfig, build_model, load_redimnet  # noqa: E402
from speakerdb.model.redimnet.fast import FastOptions, FastRedimnet  # noqa: E402
from speakerdb.model.redimnet.fold import fold_bn_after, fold_bn_before  # noqa: E402
from tests.unit.test_redimnet_shapes import CONFIGS, _randomise  # noqa: E402

FIX = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "redimnet"
FIXTURES = {"official-b0": "redimnet-official-b0.pt", "official-b2": "redimnet-official-b2.pt",
            "mrl-b2": "mrl-redimnet-b2-best.pt"}
needs_fixtures = pytest.mark.skipif(not (FIX / "manifest.json").exists(),
                                    reason=f"ReDimNet fixtures not found at {FIX}")


def _random_bn(bn: torch.nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(bn.bias.shape, generator=g))
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g))
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) * 2 + 0.1)
    bn.eval()


def _agree(fast: torch.Tensor, eager: torch.Tensor) -> None:
    """Cosine ≥ 0.9999 per row and element-wise within 1e-5 of the embedding's scale."""
    cos = torch.nn.functional.cosine_similarity(fast, eager, dim=1)
    assert float(cos.min()) >= 0.9999, cos
    scale = float(eager.abs().max())
    torch.testing.assert_close(fast, eager, atol=1e-5 * scale, rtol=1e-4)


# -- folding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folding_a_batchnorm_after_a_conv_is_exact(seed):
    g = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv2d(8, 12, 3, padding=1, groups=4).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=g))
    bn = torch.nn.BatchNorm2d(24, eps=1e-6).double()  # two convs concatenated before one BN
    _random_bn(bn, g)
    x = torch.randn(2, 8, 5, 7, generator=g, dtype=torch.float64)
    for half in (slice(0, 12), slice(12, 24)):
        w, b = fold_bn_after(conv.weight, conv.bias, bn, half)
        want = (conv(x) - bn.running_mean[half].view(1, -1, 1, 1)) / torch.sqrt(
            bn.running_var[half].view(1, -1, 1, 1) + bn.eps) * bn.weight[half].view(1, -1, 1, 1) \
            + bn.bias[half].view(1, -1, 1, 1)
        got = torch.nn.functional.conv2d(x, w, b, padding=1, groups=4)
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_folding_batchnorms_around_a_linear_is_exact(seed):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(10, 6).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g))
        lin.bias.copy_(torch.randn(lin.bias.shape, generator=g))
    before, after = torch.nn.BatchNorm1d(10).double(), torch.nn.BatchNorm1d(6).double()
    _random_bn(before, g)
    _random_bn(after, g)
    x = torch.randn(4, 10, generator=g, dtype=torch.float64)
    w, b = fold_bn_before(lin.weight, lin.bias, before)
    w, b = fold_bn_after(w, b, after)
    torch.testing.assert_close(torch.nn.functional.linear(x, w, b), after(lin(before(x))),
                               atol=1e-12, rtol=1e-12)
    w, b = fold_bn_after(lin.weight, None, after)  # a layer without bias gets one
    torch.testing.assert_close(torch.nn.functional.linear(x, w, b),
                               after(torch.nn.functional.linear(x, lin.weight)), atol=1e-12,
                               rtol=1e-12)


def test_folding_refuses_mismatched_channels():
    with pytest.raises(ValueError):
        fold_bn_after(torch.zeros(5, 3), None, torch.nn.BatchNorm1d(4).eval())
    with pytest.raises(ValueError):
        fold_bn_before(torch.zeros(5, 3), None, torch.nn.BatchNorm1d(4).eval())


# -- every architecture variant, random weights ---------------------------------------------

@pytest.fixture(scope="module")
def random_models():
    out = {}
    for i, (name, kw) in enumerate(CONFIGS.items()):
        model = build_model(RedimnetConfig(**kw))
        _randomise(model, 10 + i)
        out[name] = model
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_graph_equals_eager_for_every_variant(random_models, name):
    model = random_models[name]
    g = torch.Generator().manual_seed(3)
    fast = FastRedimnet(model)
    with torch.inference_mode():
        for n, batch in ((model.min_samples, 1), (4001, 2), (16000, 3), (37123, 1)):
            wave = torch.randn(batch, n, generator=g) * 0.1
            _agree(fast(wave), model.eager_forward(wave))


@pytest.mark.parametrize("opts", list(itertools.product([True, False], repeat=3)))
def test_each_optimisation_can_be_switched_off(random_models, opts):
    wave = torch.randn(2, 9000, generator=torch.Generator().manual_seed(4)) * 0.1
    for name in ("b0like_fwse_att_gc", "b2like_mfa_stride3"):
        model = random_models[name]
        with torch.inference_mode():
            _agree(FastRedimnet(model, FastOptions(*opts))(wave), model.eager_forward(wave))


def test_fast_graph_needs_eval_mode(random_models):
    model = random_models["mrl_small"]
    model.train()
    try:
        with pytest.raises(ValueError):
            FastRedimnet(model)
    finally:
        model.eval()


# -- which path forward takes ---------------------------------------------------------------

def test_forward_uses_the_fast_graph_only_for_inference(random_models):
    model = random_models["b2like_mfa_stride3"]
    wave = torch.randn(2, 8000, generator=torch.Generator().manual_seed(5)) * 0.1
    with torch.inference_mode():
        eager = model.eager_forward(wave)
        fast = model(wave)
        assert not torch.equal(fast, eager)  # a different summation order shows in the bits
        torch.testing.assert_close(fast, model.fast_module()(wave), atol=0, rtol=0)
        model.optimized = False
        try:
            torch.testing.assert_close(model(wave), eager, atol=0, rtol=0)
        finally:
            model.optimized = True
    torch.testing.assert_close(model(wave), eager, atol=0, rtol=0)  # autograd on: eager
    with torch.no_grad():
        torch.testing.assert_close(model(wave), fast, atol=0, rtol=0)


def test_the_fast_graph_follows_weight_changes(random_models):
    model = build_model(RedimnetConfig(**CONFIGS["mrl_small"]))
    _randomise(model, 20)
    wave = torch.randn(1, 8000, generator=torch.Generator().manual_seed(6)) * 0.1
    with torch.inference_mode():
        before = model(wave)
    model.load_state_dict(random_models["mrl_small"].state_dict())
    with torch.inference_mode():
        after = model(wave)
        _agree(after, model.eager_forward(wave))
        assert float((after - before).abs().max()) > 0.1
        graph = model.fast_module()
        assert model.fast_module() is graph  # cached while nothing changes
    with torch.no_grad():
        model.projection.linear.weight.mul_(2.0)  # an in-place edit
    with torch.inference_mode():
        edited = model(wave)
        _agree(edited, model.eager_forward(wave))
        assert float((edited - after).abs().max()) > 0.1
        graph = model.fast_module()
    model.float()  # conversions replace the tensors: the graph is rebuilt
    assert model.fast_module() is not graph


def test_the_fast_graph_rejects_too_short_inputs(random_models):
    model = random_models["mrl_small"]
    with torch.inference_mode(), pytest.raises(ValueError, match="too short"):
        model(torch.zeros(1, model.min_samples - 1))


# -- the fixture checkpoints ----------------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_models():
    return {k: load_redimnet(FIX / "checkpoints" / f) for k, f in FIXTURES.items()}


@needs_fixtures
@pytest.mark.parametrize("mname", list(FIXTURES))
def test_fixture_models_reproduce_upstream_on_the_fast_graph(fixture_models, mname):
    model = fixture_models[mname]
    for inp in ("harmonic_3s", "noise_1s", "chirp_noise_5p5s"):
        wave = torch.from_numpy(np.load(FIX / "inputs" / f"{inp}.f32.npy"))[None]
        exp = FIX / "expected" / mname / inp
        expected = np.load(exp / ("embedding_raw256.npy" if mname.startswith("mrl")
                                  else "embedding.npy"))
        with torch.inference_mode():
            got = model(wave)
            _agree(got, model.eager_forward(wave))
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-4, rtol=1e-4)


@needs_fixtures
@pytest.mark.parametrize("mname", ["official-b2", "mrl-b2"])
def test_fixture_models_agree_from_tenth_of_a_second_to_twenty(fixture_models, mname):
    model = fixture_models[mname]
    g = torch.Generator().manual_seed(7)
    with torch.inference_mode():
        for seconds in (0.1, 0.37, 1.0, 4.2, 20.0):
            wave = torch.randn(1, int(seconds * 16000), generator=g) * 0.1
            _agree(model(wave), model.eager_forward(wave))


@needs_fixtures
@pytest.mark.slow
def test_fixture_models_agree_on_real_speech(fixture_models, speech_dev):
    sf = pytest.importorskip("soundfile")
    files = sorted(speech_dev.rglob("*.wav"))[::29]  # 11 files, 2.4 s to 15 s
    for mname in ("official-b2", "mrl-b2"):
        model = fixture_models[mname]
        with torch.inference_mode():
            for f in files:
                wave = torch.from_numpy(sf.read(f, dtype="float32")[0])[None]
                _agree(model(wave), model.eager_forward(wave))
