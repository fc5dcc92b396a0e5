"""speakerdb's own ReDimNet against outputs of the original upstream code (shared fixtures).

Every fixture checkpoint × every input; element-wise tolerances from the fixtures' README (never
cosine alone). Inputs are read from the WAVs with soundfile (float32) and asserted bit-identical
to the float32 .npy read-backs, so every comparison holds for both; the .npy arrays are also fed
to each model once directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from speakerdb.model.prefixes import prefix  # noqa: E402

FIX = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "redimnet"
pytestmark = pytest.mark.skipif(not (FIX / "manifest.json").exists(),
                                reason=f"ReDimNet fixtures not found at {FIX}")

MODELS = {"official-b0": "redimnet-official-b0.pt", "official-b2": "redimnet-official-b2.pt",
          "mrl-b2": "mrl-redimnet-b2-best.pt"}
INPUTS = ("harmonic_3s", "noise_1s", "chirp_noise_5p5s")
# expected file -> (our trace key, atol, rtol)
CHECKS = {
    "features": ("features", 1e-3, 1e-4),
    "backbone_out": ("backbone_out", 1e-4, 1e-4),
    "pooled": ("pooled", 1e-4, 1e-4),
    "pooled_bn": ("pooled_bn", 1e-4, 1e-4),
    "projection_bn_out": ("pooled_bn", 1e-4, 1e-4),
    "embedding": ("embedding", 1e-4, 1e-4),
    "embedding_raw256": ("embedding", 1e-4, 1e-4),
}


@pytest.fixture(scope="module")
def models():
    from speakerdb.model.redimnet import load_redimnet

    return {name: load_redimnet(FIX / "checkpoints" / f) for name, f in MODELS.items()}


def _wav(name: str) -> np.ndarray:
    data, sr = sf.read(FIX / "inputs" / f"{name}.wav", dtype="float32")
    assert sr == 16000 and data.ndim == 1
    return data


@pytest.fixture(scope="module")
def traces(models):
    out = {}
    with torch.inference_mode():
        for mname, m in models.items():
            for inp in INPUTS:
                out[mname, inp] = {k: v.numpy() for k, v in m.trace(torch.from_numpy(_wav(inp))[None]).items()}
    return out


@pytest.mark.parametrize("inp", INPUTS)
def test_wav_and_npy_inputs_are_identical(inp):
    npy = np.load(FIX / "inputs" / f"{inp}.f32.npy")
    assert npy.dtype == np.float32
    np.testing.assert_array_equal(_wav(inp), npy)


@pytest.mark.parametrize("inp", INPUTS)
@pytest.mark.parametrize("mname", list(MODELS))
def test_every_stage_matches_upstream(traces, mname, inp):
    exp_dir = FIX / "expected" / mname / inp
    got = traces[mname, inp]
    checked = 0
    for fname, (key, atol, rtol) in CHECKS.items():
        f = exp_dir / f"{fname}.npy"
        if not f.exists():
            continue
        expected = np.load(f)
        assert got[key].shape == expected.shape, (fname, got[key].shape, expected.shape)
        np.testing.assert_allclose(got[key], expected, atol=atol, rtol=rtol, err_msg=f"{mname}/{inp}/{fname}")
        checked += 1
    assert checked >= 4 + (inp == "noise_1s")


@pytest.mark.parametrize("mname", list(MODELS))
def test_npy_input_gives_the_same_embedding(models, traces, mname):
    inp = "noise_1s"
    x = torch.from_numpy(np.load(FIX / "inputs" / f"{inp}.f32.npy"))[None]
    with torch.inference_mode():  # the traces run module by module: compare like with like
        emb = models[mname].eager_forward(x).numpy()
    np.testing.assert_array_equal(emb, traces[mname, inp]["embedding"])


@pytest.mark.parametrize("inp", INPUTS)
def test_mrl_prefixes(traces, inp):
    raw = traces["mrl-b2", inp]["embedding"]
    assert raw.shape == (1, 256)
    for d in (64, 128, 192, 256):
        expected = np.load(FIX / "expected" / "mrl-b2" / inp / f"emb{d}_l2.npy")
        np.testing.assert_allclose(prefix(raw, d), expected, atol=1e-5, rtol=0)


def test_model_attributes(models):
    b0, b2, mrl = models["official-b0"], models["official-b2"], models["mrl-b2"]
    for m in (b0, b2):
        assert (m.kind, m.raw_dim, m.hop_length, m.mrl_dims) == ("official", 192, 240, None)
        assert not m.training and m.checkpoint_format == "redimnet-official"
    assert (mrl.kind, mrl.raw_dim, mrl.hop_length, mrl.mrl_dims) == ("mrl", 256, 160, (64, 128, 192, 256))
    assert not mrl.training and mrl.checkpoint_format == "redimnet-mrl"
    assert sum(p.numel() for p in b0.parameters()) == 1_004_251
    assert sum(p.numel() for p in b2.parameters()) == 5_067_057
    assert sum(p.numel() for p in mrl.parameters()) == 5_016_305
    assert len(mrl.state_dict()) == 563
    # the embedded training config lies (C=12 / att); the weights say C=16 / conv+att
    assert (mrl.config.C, mrl.config.F, mrl.config.block_1d_type) == (16, 72, "conv+att")
    assert (mrl.config.out_channels, mrl.config.global_context_att) == (512, False)
    assert mrl.config.stages_setup[3][0] == 3


@pytest.mark.parametrize("mname", list(MODELS))
def test_batch_equals_one_at_a_time(models, mname):
    m = models[mname]
    a = torch.from_numpy(_wav("noise_1s"))
    b = torch.from_numpy(_wav("chirp_noise_5p5s")[20000:36000].copy())
    with torch.inference_mode():
        both = m(torch.stack([a, b]))
        one = torch.cat([m(a[None]), m(b[None])])
        np.testing.assert_allclose(both.numpy(), one.numpy(), atol=1e-5, rtol=0)
        # other entry points agree with the eager forward, and it with the optimised one
        eager = m.eager_forward(a[None]).numpy()
        np.testing.assert_allclose(m.embed_from_pooled(m.pooled(a[None])).numpy(), eager, atol=1e-6)
        np.testing.assert_allclose(one[:1].numpy(), eager, atol=1e-5, rtol=0)
        assert m.features(a).shape == (1, m.feature_dim, 1 + 16000 // m.hop_length)


def test_stage2_checkpoint_with_full_adamw_state(tmp_path, traces):
    """Stage-2 files (~58 MB) carry AdamW state for every parameter; they load the same."""
    from speakerdb.model.checkpoint import read_checkpoint
    from speakerdb.model.redimnet import load_redimnet

    fmt, payload = read_checkpoint(FIX / "checkpoints" / MODELS["mrl-b2"])
    assert fmt == "redimnet-mrl"
    opt = payload["optimizer_state_dict"]
    param_ids = opt["param_groups"][0]["params"]
    sd = payload["model_state_dict"]
    # parameters in registration order = state-dict order without buffers (running stats, fb...)
    names = [k for k in sd if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
             and ".spec." not in k]
    assert len(names) == len(param_ids) == 425
    gen = torch.Generator().manual_seed(0)
    opt["state"] = {i: {"step": torch.tensor(float(1000 + i)),
                        "exp_avg": torch.randn(sd[n].shape, generator=gen) * 1e-3,
                        "exp_avg_sq": torch.rand(sd[n].shape, generator=gen) * 1e-6}
                    for i, n in zip(param_ids, names)}
    payload["epoch"] = 5
    big = tmp_path / "epoch_5.pt"
    torch.save(payload, big)
    assert big.stat().st_size > 55_000_000
    m = load_redimnet(big)
    with torch.inference_mode():
        got = m.eager_forward(torch.from_numpy(_wav("noise_1s"))[None]).numpy()
    np.testing.assert_array_equal(got, traces["mrl-b2", "noise_1s"]["embedding"])
