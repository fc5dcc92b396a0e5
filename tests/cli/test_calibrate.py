"""``speakerdb calibrate``: text and JSON, the stored threshold that identify and verify then
use and report, and its errors."""

from __future__ import annotations

import shutil

import pytest

from tests.synth import write_corpus


@pytest.fixture(scope="session")
def big(tmp_path_factory, cli):
    """8 speakers x 4 utterances through the CLI: 224 leave-one-out nontargets (>= 100, so the
    default --far 0.01 can be estimated)."""
    root = tmp_path_factory.mktemp("cal-corpus") / "corpus"
    write_corpus(root, speakers=8, utterances=4)
    home = tmp_path_factory.mktemp("cal-built") / "home"
    cli("init", "--home", home)
    cli("ingest", root, "--home", home, "-q")
    return home


@pytest.fixture
def big_copy(big, tmp_path):
    dst = tmp_path / "home"
    shutil.copytree(big, dst)
    return dst


def direct(home, far=None, eer=False):
    from speakerdb.api import SpeakerDB
    from speakerdb.eval.calibrate import calibrate, loo_scores
    from speakerdb.model.prefixes import prefix

    with SpeakerDB.open(home, catch_up=False) as db:
        ids, raw = db.store.all_vectors()
        refs = db.store.segment_refs(ids)
    t, n = loo_scores(prefix(raw, 256), [refs[int(i)].speaker for i in ids],
                      [refs[int(i)].path for i in ids], "max")
    return calibrate(t, n, target_far=far, method="eer" if eer else None)


def test_calibrate_json_default_far(cli, big_copy):
    doc = cli("calibrate", "--home", big_copy, "--json").json()
    want = direct(big_copy, far=0.01)
    assert set(doc) >= {"home", "threshold", "method", "far", "frr", "targets", "nontargets",
                        "score_norm", "dim", "aggregation"}
    assert doc["threshold"] == pytest.approx(want.threshold, abs=1e-6)
    assert (doc["method"], doc["targets"], doc["nontargets"]) == ("far=0.01", 32, 224)
    assert doc["far"] == pytest.approx(want.far) and doc["frr"] == pytest.approx(want.frr)
    assert (doc["score_norm"], doc["dim"], doc["aggregation"]) == ("none", 256, "max")
    assert doc["home"] == str(big_copy)


def test_calibrate_text_eer(cli, big_copy):
    run = cli("calibrate", "--home", big_copy, "--eer")
    first, second = run.stdout.splitlines()
    want = direct(big_copy, eer=True)
    assert first.startswith(f"calibrated threshold {want.threshold:.6f} (eer, score-norm none")
    assert "achieved FAR" in second and "FRR" in second and "32 targets" in second
    assert "224 nontargets" in second and run.stderr == ""


def test_identify_and_verify_use_the_stored_threshold(cli, big_copy, corpus):
    _, files = corpus
    before = cli("identify", files["spk00"][0], "--home", big_copy, "--json").json()
    assert before["results"][0]["threshold_source"] == "model default"
    cal = cli("calibrate", "--home", big_copy, "--far", "0.05", "--json").json()
    [r] = cli("identify", files["spk00"][0], "--home", big_copy, "--json").json()["results"]
    assert r["threshold"] == pytest.approx(cal["threshold"], abs=1e-6)
    assert r["threshold_source"] == "calibrated far=0.05 (32 targets, 224 nontargets)"
    v = cli("verify", files["spk00"][0], files["spk00"][1], "--home", big_copy, "--json").json()
    assert v["threshold"] == pytest.approx(cal["threshold"], abs=1e-6)
    assert v["threshold_source"] == r["threshold_source"]
    text = cli("identify", files["spk00"][0], "--home", big_copy).stdout.splitlines()[0]
    assert "[calibrated far=0.05 (32 targets, 224 nontargets)]" in text
    # recalibrating replaces it; an asnorm calibration is not used without asnorm
    cli("calibrate", "--home", big_copy, "--eer", "--score-norm", "asnorm")
    [r] = cli("identify", files["spk00"][0], "--home", big_copy, "--json").json()["results"]
    assert r["threshold_source"] == "model default (the calibration is for score-norm asnorm)"
    [r] = cli("identify", files["spk00"][0], "--home", big_copy, "--json", "--score-norm",
              "asnorm").json()["results"]
    assert r["threshold_source"].startswith("calibrated eer (")
    assert r["score_norm"] == "asnorm" and "margin" in r


def test_calibrate_aggregation_is_stored(cli, big_copy, corpus):
    _, files = corpus
    doc = cli("calibrate", "--home", big_copy, "--far", "0.05", "--aggregation", "topk",
              "--agg-k", "2", "--json").json()
    assert doc["aggregation"] == "topk:2"
    [r] = cli("identify", files["spk01"][0], "--home", big_copy, "--json", "--aggregation",
              "topk", "--agg-k", "2").json()["results"]
    assert r["threshold"] == pytest.approx(doc["threshold"], abs=1e-6)
    assert r["aggregation"] == "topk:2"
    [r] = cli("identify", files["spk01"][0], "--home", big_copy, "--json").json()["results"]
    assert r["threshold_source"] == "model default (the calibration is for aggregation topk:2)"


@pytest.mark.parametrize("args,words", [
    (["--far", "2"], ["--far", "2"]),
    (["--far", "0"], ["--far"]),
    (["--far", "0.01", "--eer"], ["--far", "--eer"]),
    (["--score-norm", "foo"], ["foo"]),
    (["--aggregation", "bad"], ["bad"]),
    (["--aggregation", "topk", "--agg-k", "0"], ["--agg-k"]),
    (["--far", "0.001"], ["nontarget"]),
])
def test_calibrate_bad_values(cli, big, args, words):
    run = cli("calibrate", "--home", big, *args, "--json", expect=2)
    line = run.error_line()
    assert all(w in line for w in words), line
    assert run.stdout == ""


def test_calibrate_needs_enough_data(cli, built, tmp_path):
    run = cli("calibrate", "--home", built.home, expect=2)  # 36 nontargets for 1 %
    assert "100" in run.error_line() and "36" in run.error_line()
    one = tmp_path / "one"
    write_corpus(one, speakers=1, utterances=3)
    home = tmp_path / "h"
    cli("init", "--home", home)
    cli("ingest", one, "--home", home, "-q")
    line = cli("calibrate", "--home", home, "--eer", expect=2).error_line()
    assert "at least 2 speakers" in line and "has 1" in line


def test_calibrate_missing_database(cli, tmp_path):
    run = cli("calibrate", "--home", tmp_path / "nothing", expect=2)
    assert "speakerdb init" in run.error_line()
