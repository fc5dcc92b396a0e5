"""Shape inference on small synthetic ReDimNets with random weights: build → state_dict → infer
→ the same configuration → strict load → the same outputs. Plus shape errors naming the key."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from speakerdb.errors import CheckpointFormatError  # noqa: E402
from speakerdb.model.redimnet import (  # noqa: E402
    RedimnetConfig,
    build_model,
    check_state_dict,
    infer_config,
    load_redimnet,
    model_from_state_dict,
    save_redimnet,
)
from speakerdb.model.redimnet.config import resolve_spec_params  # noqa: E402

K = [(3, 3)]
CONFIGS = {
    # b0-like: basic_resnet_fwse, conv_exp > 1 (squeeze blocks), att 1-D blocks, global context
    "b0like_fwse_att_gc": dict(
        F=20, C=4, block_1d_type="att", block_2d_type="basic_resnet_fwse", group_divisor=1,
        stages_setup=[(1, 1, 1, K, 5), (2, 1, 2, K, 5), (1, 2, 3, K, 4), (2, 1, 2, K, 2)],
        global_context_att=True, hop_length=240),
    # b2-like: convnext_like, conv+att, stride 3, group divisor 4, mfa (out_channels), no context
    "b2like_mfa_stride3": dict(
        F=24, C=8, block_1d_type="conv+att", block_2d_type="convnext_like", group_divisor=4,
        stages_setup=[(1, 1, 1, K, 8), (2, 2, 1, K, 8), (3, 1, 1, K, 4), (2, 1, 1, K, None)],
        out_channels=40, global_context_att=False),
    # dense resnet (group_divisor None), 'conv' 1-D blocks, TSTP, emb_bn, classifier head
    "resnet_dense_conv_tstp": dict(
        F=16, C=4, block_1d_type="conv", block_2d_type="basic_resnet", group_divisor=None,
        stages_setup=[(2, 1, 1, K, None), (1, 1, 2, K, 4), (2, 2, 1, K, 8)],
        pooling_func="TSTP", emb_bn=True, num_classes=11, embed_dim=32),
    # 'fc' 1-D blocks, grouped squeeze, no pre-emphasis, BatchNorm spec norm, other n_fft/window
    "fc_bnspec": dict(
        F=12, C=6, block_1d_type="fc", block_2d_type="convnext_like", group_divisor=2,
        stages_setup=[(1, 1, 2, K, 3), (3, 1, 1, K, 6), (2, 0, 1, K, 2)],
        spec_params={"do_preemph": False, "spec_norm": "bn", "n_fft": 400, "win_length": 320},
        global_context_att=True, embed_dim=64),
    # MRL layout: ReDimNetMRL with projection head 256 and mfa
    "mrl_small": dict(
        F=16, C=4, block_1d_type="conv+att", block_2d_type="convnext_like", group_divisor=4,
        stages_setup=[(1, 1, 1, K, 4), (2, 1, 1, K, 4), (2, 1, 1, K, 2)],
        out_channels=24, embed_dim=256, mrl_dims=(64, 128, 192, 256)),
}


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial weights and BatchNorm statistics, so wrong wiring shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or ".spec.torchfbank" in f".{name}":
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * (0.3 if t.ndim > 1 else 0.2))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_inference_reproduces_the_config(name):
    cfg = RedimnetConfig(**CONFIGS[name])
    model = build_model(cfg)
    _randomise(model, 1)
    sd = model.state_dict()
    inferred = infer_config(sd, cfg.kind, hop_length=cfg.hop_length)
    assert inferred.architecture() == cfg.architecture()
    spec, ispec = resolve_spec_params(cfg.spec_params), resolve_spec_params(inferred.spec_params)
    for k in ("n_fft", "win_length", "do_preemph", "spec_norm"):
        assert ispec[k] == spec[k], k
    rebuilt = model_from_state_dict(inferred, sd, name)
    wave = torch.randn(2, 8000, generator=torch.Generator().manual_seed(2)) * 0.1
    with torch.inference_mode():
        a, b = model(wave), rebuilt(wave)
    assert a.shape == (2, cfg.embed_dim) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert len(set(a[0].tolist())) > 1 and not torch.allclose(a[0], a[1])


def test_official_defaults_build_the_m_layout():
    cfg = RedimnetConfig.from_model_config({"F": 72, "C": 16})
    assert (cfg.hop_length, cfg.group_divisor, cfg.block_1d_type, cfg.pooling_func) == (160, 4, "att", "ASTP")
    assert len(cfg.stages_setup) == 6 and cfg.out_channels is None


@pytest.mark.parametrize("bad, match", [
    ({"F": 72, "C": 16, "frobnicate": 1}, "does not take: frobnicate"),
    ({"block_1d_type": "lstm"}, "block_1d_type"),
    ({"pooling_func": "MHASTP"}, "not supported"),
    ({"feat_type": "tf"}, "TensorFlow"),
    ({"tf_optimized_arch": True}, "tf_optimized_arch"),
    ({"F": 70}, "not divisible"),
    ({"spec_params": {"window": "hann"}}, "not a MelBanks argument"),
    ({"spec_params": {"hop_length": 100}}, "model argument"),
    ({"stages_setup": [(4, 1, 1, K, 8)]}, "invalid value"),
])
def test_bad_model_configs(bad, match):
    with pytest.raises(CheckpointFormatError, match=match):
        RedimnetConfig.from_model_config(bad)


def test_mrl_state_dict_errors_name_the_key():
    cfg = RedimnetConfig(**CONFIGS["mrl_small"])
    sd = dict(build_model(cfg).state_dict())
    missing = dict(sd)
    del missing["backbone.backbone.fin_wght1d.w"]
    with pytest.raises(CheckpointFormatError, match="missing backbone.backbone.fin_wght1d.w"):
        infer_config(missing, "mrl", "x.pt")
    odd = dict(sd)
    odd["backbone.backbone.stage1.2.weight"] = torch.zeros(8, 5, 2, 1)
    with pytest.raises(CheckpointFormatError, match=r"x.pt: backbone.backbone.stage1.2.weight shape \[8, 5, 2, 1\]"):
        infer_config(odd, "mrl", "x.pt")
    extra = dict(sd)
    extra["backbone.backbone.stage0.99.weight"] = torch.zeros(1)
    model = build_model(infer_config(extra, "mrl", "x.pt"))
    with pytest.raises(CheckpointFormatError, match="x.pt: unexpected backbone.backbone.stage0.99.weight"):
        check_state_dict(model, extra, "x.pt")
    bad_head = dict(sd)
    bad_head["projection.linear.weight"] = torch.zeros(256, 30)
    with pytest.raises(CheckpointFormatError, match="projection.linear.weight takes 30 inputs"):
        infer_config(bad_head, "mrl", "x.pt")


def test_mrl_file_built_from_shapes_and_speakerdb_round_trip(tmp_path):
    cfg = RedimnetConfig(**CONFIGS["mrl_small"])
    model = build_model(cfg)
    _randomise(model, 3)
    ckpt = {"epoch": 0, "global_step": 1, "model_state_dict": model.state_dict(),
            "optimizer_state_dict": {"state": {}, "param_groups": []}, "scheduler_state_dict": None,
            "best_val_loss": 1.0, "best_eer": float("inf"),
            "config": {"model": {"C": 12, "block_1d_type": "att", "F": 72}}}  # lies, ignored
    torch.save(ckpt, tmp_path / "best.pt")
    loaded = load_redimnet(tmp_path / "best.pt")
    assert loaded.config.architecture() == cfg.architecture() and loaded.hop_length == 160
    assert load_redimnet(tmp_path / "best.pt", hop_length=240).hop_length == 240
    digest = save_redimnet(loaded, tmp_path / "mine.pt")
    again = load_redimnet(tmp_path / "mine.pt")
    assert again.checkpoint_format == "speakerdb" and len(digest) == 64
    assert again.config.to_dict() == loaded.config.to_dict()
    wave = torch.randn(1, 4000, generator=torch.Generator().manual_seed(4)) * 0.1
    with torch.inference_mode():
        torch.testing.assert_close(again(wave), model(wave), atol=0, rtol=0)
        torch.testing.assert_close(again.trace(wave)["pooled_bn"], model.pooled_bn(wave), atol=0, rtol=0)


def test_not_a_redimnet(tmp_path):
    from speakerdb.model.checkpoint import save_speakerdb_model

    save_speakerdb_model(tmp_path / "c.pt", "campplus", {}, {"w": torch.zeros(1)})
    with pytest.raises(CheckpointFormatError, match="a campplus model, not a ReDimNet"):
        load_redimnet(tmp_path / "c.pt")
