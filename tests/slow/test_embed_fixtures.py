"""`speakerdb embed --model <fixture checkpoint> --vad energy --raw --json <fixture wav>`
reproduces the reference outputs of the original implementations for every fixture checkpoint
and input. The references embed each input whole, and some inputs are not speech (chirps,
noise): ``--vad energy`` keeps them whole, where the networks' default, Silero, finds no
speech in them."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from speakerdb.cli.main import app

FIX = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "redimnet"
CASES = [("mrl-redimnet-b2-best.pt", "mrl-b2"), ("redimnet-official-b0.pt", "official-b0"),
         ("redimnet-official-b2.pt", "official-b2")]
INPUTS = ["harmonic_3s", "noise_1s", "chirp_noise_5p5s"]


@pytest.fixture(scope="module")
def fixtures():
    if not (FIX / "checkpoints").is_dir():
        pytest.skip(f"ReDimNet fixtures not found at {FIX}")
    return FIX


@pytest.mark.slow
@pytest.mark.parametrize("ckpt,expected", CASES)
def test_embed_reproduces_fixtures(fixtures, ckpt, expected, tmp_path):
    wavs = [str(fixtures / "inputs" / f"{name}.wav") for name in INPUTS]
    out = CliRunner().invoke(app, ["embed", "--home", str(tmp_path / "none"), "--model",
                                   str(fixtures / "checkpoints" / ckpt), "--vad", "energy", "--raw",
                                   "--json", *wavs])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    for name, result in zip(INPUTS, doc["results"]):
        exp = fixtures / "expected" / expected / name
        if expected.startswith("mrl"):
            assert doc["model"]["dims"] == [64, 128, 192, 256]
            np.testing.assert_allclose(result["raw"], np.load(exp / "embedding_raw256.npy")[0],
                                       atol=1e-4, rtol=1e-4)
            for d in (64, 128, 192, 256):
                np.testing.assert_allclose(result["embeddings"][str(d)],
                                           np.load(exp / f"emb{d}_l2.npy")[0], atol=1e-5)
        else:
            assert doc["model"]["dims"] == [192]
            raw = np.load(exp / "embedding.npy")[0]
            np.testing.assert_allclose(result["raw"], raw, atol=1e-4, rtol=1e-4)
            np.testing.assert_allclose(result["embeddings"]["192"], raw / np.linalg.norm(raw),
                                       atol=1e-5)


@pytest.mark.slow
def test_damaged_checkpoints_give_one_line(fixtures, tmp_path):
    for name, needle in (("redimnet-official-b0-truncated.pt", "truncated"),
                         ("redimnet-official-b0-badshape.pt", "backbone.stem.0.weight")):
        out = CliRunner().invoke(app, ["embed", "--model", str(fixtures / "checkpoints" / name),
                                       str(fixtures / "inputs" / "noise_1s.wav")])
        assert out.exit_code == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.output


@pytest.mark.slow
def test_both_checkpoint_kinds_back_a_database(fixtures, tmp_path):
    mrl = str(fixtures / "checkpoints" / "mrl-redimnet-b2-best.pt")
    r = CliRunner().invoke(app, ["init", "--home", str(tmp_path / "a"), "--model", mrl, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["model"]["dims"] == [64, 128, 192, 256]
    off = str(fixtures / "checkpoints" / "redimnet-official-b0.pt")
    r = CliRunner().invoke(app, ["init", "--home", str(tmp_path / "b"), "--model", off, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["model"]["dims"] == [192]
    r = CliRunner().invoke(app, ["stats", "--home", str(tmp_path / "b"), "--json"])
    assert json.loads(r.stdout)["space"] == {"name": "identity", "dims": [192]}
