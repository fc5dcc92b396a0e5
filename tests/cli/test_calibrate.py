"""``speakerdb calibrate``: text and JSON, the stored thresholds that identify (target FPIR,
the default) and verify (--far / --eer) then use and report, and its errors."""

from __future__ import annotations

import shutil

import pytest

from tests.synth import write_corpus


@pytest.fixture(scope="session")
def big(tmp_path_factory, cli):
    """12 speakers x 4 utterances through the CLI: 528 leave-one-out nontargets (>= 100, so
    --far 0.01 can be estimated) and enough speakers (>= 10) for an identification
    calibration."""
    root = tmp_path_factory.mktemp("cal-corpus") / "corpus"
    write_corpus(root, speakers=12, utterances=4)
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
    from speakerdb.eval.calibrate import calibrate
    from speakerdb.model.prefixes import prefix
    from speakerdb.search.leave_one_out import loo_scores

    with SpeakerDB.open(home, catch_up=False) as db:
        ids, raw = db.store.all_vectors()
        refs = db.store.segment_refs(ids)
    t, n = loo_scores(prefix(raw, 256), [refs[int(i)].speaker for i in ids],
                      [refs[int(i)].path for i in ids], "max")
    return calibrate(t, n, target_far=far, method="eer" if eer else None)


def direct_fpir(home, fpir=0.01):
    from speakerdb.api import SpeakerDB
    from speakerdb.eval.openset_calibration import calibrate_identification
    from speakerdb.model.prefixes import prefix
    from speakerdb.search.leave_one_out import loo_matrix

    with SpeakerDB.open(home, catch_up=False) as db:
        ids, raw = db.store.all_vectors()
        refs = db.store.segment_refs(ids)
    agg, spk = loo_matrix(prefix(raw, 256), [refs[int(i)].speaker for i in ids],
                          [refs[int(i)].path for i in ids], "max")
    return calibrate_identification(agg, spk, fpir)


def test_calibrate_json_default_is_identification(cli, big_copy):
    doc = cli("calibrate", "--home", big_copy, "--json").json()
    want = direct_fpir(big_copy)
    assert doc["purpose"] == "identify" and doc["method"] == "fpir=0.01"
    assert doc["threshold"] == pytest.approx(want.threshold, abs=1e-6)
    assert (doc["speakers"], doc["unknown_probes"], doc["known_probes"]) == (12, 48, 48)
    assert doc["fpir"] == pytest.approx(want.fpir) and doc["dir"] == pytest.approx(want.dir)
    assert (doc["score_norm"], doc["dim"], doc["aggregation"]) == ("none", 256, "max")
    sizes = doc["thresholds_by_gallery_size"]
    assert sizes["10"] < sizes["100"] < sizes["1000"] < sizes["10000"]
    assert doc["speaks_for_speakers"] == 48 and doc["home"] == str(big_copy)


def test_calibrate_far_json_is_verification(cli, big_copy):
    doc = cli("calibrate", "--home", big_copy, "--far", "0.01", "--json").json()
    want = direct(big_copy, far=0.01)
    assert set(doc) >= {"home", "threshold", "method", "far", "frr", "targets", "nontargets",
                        "score_norm", "dim", "aggregation"}
    assert doc["purpose"] == "verify"
    assert doc["threshold"] == pytest.approx(want.threshold, abs=1e-6)
    assert (doc["method"], doc["targets"], doc["nontargets"]) == ("far=0.01", 48, 528)
    assert doc["far"] == pytest.approx(want.far) and doc["frr"] == pytest.approx(want.frr)
    assert (doc["score_norm"], doc["dim"], doc["aggregation"]) == ("none", 256, "max")


def test_calibrate_text(cli, big_copy):
    run = cli("calibrate", "--home", big_copy, "--eer")
    first, second = run.stdout.splitlines()
    want = direct(big_copy, eer=True)
    assert first.startswith(f"calibrated verification threshold {want.threshold:.6f} (eer, "
                            f"score-norm none")
    assert "achieved FAR" in second and "FRR" in second and "48 targets" in second
    assert "528 nontargets" in second and run.stderr == ""
    lines = cli("calibrate", "--home", big_copy, "--fpir", "0.05").stdout.splitlines()
    assert lines[0].startswith("calibrated identification for FPIR 0.05 (score-norm none")
    assert "achieved FPIR" in lines[1] and "48 unknown probes" in lines[1]
    assert "speaks for up to 48 speakers" in lines[2]


