"""Safe checkpoint reading and format detection (speakerdb.model.checkpoint)."""

from __future__ import annotations

import os
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from speakerdb.errors import CheckpointFormatError  # noqa: E402
from speakerdb.model.checkpoint import (  # noqa: E402
    read_checkpoint,
    save_speakerdb_model,
    sha256_file,
)

FIX = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "redimnet"
needs_fixtures = pytest.mark.skipif(not (FIX / "manifest.json").exists(),
                                    reason=f"ReDimNet fixtures not found at {FIX}")


def _one_line(e: Exception) -> str:
    msg = str(e)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def _mrl_like(best_eer) -> dict:
    """A small dict shaped like an upstream MRL training checkpoint."""
    sd = OrderedDict([("backbone.backbone.stem.0.weight", torch.zeros(4, 1, 3, 3)),
                      ("projection.linear.weight", torch.zeros(8, 4))])
    return {"epoch": 1, "global_step": 10, "model_state_dict": sd,
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
            "scheduler_state_dict": None, "best_val_loss": 1.5, "best_eer": best_eer,
            "config": {"model": {"C": 12, "block_1d_type": "att"}}}


# ---------------------------------------------------------------- detection of each format

@needs_fixtures
@pytest.mark.parametrize("name, fmt", [
    ("redimnet-official-b0.pt", "redimnet-official"),
    ("redimnet-official-b2.pt", "redimnet-official"),
    ("redimnet-official-b0-badshape.pt", "redimnet-official"),  # loads; the model check fails
    ("mrl-redimnet-b2-best.pt", "redimnet-mrl"),
])
def test_fixture_formats(name, fmt):
    got, payload = read_checkpoint(FIX / "checkpoints" / name)
    assert got == fmt
    if fmt == "redimnet-mrl":
        assert type(payload["best_eer"]).__name__ == "float64"  # needed the numpy allow-list
        assert len(payload["model_state_dict"]) == 563


def test_mrl_with_numpy_scalar_and_with_inf(tmp_path):
    for eer in (np.float64(0.038), float("inf")):
        p = tmp_path / "best.pt"
        torch.save(_mrl_like(eer), p)
        fmt, payload = read_checkpoint(p)
        assert fmt == "redimnet-mrl" and float(payload["best_eer"]) == float(eer)


