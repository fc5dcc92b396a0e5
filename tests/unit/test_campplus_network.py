"""CAM++ network structure, shapes, guards and checkpoint checks, without the real weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from speakerdb.errors import CheckpointFormatError  # noqa: E402
from speakerdb.model.campplus.ops import conv1x1, conv_k3  # noqa: E402
from speakerdb.model.campplus.loader import check_state_dict, load_campplus  # noqa: E402
from speakerdb.model.campplus.network import MIN_SAMPLES, CAMPPlus, CamppWave  # noqa: E402

torch.manual_seed(0)


@pytest.fixture(scope="module")
def model() -> CAMPPlus:
    torch.manual_seed(0)
    return CAMPPlus().eval()


def test_state_dict_layout(model):
    sd = model.state_dict()
    assert len(sd) == 937
    assert sum(p.numel() for p in model.parameters()) == 6_848_544
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 122
    shapes = {
        "head.conv1.weight": (32, 1, 3, 3),
        "head.layer1.0.shortcut.0.weight": (32, 32, 1, 1),
        "head.layer2.0.shortcut.1.running_var": (32,),
        "head.conv2.weight": (32, 32, 3, 3),
        "xvector.tdnn.linear.weight": (128, 320, 5),
        "xvector.tdnn.nonlinear.batchnorm.weight": (128,),
        "xvector.block1.tdnnd12.linear1.weight": (128, 480, 1),
        "xvector.block2.tdnnd24.nonlinear1.batchnorm.bias": (992,),
        "xvector.block3.tdnnd16.cam_layer.linear_local.weight": (32, 128, 3),
        "xvector.block3.tdnnd1.cam_layer.linear1.bias": (64,),
        "xvector.block3.tdnnd1.cam_layer.linear2.weight": (32, 64, 1),
        "xvector.transit1.linear.weight": (256, 512, 1),
        "xvector.transit2.linear.weight": (512, 1024, 1),
        "xvector.transit3.nonlinear.batchnorm.running_mean": (1024,),
        "xvector.out_nonlinear.batchnorm.weight": (512,),
        "xvector.dense.linear.weight": (192, 1024, 1),
        "xvector.dense.nonlinear.batchnorm.running_var": (192,),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "head.layer1.1.shortcut.0.weight" not in sd
    assert "xvector.dense.nonlinear.batchnorm.weight" not in sd  # affine=False
    assert "xvector.dense.linear.bias" not in sd


@pytest.mark.parametrize("dilation", [1, 2])
def test_fast_conv_paths_equal_torch_convs(dilation):
    conv = torch.nn.Conv1d(128, 32, 3, padding=dilation, dilation=dilation, bias=False)
    x = torch.randn(2, 128, 37)
    with torch.no_grad():
        assert torch.allclose(conv_k3(x, conv), conv(x), atol=1e-5)
        one = torch.nn.Conv1d(128, 64, 1)
        assert torch.allclose(conv1x1(x, one), one(x), atol=1e-5)


def test_shapes_and_pooled_path(model):
    feats = torch.randn(2, 231, 80)
    with torch.inference_mode():
        emb = model(feats)
        stats = model.pooled(feats)
        trace = model.trace(feats)
        again = model.embed_from_pooled(stats)
    assert emb.shape == (2, 192) and stats.shape == (2, 1024)
    assert trace["head_out"].shape == (2, 320, 231) and trace["prepool"].shape == (2, 512, 116)
    assert torch.allclose(again, emb, atol=1e-6)
    assert torch.allclose(trace["embedding"], emb, atol=1e-6)
    assert (stats[:, 512:] >= 0).all()


def test_batch_equals_single(model):
    feats = torch.randn(3, 250, 80)
    with torch.inference_mode():
        batch = model(feats)
        for i in range(3):
            assert (batch[i] - model(feats[i : i + 1])[0]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("frames", [0, 1, 2, 3])
def test_short_features_never_nan(model, frames):
    with torch.inference_mode():
        out = model(torch.randn(1, frames, 80))
    assert out.shape == (1, 192) and torch.isfinite(out).all()


@pytest.mark.parametrize("n", [0, 1, 160, 400, 719, MIN_SAMPLES, 1000])
def test_short_waves_never_nan(model, n):
    wave = CamppWave(model)
    x = (torch.rand(1, n) - 0.5) * 0.2
    with torch.inference_mode():
        out, pooled = wave(x), wave.pooled(x)
    assert out.shape == (1, 192) and torch.isfinite(out).all()
    assert pooled.shape == (1, 1024) and torch.isfinite(pooled).all()


def test_short_wave_is_tiled(model):
    wave = CamppWave(model)
    x = torch.rand(1, 300) - 0.5
    tiled = torch.cat([x, x, x], dim=1)[:, :MIN_SAMPLES]
    assert torch.equal(wave.features(x), wave.features(tiled))
    with pytest.raises(ValueError):
        CamppWave(model, min_samples=100)


def test_bad_shapes_are_refused(model):
    with pytest.raises(ValueError):
        model(torch.randn(1, 50, 40))
    with pytest.raises(ValueError):
        CamppWave(model)(torch.randn(1, 1, 800))


# --- loader checks -------------------------------------------------------------------------

def _save(tmp_path, obj, name="ckpt.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_loads_a_valid_state_dict(model, tmp_path):
    loaded = load_campplus(_save(tmp_path, model.state_dict()))
    assert not loaded.training
    feats = torch.randn(1, 120, 80)
    with torch.inference_mode():
        assert torch.allclose(loaded(feats), model(feats), atol=1e-6)


def test_missing_key(model, tmp_path):
    sd = dict(model.state_dict())
    del sd["xvector.block2.tdnnd7.cam_layer.linear1.bias"]
    path = _save(tmp_path, sd)
    with pytest.raises(CheckpointFormatError, match=r"ckpt\.pt.*xvector\.block2\.tdnnd7\."
                       r"cam_layer\.linear1\.bias"):
        load_campplus(path)


def test_wrong_shape(model, tmp_path):
    sd = dict(model.state_dict())
    sd["xvector.dense.linear.weight"] = torch.zeros(512, 1024, 1)
    with pytest.raises(CheckpointFormatError, match=r"xvector\.dense\.linear\.weight.*\(512, "):
        load_campplus(_save(tmp_path, sd))


def test_unexpected_key(model, tmp_path):
    sd = dict(model.state_dict())
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointFormatError, match="unexpected key 'extra.weight'"):
        load_campplus(_save(tmp_path, sd))


def test_not_a_state_dict(tmp_path):
    with pytest.raises(CheckpointFormatError, match="top level is list"):
        load_campplus(_save(tmp_path, [1, 2]))
    with pytest.raises(CheckpointFormatError, match="is a int"):
        check_state_dict({"head.conv1.weight": 3}, "x")


def test_unreadable_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointFormatError, match="junk.pt"):
        load_campplus(junk)
    with pytest.raises(CheckpointFormatError, match="no such file"):
        load_campplus(tmp_path / "absent.pt")


class Custom:
    """Not an allow-listed global: weights_only loading must refuse it."""


def test_unsafe_pickle_refused(tmp_path):
    path = _save(tmp_path, {"x": Custom()})
    with pytest.raises(CheckpointFormatError, match="cannot be read"):
        load_campplus(path)