def test_identify_uses_the_fpir_calibration_and_verify_the_far_one(cli, big_copy, corpus):
    _, files = corpus
    before = cli("identify", files["spk00"][0], "--home", big_copy, "--json").json()
    assert before["results"][0]["threshold_source"].startswith("learned fpir=0.01 for 12 ")
    far = cli("calibrate", "--home", big_copy, "--far", "0.05", "--json").json()
    [r] = cli("identify", files["spk00"][0], "--home", big_copy, "--json").json()["results"]
    assert r["threshold_source"].startswith("learned fpir=0.01")  # a FAR is not for identify
    v = cli("verify", files["spk00"][0], files["spk00"][1], "--home", big_copy, "--json").json()
    assert v["threshold"] == pytest.approx(far["threshold"], abs=1e-6)
    assert v["threshold_source"] == "calibrated far=0.05 (48 targets, 528 nontargets)"
    cal = cli("calibrate", "--home", big_copy, "--json").json()
    [r] = cli("identify", files["spk00"][0], "--home", big_copy, "--json").json()["results"]
    assert r["threshold"] == pytest.approx(cal["threshold"], abs=1e-6)
    assert r["threshold_source"] == ("calibrated fpir=0.01 for 12 speakers (48 unknown, 48 "
                                     "known probes)")
    text = cli("identify", files["spk00"][0], "--home", big_copy).stdout.splitlines()[0]
    assert "[calibrated fpir=0.01 for 12 speakers" in text
    # an identification calibration is per score space
    cli("calibrate", "--home", big_copy, "--score-norm", "asnorm")
    [r] = cli("identify", files["spk00"][0], "--home", big_copy, "--json", "--score-norm",
              "asnorm").json()["results"]
    assert r["threshold_source"].startswith("calibrated fpir=0.01 for 12 speakers")
    assert r["score_norm"] == "asnorm" and "margin" in r
    stats = cli("stats", "--home", big_copy, "--json").json()
    assert set(stats["identify_calibrations"]) == {"none/max/256", "asnorm/max/256"}
    assert stats["identify_calibrations"]["none/max/256"]["speaks_for_now"] is True


def test_calibrate_aggregation_is_stored(cli, big_copy, corpus):
    _, files = corpus
    doc = cli("calibrate", "--home", big_copy, "--aggregation", "topk", "--agg-k", "2",
              "--json").json()
    assert doc["aggregation"] == "topk:2"
    [r] = cli("identify", files["spk01"][0], "--home", big_copy, "--json", "--aggregation",
              "topk", "--agg-k", "2").json()["results"]
    assert r["threshold"] == pytest.approx(doc["threshold"], abs=1e-6)
    assert r["aggregation"] == "topk:2"
    [r] = cli("identify", files["spk01"][0], "--home", big_copy, "--json").json()["results"]
    assert r["threshold_source"].startswith("learned fpir=0.01")


@pytest.mark.parametrize("args,words", [
    (["--far", "2"], ["--far", "2"]),
    (["--far", "0"], ["--far"]),
    (["--far", "0.01", "--eer"], ["--far", "--eer"]),
    (["--score-norm", "foo"], ["foo"]),
    (["--aggregation", "bad"], ["bad"]),
    (["--aggregation", "topk", "--agg-k", "0"], ["--agg-k"]),
    (["--far", "0.001"], ["nontarget"]),
    (["--fpir", "0"], ["--fpir"]),
    (["--fpir", "0.01", "--far", "0.01"], ["--fpir", "--far"]),
])
def test_calibrate_bad_values(cli, big, args, words):
    run = cli("calibrate", "--home", big, *args, "--json", expect=2)
    line = run.error_line()
    assert all(w in line for w in words), line
    assert run.stdout == ""


def test_calibrate_needs_enough_data(cli, built, tmp_path):
    run = cli("calibrate", "--home", built.home, "--far", "0.01", expect=2)  # 36 nontargets
    assert "100" in run.error_line() and "36" in run.error_line()
    line = cli("calibrate", "--home", built.home, expect=2).error_line()
    assert "identification calibration needs" in line and "at least 10 speakers" in line
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