def test_numpy1_scalar_name_is_accepted_quietly(tmp_path):
    """Files written under numpy 1.x name numpy.core.multiarray.scalar."""
    src, dst = tmp_path / "np2.pt", tmp_path / "np1.pt"
    torch.save(_mrl_like(np.float64(0.25)), src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in data
                data = data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
            zout.writestr(info, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fmt, payload = read_checkpoint(dst)
    assert fmt == "redimnet-mrl" and payload["best_eer"] == 0.25


def test_campplus_state_dict(tmp_path):
    sd = OrderedDict((f"xvector.block{i}.weight", torch.zeros(2)) for i in range(5))
    sd["head.conv1.weight"] = torch.zeros(3)
    p = tmp_path / "campplus.pt"
    torch.save(sd, p)
    assert read_checkpoint(p)[0] == "campplus-state-dict"


REAL_CAMPPLUS = Path.home() / ".cache" / "speakerdb" / "campplus_cn_en_common.pt"


@pytest.mark.skipif(not REAL_CAMPPLUS.exists(), reason=f"real CAM++ weights not cached at {REAL_CAMPPLUS}")
def test_real_campplus_file():
    fmt, sd = read_checkpoint(REAL_CAMPPLUS)
    assert fmt == "campplus-state-dict" and len(sd) == 937


def test_speakerdb_format_round_trip(tmp_path):
    sd = {"a.weight": torch.randn(3, 4), "a.num_batches_tracked": torch.tensor(7)}
    cfg = {"C": 16, "stages": [(1, 2, 1, [(3, 3)], 12)], "name": "x", "none": None}
    p = tmp_path / "sub" / "model.pt"
    digest = save_speakerdb_model(p, "toy", cfg, sd)
    assert digest == sha256_file(p)
    assert not [f for f in p.parent.iterdir() if f.name != "model.pt"]  # no temp files left
    fmt, payload = read_checkpoint(p)
    assert fmt == "speakerdb"
    meta = payload["speakerdb_model"]
    assert meta["format_version"] == 1 and meta["kind"] == "toy"
    assert meta["config"] == {"C": 16, "stages": [[1, 2, 1, [[3, 3]], 12]], "name": "x", "none": None}
    assert torch.equal(payload["state_dict"]["a.weight"], sd["a.weight"])
    assert payload["state_dict"]["a.num_batches_tracked"].dtype == torch.int64
    # it needs no allow-list at all
    torch.load(p, weights_only=True)


def test_speakerdb_format_rejects_non_plain_config(tmp_path):
    with pytest.raises(ValueError):
        save_speakerdb_model(tmp_path / "m.pt", "toy", {"x": object()}, {"w": torch.zeros(1)})


def test_speakerdb_future_version_refused(tmp_path):
    p = tmp_path / "m.pt"
    torch.save({"speakerdb_model": {"format_version": 99, "kind": "toy", "config": {}},
                "state_dict": {"w": torch.zeros(1)}}, p)
    with pytest.raises(CheckpointFormatError, match="format_version 99"):
        read_checkpoint(p)


# ---------------------------------------------------------------- damaged and unknown files

@needs_fixtures
def test_truncated_fixture_is_one_clear_line():
    p = FIX / "checkpoints" / "redimnet-official-b0-truncated.pt"
    with pytest.raises(CheckpointFormatError) as ei:
        read_checkpoint(p)
    msg = _one_line(ei.value)
    assert msg.startswith(f"{p}: truncated or not a PyTorch checkpoint (")


@needs_fixtures
def test_badshape_fixture_names_the_key():
    from speakerdb.model.redimnet import load_redimnet

    p = FIX / "checkpoints" / "redimnet-official-b0-badshape.pt"
    with pytest.raises(CheckpointFormatError) as ei:
        load_redimnet(p)
    msg = _one_line(ei.value)
    assert msg.startswith(str(p)) and "backbone.stem.0.weight" in msg
    assert "[10, 1, 3, 2]" in msg and "[10, 1, 3, 3]" in msg


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipped", [True, False])
def test_malicious_pickle_is_refused_without_running(tmp_path, zipped):
    marker = tmp_path / "PWNED"
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Evil(marker)}, p,
               _use_new_zipfile_serialization=zipped)
    with pytest.raises(CheckpointFormatError) as ei:
        read_checkpoint(p)
    msg = _one_line(ei.value)
    assert not marker.exists()
    assert f"unsafe global {os.system.__module__}.system" in msg and str(p) in msg


def test_numpy_types_beyond_the_allow_list_are_refused(tmp_path):
    """The allow-list is exactly what the formats need: a numpy array or float32 scalar is not."""
    for bad in (np.zeros(3), np.float32(1.0)):
        p = tmp_path / "np.pt"
        torch.save(_mrl_like(bad), p)
        with pytest.raises(CheckpointFormatError, match="refused"):
            read_checkpoint(p)


@pytest.mark.parametrize("content", [os.urandom(4096), b"epoch: 1\nstate_dict: none\n", b"",
                                     b"PK\x03\x04" + os.urandom(200)])
def test_random_and_text_files(tmp_path, content):
    p = tmp_path / "x.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointFormatError) as ei:
        read_checkpoint(p)
    assert _one_line(ei.value).startswith(f"{p}: truncated or not a PyTorch checkpoint")


@pytest.mark.parametrize("obj, found", [
    ({"a": 1, "b": [1, 2]}, "'a', 'b' (2 keys)"),
    ({f"k{i}": torch.zeros(1) for i in range(20)}, "(20 keys)"),
    ([1, 2, 3], "found a list"),
    (torch.zeros(3), "found a Tensor"),
    ({"model_state_dict": {"w": torch.zeros(1)}, "epoch": 3}, "not of an MRL-ReDimNet"),
])
def test_unknown_content(tmp_path, obj, found):
    p = tmp_path / "x.pt"
    torch.save(obj, p)
    with pytest.raises(CheckpointFormatError) as ei:
        read_checkpoint(p)
    msg = _one_line(ei.value)
    assert str(p) in msg and found in msg


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointFormatError, match="no such"):
        read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointFormatError, match="directory"):
        read_checkpoint(tmp_path)


def test_sha256_file_streams(tmp_path):
    import hashlib

    data = os.urandom(3 * 1024 * 1024 + 17)
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert sha256_file(p, chunk=65536) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(p)) == hashlib.sha256(data).hexdigest()
