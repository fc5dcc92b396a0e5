"""Every command in text form and in ``--json`` form, against DESIGN.md's JSON contract."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synth import write_corpus

DIMS = ["64", "128", "192", "256"]
REPO = Path(__file__).resolve().parents[2]


def norm(v) -> float:
    return math.sqrt(sum(x * x for x in v))


def assert_model(model: dict) -> None:
    assert model["name"] == "spectral"
    assert len(model["sha256"]) == 64 and all(c in "0123456789abcdef" for c in model["sha256"])
    assert model["dims"] == [64, 128, 192, 256]


def assert_candidates_best_first(cands: list[dict]) -> None:
    scores = [c["score"] for c in cands]
    assert scores == sorted(scores, reverse=True), cands
    assert len({c["speaker"] for c in cands}) == len(cands), "a speaker listed twice"
    for c in cands:
        assert set(c) >= {"speaker", "score"}
        assert -1.0 - 1e-5 <= c["score"] <= 1.0 + 1e-5


# init ----------------------------------------------------------------------------------------
def test_init_json(cli, tmp_path):
    home = tmp_path / "h"
    doc = cli("init", "--home", home, "--json").json()
    assert doc["home"] == str(home)
    assert doc["created"] is True
    assert_model(doc["model"])
    assert doc["db_url"].startswith("sqlite:")
    assert (home / "home.json").is_file()


def test_init_text(cli, tmp_path):
    home = tmp_path / "h"
    run = cli("init", "--home", home, "--model", "spectral")
    assert run.stdout.startswith(f"created {home}")
    assert "spectral" in run.stdout
    assert run.stderr == ""


# ingest --------------------------------------------------------------------------------------
def test_ingest_json_counts(built):
    doc = built.ingest_doc
    assert doc["home"] == str(built.home)
    assert doc["inputs"] == 12
    assert doc["added"] == 12
    assert doc["segments"] == 12  # 1.5 s files: one segment each
    assert doc["skipped"] == 0
    assert doc["failed"] == 0
    assert doc["failures"] == []
    assert set(doc["seconds"]) >= {"decode", "embed", "write", "wait"}
    assert all(isinstance(v, float | int) and v >= 0 for v in doc["seconds"].values())
    assert doc["workers"] == 0  # by default, one batch of inputs is read in process


def test_ingest_with_workers(cli, tmp_path, corpus, built):
    root, _ = corpus
    home = tmp_path / "home"
    cli("init", "--home", home)
    doc = cli("ingest", root, "--home", home, "--workers", "2", "--batch", "5", "--json",
              "-q").json()
    assert doc["workers"] == 2 and doc["seconds"]["wait"] > 0
    keys = ("inputs", "added", "segments", "skipped", "failed", "failures")
    assert {k: doc[k] for k in keys} == {k: built.ingest_doc[k] for k in keys}
    text = cli("ingest", root, "--home", home, "--workers", "0").stdout
    assert "12 already in" in text and "0 workers" in text
    assert "--workers" in cli("ingest", root, "--home", home, "--workers", "-1", expect=2).stderr


def test_reingest_is_a_noop(cli, built, home_copy):
    doc = cli("ingest", built.corpus, "--home", home_copy, "--json", "-q").json()
    assert (doc["inputs"], doc["added"], doc["segments"], doc["skipped"], doc["failed"]) == (
        12, 0, 0, 12, 0)
    counts = cli("stats", "--home", home_copy, "--json").json()["counts"]
    assert counts["segments"] == 12 and counts["recordings"] == 12


def test_ingest_text_and_progress_on_stderr(cli, tmp_path, corpus):
    root, _ = corpus
    home = tmp_path / "h"
    cli("init", "--home", home)
    run = cli("ingest", root, "--home", home)  # with the progress bar
    assert "12 inputs: 12 added (12 segments), 0 already in, 0 failed" in run.stdout
    assert "decode" in run.stdout and "embed" in run.stdout and "write" in run.stdout
    assert "error" not in run.stderr
    run = cli("ingest", root, "--home", home, "-q")
    assert "12 inputs: 0 added (0 segments), 12 already in, 0 failed" in run.stdout
    assert run.stderr == ""


def test_ingest_json_with_progress_bar_keeps_stdout_clean(cli, tmp_path, corpus):
    root, _ = corpus
    home = tmp_path / "h"
    cli("init", "--home", home)
    doc = cli("ingest", root, "--home", home, "--json").json()  # bar on stderr only
    assert doc["added"] == 12


def test_ingest_manifest_with_unlabelled_audio(cli, tmp_path, corpus):
    root, files = corpus
    manifest = tmp_path / "list.csv"
    rows = ["path,speaker"]
    for spk in ("spk00", "spk01"):
        for p in files[spk]:
            rows.append(f"{p},{spk}")
    rows.append(f"{files['spk02'][0]},")  # unlabelled
    manifest.write_text("\n".join(rows) + "\n")
    home = tmp_path / "h"
    cli("init", "--home", home)
    doc = cli("ingest", manifest, "--home", home, "--layout", "manifest", "--json", "-q").json()
    assert (doc["inputs"], doc["added"], doc["failed"]) == (7, 7, 0)
    counts = cli("stats", "--home", home, "--json").json()["counts"]
    assert counts["speakers"] == 2
    assert counts["recordings"] == 7
    assert counts["unlabelled_recordings"] == 1


def test_ingest_single_files_and_folders_layout(cli, tmp_path, corpus):
    root, files = corpus
    home = tmp_path / "h"
    cli("init", "--home", home)
    doc = cli("ingest", files["spk03"][0], "--home", home, "--json", "-q").json()
    assert (doc["inputs"], doc["added"]) == (1, 1)
    doc = cli("ingest", root, "--home", home, "--layout", "folders", "--json", "-q").json()
    assert (doc["inputs"], doc["added"], doc["skipped"]) == (12, 11, 1)  # same content: skipped


def test_ingest_reports_unusable_files_and_keeps_the_rest(cli, tmp_path, corpus):
    root, files = corpus
    src = tmp_path / "src"
    write_corpus(src, speakers=1, utterances=2)
    (src / "spk00" / "broken.wav").write_bytes(b"RIFF not really audio")
    home = tmp_path / "h"
    cli("init", "--home", home)
    doc = cli("ingest", src, "--home", home, "--json", "-q", expect=None).json()
    assert (doc["inputs"], doc["added"], doc["failed"]) == (3, 2, 1)
    [f] = doc["failures"]
    assert f["input"].endswith("broken.wav")
    assert "broken.wav" in f["error"] and "\n" not in f["error"]


# identify ------------------------------------------------------------------------------------
def test_identify_ingested_file_json(cli, built):
    path = built.files["spk01"][0]
    doc = cli("identify", path, "--home", built.home, "--json").json()
    [r] = doc["results"]
    assert set(r) >= {"input", "decision", "speaker", "score", "threshold", "candidates"}
    assert r["input"] == str(path)
    assert r["decision"] == "match"
    assert r["speaker"] == "spk01"
    assert r["score"] == pytest.approx(1.0, abs=1e-4)
    assert 0 < r["threshold"] <= 1
    assert len(r["candidates"]) == 4  # top-k 5, but only 4 speakers
    assert r["candidates"][0]["speaker"] == "spk01"
    assert r["candidates"][0]["score"] == pytest.approx(r["score"])
    assert_candidates_best_first(r["candidates"])


@pytest.mark.parametrize("speaker", ["spk00", "spk01", "spk02", "spk03"])
def test_identify_new_utterance_of_known_speaker(cli, built, new_utterances, speaker):
    doc = cli("identify", new_utterances[speaker], "--home", built.home, "--json").json()
    [r] = doc["results"]
    assert r["candidates"][0]["speaker"] == speaker
    assert r["decision"] == "match" and r["speaker"] == speaker
    assert r["score"] < 1.0  # not a copy of a stored file
    assert_candidates_best_first(r["candidates"])


def test_identify_exhaustive_agrees_with_cascade(cli, built, new_utterances):
    paths = list(new_utterances.values())
    cascade = cli("identify", *paths, "--home", built.home, "--json").json()["results"]
    exhaustive = cli("identify", *paths, "--home", built.home, "--json",
                     "--exhaustive").json()["results"]
    assert len(cascade) == len(exhaustive) == 4
    for c, e in zip(cascade, exhaustive, strict=True):
        assert c["input"] == e["input"]
        assert e["speaker"] == c["speaker"]
        assert e["candidates"][0]["speaker"] == c["candidates"][0]["speaker"]
        assert e["score"] == pytest.approx(c["score"], abs=1e-4)
        assert_candidates_best_first(e["candidates"])


def test_identify_several_inputs_in_order(cli, built, new_utterances):
    paths = [new_utterances["spk03"], built.files["spk00"][2], new_utterances["spk01"]]
    doc = cli("identify", *paths, "--home", built.home, "--json").json()
    assert [r["input"] for r in doc["results"]] == [str(p) for p in paths]
    assert [r["speaker"] for r in doc["results"]] == ["spk03", "spk00", "spk01"]


def test_identify_top_k_and_shortlists(cli, built, new_utterances):
    path = new_utterances["spk02"]
    [r] = cli("identify", path, "--home", built.home, "--json", "--top-k", "2").json()["results"]
    assert len(r["candidates"]) == 2
    assert r["candidates"][0]["speaker"] == "spk02"
    # the final shortlist of 3 segments holds only spk02's 3 utterances
    [r] = cli("identify", path, "--home", built.home, "--json",
              "--k64", "6", "--k128", "4", "--k192", "3").json()["results"]
    assert r["segments_scored"] == 3
    assert [c["speaker"] for c in r["candidates"]] == ["spk02"]


def test_identify_threshold_option_makes_unknown(cli, built, new_utterances):
    doc = cli("identify", new_utterances["spk00"], "--home", built.home, "--json",
              "--threshold", "0.999999").json()
    [r] = doc["results"]
    assert r["threshold"] == pytest.approx(0.999999)
    assert r["decision"] == "unknown"
    assert r["speaker"] is None
    assert r["candidates"][0]["speaker"] == "spk00"  # still listed


def test_identify_stranger_is_unknown(cli, built, stranger):
    [r] = cli("identify", stranger, "--home", built.home, "--json").json()["results"]
    assert r["decision"] == "unknown" and r["speaker"] is None
    assert r["score"] < r["threshold"]
    assert_candidates_best_first(r["candidates"])


def test_identify_on_empty_database(cli, tmp_path, corpus):
    _, files = corpus
    home = tmp_path / "h"
    cli("init", "--home", home)
    [r] = cli("identify", files["spk00"][0], "--home", home, "--json").json()["results"]
    assert r["decision"] == "unknown" and r["speaker"] is None and r["candidates"] == []


def test_identify_text(cli, built, new_utterances):
    path = new_utterances["spk02"]
    run = cli("identify", path, "--home", built.home, "--top-k", "3")
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"{path}: spk02 (score ")
    assert "threshold" in lines[0]
    assert len(lines) == 4 and lines[1].split()[-1] == "spk02"
    assert run.stderr == ""


def test_identify_json_reports_threshold_source_norm_and_margin(cli, built, new_utterances):
    [r] = cli("identify", new_utterances["spk03"], "--home", built.home,
              "--json").json()["results"]
    assert r["threshold_source"].startswith("model default, a guess: ")  # 4 speakers
    assert r["score_norm"] == "none" and r["aggregation"] == "max"
    assert r["cosine"] == pytest.approx(r["score"])
    assert r["margin"] == pytest.approx(r["candidates"][0]["score"] - r["candidates"][1]["score"],
                                        abs=2e-6)
    assert "cohort" not in r and all("cosine" not in c for c in r["candidates"])
    [g] = cli("identify", new_utterances["spk03"], "--home", built.home, "--json",
              "--threshold", "0.5").json()["results"]
    assert g["threshold_source"] == "given"


def test_identify_asnorm_json_and_text(cli, built, new_utterances):
    path = new_utterances["spk01"]
    [r] = cli("identify", path, "--home", built.home, "--json", "--score-norm",
              "asnorm").json()["results"]
    assert r["score_norm"] == "asnorm"
    assert r["cohort"] == {"source": "database", "size": 4, "top_n": 4}
    assert r["threshold_source"].startswith("asnorm default, a guess: ")
    assert r["candidates"][0]["speaker"] == "spk01"
    scores = [c["score"] for c in r["candidates"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 1.0  # not a cosine
    assert all(-1 <= c["cosine"] <= 1 for c in r["candidates"])
    assert r["cosine"] == r["candidates"][0]["cosine"]
    assert r["margin"] == pytest.approx(scores[0] - scores[1], abs=2e-6)
    assert r["decision"] == ("match" if r["score"] >= r["threshold"] else "unknown")
    [m] = cli("identify", path, "--home", built.home, "--json", "--score-norm", "asnorm",
              "--threshold", "-100", "--margin", str(scores[0] - scores[1] + 0.01)
              ).json()["results"]
    assert m["decision"] == "unknown" and m["min_margin"] == pytest.approx(
        scores[0] - scores[1] + 0.01)
    run = cli("identify", path, "--home", built.home, "--score-norm", "asnorm",
              "--cohort-top", "2")
    first, *cands = run.stdout.splitlines()
    assert first.startswith(f"{path}: ") and "asnorm, cosine " in first
    assert "[asnorm default, a guess" in first and "margin " in first
    assert len(cands) == 4 and all("(cosine " in c for c in cands)
    assert cands[0].split()[-1] == "spk01"


def test_identify_asnorm_cohort_file(cli, built, new_utterances, tmp_path):
    import numpy as np

    from speakerdb.search.asnorm import Cohort

    path = tmp_path / "cohort.npz"
    Cohort.from_vectors(np.random.default_rng(0).normal(size=(20, 256))).save(path)
    [r] = cli("identify", new_utterances["spk02"], "--home", built.home, "--json",
              "--score-norm", "asnorm", "--cohort", path, "--cohort-top", "5").json()["results"]
    assert r["cohort"] == {"source": str(path), "size": 20, "top_n": 5}
    assert r["candidates"][0]["speaker"] == "spk02"


@pytest.mark.parametrize("rule", ["centroid", "topk", "mean", "top2"])
def test_identify_aggregations(cli, built, new_utterances, rule):
    [r] = cli("identify", new_utterances["spk00"], "--home", built.home, "--json",
              "--aggregation", rule, "--agg-k", "2").json()["results"]
    assert r["aggregation"] == ("topk:2" if rule == "topk" else rule)
    assert r["candidates"][0]["speaker"] == "spk00"
    assert_candidates_best_first(r["candidates"])


def test_identify_min_duration(cli, built, tmp_path):
    import soundfile as sf

    from tests.synth import RATE, voice

    clip = tmp_path / "clip.wav"
    sf.write(clip, voice(1, 40, 0.8), RATE, subtype="PCM_16")
    [ok] = cli("identify", clip, "--home", built.home, "--json", "--min-duration",
               "0.5").json()["results"]
    assert ok["candidates"][0]["speaker"] == "spk01"
    run = cli("identify", clip, "--home", built.home, "--json", "--min-duration", "1.0",
              expect=2)
    [bad] = run.json()["results"]
    assert bad == {"input": str(clip),
                   "error": f"{clip}: too short: 0.8 s of signal, need at least 1.0 s"}
    run = cli("identify", clip, "--home", built.home, "--min-duration", "1.0", expect=2)
    assert "need at least 1.0 s" in run.error_line()


def test_ingest_min_duration_records_the_failure(cli, tmp_path):
    import soundfile as sf

    from tests.synth import RATE, voice

    src = tmp_path / "src" / "spk05"
    src.mkdir(parents=True)
    sf.write(src / "clip.wav", voice(5, 0, 0.8), RATE, subtype="PCM_16")
    home = tmp_path / "h"
    cli("init", "--home", home)
    doc = cli("ingest", src.parent, "--home", home, "--json", "-q", "--min-duration",
              "1.0").json()
    assert (doc["added"], doc["failed"]) == (0, 1)
    [f] = doc["failures"]
    assert f["reason"] == "too_short"
    assert f["error"] == f"{src / 'clip.wav'}: too short: 0.8 s of signal, need at least 1.0 s"
    doc = cli("ingest", src.parent, "--home", home, "--json", "-q", "--retry-failed").json()
    assert (doc["added"], doc["failed"]) == (1, 0)  # the default gate is 0.5 s


# verify --------------------------------------------------------------------------------------
def test_verify_json_same_vs_different(cli, built):
    a, a2 = built.files["spk01"][0], built.files["spk01"][1]
    b = built.files["spk02"][1]
    same = cli("verify", a, a2, "--home", built.home, "--json").json()
    diff = cli("verify", a, b, "--home", built.home, "--json").json()
    for doc in (same, diff):
        assert set(doc) >= {"scores", "score", "threshold", "decision"}
        assert sorted(doc["scores"], key=int) == DIMS
        assert doc["score"] == pytest.approx(doc["scores"]["256"])
        assert all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in doc["scores"].values())
    for d in DIMS:
        assert same["scores"][d] > diff["scores"][d]
    assert same["decision"] == "same" and same["score"] >= same["threshold"]
    assert diff["decision"] == "different" and diff["score"] < diff["threshold"]


def test_verify_file_with_itself_scores_one(cli, built):
    a = built.files["spk00"][0]
    doc = cli("verify", a, a, "--home", built.home, "--json").json()
    assert all(s == pytest.approx(1.0, abs=1e-5) for s in doc["scores"].values())


def test_verify_without_database_and_threshold_option(cli, built, no_home):
    a, b = built.files["spk03"][0], built.files["spk03"][2]
    doc = cli("verify", a, b, "--home", no_home, "--json").json()
    assert doc["decision"] == "same"
    strict = cli("verify", a, b, "--home", no_home, "--json", "--threshold", "0.9999999").json()
    assert strict["threshold"] == pytest.approx(0.9999999)
    assert strict["decision"] == "different"
    assert strict["scores"] == doc["scores"]
    assert not no_home.exists()


def test_verify_text(cli, built):
    run = cli("verify", built.files["spk00"][0], built.files["spk01"][0], "--home", built.home)
    first, second = run.stdout.splitlines()[:2]
    assert first.startswith("different (score ")
    for d in DIMS:
        assert f"{d}-D " in second


def test_verify_reports_threshold_source(cli, built, no_home):
    a, b = built.files["spk01"][0], built.files["spk01"][1]
    doc = cli("verify", a, b, "--home", built.home, "--json").json()
    assert doc["threshold_source"] == "model default" and doc["score_norm"] == "none"
    assert doc["cosines"] == doc["scores"]
    given = cli("verify", a, b, "--home", no_home, "--json", "--threshold", "0.3").json()
    assert given["threshold_source"] == "given"
    assert "[model default]" in cli("verify", a, b, "--home", built.home).stdout


def test_verify_asnorm_with_database_and_cohort_file(cli, built, no_home, tmp_path):
    import numpy as np

    from speakerdb.search.asnorm import Cohort

    a, b = built.files["spk02"][0], built.files["spk02"][1]
    plain = cli("verify", a, b, "--home", built.home, "--json").json()
    doc = cli("verify", a, b, "--home", built.home, "--json", "--score-norm", "asnorm").json()
    assert doc["score_norm"] == "asnorm" and doc["threshold_source"] == "asnorm default"
    assert doc["cosines"] == plain["scores"]
    assert doc["score"] == doc["scores"]["256"] and doc["score"] != plain["score"]
    assert doc["cohort"] == {"source": "database", "size": 4, "top_n": 4}
    path = tmp_path / "c.npz"
    Cohort.from_vectors(np.random.default_rng(2).normal(size=(12, 256))).save(path)
    doc = cli("verify", a, b, "--home", no_home, "--json", "--score-norm", "asnorm",
              "--cohort", path).json()
    assert doc["cohort"] == {"source": str(path), "size": 12, "top_n": 12}
    assert sorted(doc["scores"], key=int) == DIMS
    assert not no_home.exists()


# embed ---------------------------------------------------------------------------------------
def test_embed_json(cli, built):
    paths = [built.files["spk00"][0], built.files["spk02"][1]]
    doc = cli("embed", *paths, "--home", built.home, "--json").json()
    assert_model(doc["model"])
    assert doc["model"]["sha256"] == built.init_doc["model"]["sha256"]
    assert [r["input"] for r in doc["results"]] == [str(p) for p in paths]
    for r in doc["results"]:
        assert r["duration_s"] == pytest.approx(1.5, abs=0.01)
        assert sorted(r["embeddings"], key=int) == DIMS
        for d in DIMS:
            v = r["embeddings"][d]
            assert len(v) == int(d)
            assert norm(v) == pytest.approx(1.0, abs=1e-4)
        assert "raw" not in r


def test_embed_raw_prefixes_are_normalised_slices(cli, built):
    doc = cli("embed", built.files["spk01"][2], "--home", built.home, "--json", "--raw").json()
    [r] = doc["results"]
    raw = r["raw"]
    assert len(raw) == 256
    for d in DIMS:
        head = raw[: int(d)]
        n = norm(head)
        assert r["embeddings"][d] == pytest.approx([x / n for x in head], abs=1e-5)


def test_embed_works_without_any_database(cli, built, tmp_path):
    missing = tmp_path / "never" / "made"
    doc = cli("embed", built.files["spk00"][0], "--home", missing, "--json").json()
    assert_model(doc["model"])
    with_db = cli("embed", built.files["spk00"][0], "--home", built.home, "--json").json()
    assert doc["results"][0]["embeddings"] == with_db["results"][0]["embeddings"]
    assert not missing.exists() and not missing.parent.exists()


def test_embed_explicit_model(cli, built, no_home):
    doc = cli("embed", built.files["spk00"][0], "--model", "spectral", "--json").json()
    assert_model(doc["model"])
    assert not no_home.exists()


def test_embed_text(cli, built):
    path = built.files["spk02"][0]
    run = cli("embed", path, "--home", built.home)
    [line] = run.stdout.splitlines()
    assert line.startswith(f"{path}: 1.50 s, 1 segment(s), 64-D [")


# check and stats -----------------------------------------------------------------------------
def test_check_json_ok(cli, built):
    doc = cli("check", "--home", built.home, "--json").json()
    assert doc["ok"] is True
    assert doc["problems"] == []
    assert doc["repaired"] is False
    assert doc["counts"]["segments"] == 12
    assert doc["counts"]["recordings"] == 12
    assert doc["counts"]["speakers"] == 4
    assert doc["mode"] == "full" and isinstance(doc["seconds"], float) and doc["seconds"] >= 0
    assert doc["notes"] == []


def test_check_text_ok(cli, built):
    run = cli("check", "--home", built.home)
    line = run.stdout.strip()
    assert line.startswith("check ok: 12 segments, 12 recordings, 4 speakers (full check, ")
    assert line.endswith(" s)")


def test_stats_json(cli, built):
    doc = cli("stats", "--home", built.home, "--json").json()
    assert doc["home"] == str(built.home)
    assert_model(doc["model"])
    c = doc["counts"]
    assert (c["speakers"], c["recordings"], c["segments"]) == (4, 12, 12)
    assert (c["unlabelled_recordings"], c["failures"]) == (0, 0)
    assert c["ingest_runs"] >= 1
    assert c["duration_s"] == pytest.approx(18.0, abs=0.05)
    v = doc["vectors"]
    assert (v["dims"], v["ntotal"], v["rows"], v["removed_rows"]) == ([64, 128, 192, 256], 12, 12, 0)
    # per row: 256 floats, its id, the inverse norms of the 64, 128 and 192-D prefixes
    assert v["rows_bytes"] == 12 * (256 * 4 + 8 + 3 * 4)
    assert v["screen"] == {"dim": 64, "index_key": "Flat", "index_param": "", "bytes": 0}


def test_stats_text(cli, built):
    run = cli("stats", "--home", built.home)
    assert "4 speakers, 12 recordings (0 unlabelled), 12 segments" in run.stdout
    assert "model spectral" in run.stdout
    assert "vectors: 12 at 64/128/192/256-D, 12528 bytes; screened exactly at 64-D" in run.stdout


def test_speakerdb_home_environment_variable(built):
    from typer.testing import CliRunner

    from speakerdb.cli.main import app

    result = CliRunner(env={"SPEAKERDB_HOME": str(built.home)}).invoke(app, ["stats", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["segments"] == 12


# help ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["init", "ingest", "identify", "verify", "embed", "check",
                                     "stats", "calibrate"])
def test_command_help(cli, command):
    run = cli(command, "--help")
    assert "Usage:" in run.stdout and command in run.stdout
    assert "--home" in run.stdout and "--json" in run.stdout


# a real process ------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_process_json_stdout_is_one_document(tmp_path, corpus):
    """Progress bars, warnings and logs of a real process must stay off stdout."""
    root, files = corpus
    home = tmp_path / "h"
    env = {**os.environ, "SPEAKERDB_HOME": str(tmp_path / "unused")}
    env.pop("SPEAKERDB_DEBUG", None)

    def run(*args):
        p = subprocess.run([sys.executable, "-m", "speakerdb.cli.main", *map(str, args)],
                           capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
        assert "Traceback" not in p.stderr, p.stderr
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    assert run("init", "--home", home, "--json")["created"] is True
    assert run("ingest", root, "--home", home, "--json")["added"] == 12  # bar on stderr
    [r] = run("identify", files["spk02"][1], "--home", home, "--json")["results"]
    assert r["speaker"] == "spk02"
