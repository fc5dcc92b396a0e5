"""Exit codes (0 ok, 1 check failed, 2 bad usage or input) and one stderr line, never a
traceback (the ``cli`` fixture asserts "Traceback" appears in no output)."""

from __future__ import annotations

import json
import os

import pytest


# a database that is not there ----------------------------------------------------------------
@pytest.mark.parametrize("command", ["identify", "ingest", "check", "stats"])
def test_missing_database(cli, built, tmp_path, command):
    home = tmp_path / "nothing-here"
    args = {"identify": [built.files["spk00"][0]], "ingest": [built.corpus]}.get(command, [])
    run = cli(command, *args, "--home", home, expect=2)
    line = run.error_line()
    assert str(home) in line and "speakerdb init" in line
    assert run.stdout == ""
    assert not home.exists()


@pytest.mark.parametrize("command", ["check", "stats"])
def test_missing_database_json_mode_prints_nothing_on_stdout(cli, tmp_path, command):
    run = cli(command, "--home", tmp_path / "nothing", "--json", expect=2)
    run.error_line()
    assert run.stdout == ""


# bad inputs among good ones ------------------------------------------------------------------
def test_identify_nonexistent_input_json(cli, built, tmp_path):
    good, missing = built.files["spk01"][0], tmp_path / "nope.wav"
    run = cli("identify", missing, good, "--home", built.home, "--json", expect=2)
    bad, ok = run.json()["results"]
    assert bad["input"] == str(missing)
    assert str(missing) in bad["error"] and "\n" not in bad["error"]
    assert "decision" not in bad
    assert ok["input"] == str(good) and ok["speaker"] == "spk01"


def test_identify_nonexistent_input_text(cli, built, tmp_path):
    good, missing = built.files["spk01"][0], tmp_path / "nope.wav"
    run = cli("identify", good, missing, "--home", built.home, expect=2)
    assert str(missing) in run.error_line()
    assert run.stdout.startswith(f"{good}: spk01")


def test_embed_nonexistent_input_json(cli, built, tmp_path):
    good, missing = built.files["spk02"][0], tmp_path / "nope.wav"
    run = cli("embed", good, missing, "--home", tmp_path / "no-db", "--json", expect=2)
    doc = run.json()
    assert doc["model"]["name"] == "spectral"
    ok, bad = doc["results"]
    assert bad == {"input": str(missing), "error": bad["error"]}
    assert str(missing) in bad["error"]
    assert len(ok["embeddings"]["256"]) == 256


def test_embed_nonexistent_input_text(cli, built, tmp_path):
    missing = tmp_path / "nope.wav"
    run = cli("embed", missing, built.files["spk02"][0], "--home", built.home, expect=2)
    assert str(missing) in run.error_line()
    assert len(run.stdout.splitlines()) == 1


@pytest.mark.parametrize("kind", ["directory", "text", "empty", "short", "silent"])
def test_unusable_audio(cli, built, tmp_path, kind):
    import numpy as np
    import soundfile as sf

    p = tmp_path / f"{kind}.wav"
    if kind == "directory":
        p.mkdir()
    elif kind == "text":
        p.write_text("hello, not audio\n")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "short":
        sf.write(p, np.full(1600, 0.3, np.float32) * np.sin(np.arange(1600)), 16000)
    else:
        sf.write(p, np.zeros(32000, np.float32), 16000)
    for command in ("identify", "embed"):
        run = cli(command, p, "--home", built.home, expect=2)
        assert str(p) in run.error_line()
    run = cli("verify", p, built.files["spk00"][0], "--home", built.home, expect=2)
    assert str(p) in run.error_line()


def test_verify_nonexistent_input(cli, built, tmp_path):
    missing = tmp_path / "nope.wav"
    run = cli("verify", built.files["spk00"][0], missing, "--home", built.home, "--json",
              expect=2)
    assert str(missing) in run.error_line()
    assert run.stdout == ""


# bad usage -----------------------------------------------------------------------------------
def test_bad_layout(cli, built, home_copy):
    run = cli("ingest", built.corpus, "--home", home_copy, "--layout", "bogus", expect=2)
    line = run.error_line()  # no progress bar before the error either
    assert "layout 'bogus'" in line
    assert run.stdout == ""


def test_ingest_nonexistent_source(cli, home_copy, tmp_path):
    missing = tmp_path / "no-such-dir"
    run = cli("ingest", missing, "--home", home_copy, "--json", expect=2)
    assert str(missing) in run.error_line()
    assert run.stdout == ""


def test_manifest_with_a_bad_line(cli, built, home_copy, tmp_path):
    manifest = tmp_path / "list.csv"
    good = built.files["spk00"][0]
    manifest.write_text(f"path,speaker\n{good},spk00\n,spk01\n")
    run = cli("ingest", manifest, "--home", home_copy, "--layout", "manifest", expect=2)
    line = run.error_line()
    assert str(manifest) in line and "line 3" in line
    # nothing was ingested from a manifest that does not parse
    stats = cli("stats", "--home", home_copy, "--json").json()
    assert stats["counts"]["ingest_runs"] == 1


def test_links_that_lead_nowhere_are_failures_with_reasons(cli, home_copy, tmp_path):
    import soundfile as sf

    from tests.synth import RATE, voice

    root = tmp_path / "src"
    (root / "eve").mkdir(parents=True)
    sf.write(root / "eve" / "e0.wav", voice(7, 0), RATE, subtype="PCM_16")
    (root / "eve" / "gone.wav").symlink_to(root / "eve" / "nowhere.wav")
    (root / "eve" / "loop").symlink_to(root)
    doc = cli("ingest", root, "--home", home_copy, "--json", "-q").json()
    assert (doc["inputs"], doc["added"], doc["failed"]) == (3, 1, 2)
    errors = sorted(f["error"] for f in doc["failures"])
    assert errors[0] == (f"{root}/eve/gone.wav: dangling symbolic link (its target "
                         f"{root}/eve/nowhere.wav does not exist)")
    assert errors[1] == f"{root}/eve/loop: symbolic link loop (a folder that contains itself)"
    run = cli("ingest", root, "--home", home_copy, "--strict", "-q", expect=2)
    assert "2 failed" in run.stdout


def test_manifest_path_with_two_speakers_fails_alone(cli, built, home_copy, tmp_path):
    import shutil

    shutil.copy(built.files["spk00"][0], tmp_path / "a.wav")
    shutil.copy(built.files["spk01"][0], tmp_path / "b.wav")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,speaker\na.wav,spk00\nb.wav,spk01\na.wav,spk05\n")
    doc = cli("ingest", manifest, "--home", home_copy, "--json", "-q").json()
    assert (doc["inputs"], doc["failed"], doc["skipped"]) == (2, 1, 1)
    [f] = doc["failures"]
    assert f["input"] == str(tmp_path / "a.wav") and f["reason"] == "conflicting_labels"
    assert "different speakers ('spk00', 'spk05')" in f["error"]


def test_manifest_without_path_column(cli, home_copy, tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("file,speaker\na.wav,x\n")
    run = cli("ingest", manifest, "--home", home_copy, expect=2)  # auto: .csv is a manifest
    line = run.error_line()
    assert str(manifest) in line and "path" in line


@pytest.mark.parametrize("command", ["init", "embed", "verify"])
def test_unknown_model_name(cli, built, tmp_path, command):
    home = tmp_path / "h"
    audio = {"init": [], "embed": [built.files["spk00"][0]],
             "verify": [built.files["spk00"][0], built.files["spk00"][1]]}[command]
    run = cli(command, *audio, "--home", home, "--model", "no-such-model", "--json", expect=2)
    assert "no-such-model" in run.error_line()
    assert run.stdout == ""
    assert not (home / "home.json").exists()


@pytest.mark.parametrize("command", ["init", "embed"])
def test_checkpoint_path_given(cli, built, tmp_path, command):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(os.urandom(4096))
    home = tmp_path / "h"
    audio = [built.files["spk00"][0]] if command == "embed" else []
    run = cli(command, *audio, "--home", home, "--model", ckpt, expect=2)
    assert str(ckpt) in run.error_line()
    assert run.stdout == ""
    assert not (home / "home.json").exists()


@pytest.mark.parametrize("command", ["verify", "embed"])
def test_model_other_than_the_databases_is_an_error(cli, built, command):
    audio = {"embed": [built.files["spk00"][0]],
             "verify": [built.files["spk00"][0], built.files["spk00"][1]]}[command]
    run = cli(command, *audio, "--home", built.home, "--model", "campplus", "--json",
              expect=2)
    line = run.error_line()
    assert "spectral" in line and "campplus" in line and str(built.home) in line
    assert run.stdout == ""
    same = cli(command, *audio, "--home", built.home, "--model", "spectral", "--json").json()
    assert same


def test_directory_as_model(cli, tmp_path):
    run = cli("init", "--home", tmp_path / "h", "--model", tmp_path, expect=2)
    assert str(tmp_path) in run.error_line()


@pytest.mark.parametrize("sizes", [("10", "20", "5"), ("100", "50", "60"), ("5", "5", "6")])
def test_shortlists_that_do_not_shrink(cli, built, sizes):
    k64, k128, k192 = sizes
    run = cli("identify", built.files["spk00"][0], "--home", built.home, "--json",
              "--k64", k64, "--k128", k128, "--k192", k192, expect=2)
    assert "shrink" in run.error_line()
    assert run.stdout == ""


def test_bad_aggregation(cli, built):
    run = cli("identify", built.files["spk00"][0], "--home", built.home,
              "--aggregation", "median", expect=2)
    assert "median" in run.error_line()


@pytest.mark.parametrize("args,words", [
    (["--score-norm", "foo"], ["--score-norm", "foo"]),
    (["--aggregation", "bad"], ["bad", "centroid"]),
    (["--aggregation", "topk", "--agg-k", "0"], ["--agg-k"]),
    (["--score-norm", "asnorm", "--cohort-top", "9"], ["--cohort-top", "1..4"]),
    (["--min-duration", "-1"], ["--min-duration"]),
    (["--threshold", "nan"], ["--threshold", "finite", "nan"]),
    (["--threshold", "inf"], ["--threshold", "finite", "inf"]),
    (["--threshold", "-inf"], ["--threshold", "finite"]),
    (["--margin", "nan"], ["--margin", "finite", "nan"]),
    (["--margin", "inf"], ["--margin", "finite"]),
])
def test_identify_bad_scoring_options(cli, built, args, words):
    run = cli("identify", built.files["spk00"][0], "--home", built.home, "--json", *args,
              expect=2)
    line = run.error_line()
    assert all(w in line for w in words), line
    assert run.stdout == ""


def test_identify_cohort_with_other_dimensions(cli, built, tmp_path):
    import numpy as np

    from speakerdb.search.asnorm import Cohort

    path = tmp_path / "c128.npz"
    Cohort.from_vectors(np.random.default_rng(0).normal(size=(6, 128))).save(path)
    run = cli("identify", built.files["spk00"][0], "--home", built.home, "--score-norm",
              "asnorm", "--cohort", path, "--json", expect=2)
    line = run.error_line()
    assert str(path) in line and "128-D" in line and "256-D" in line
    assert run.stdout == ""
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a cohort")
    run = cli("identify", built.files["spk00"][0], "--home", built.home, "--score-norm",
              "asnorm", "--cohort", broken, expect=2)
    assert str(broken) in run.error_line()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("with_db", [True, False])
def test_verify_non_finite_threshold(cli, built, no_home, value, with_db):
    a, b = built.files["spk00"][0], built.files["spk00"][1]
    home = built.home if with_db else no_home
    run = cli("verify", a, b, "--home", home, "--threshold", value, "--json", expect=2)
    assert "--threshold must be a finite number" in run.error_line()
    assert run.stdout == ""


def test_serve_non_finite_upload_limit(cli, built):
    run = cli("serve", "--home", built.home, "--max-upload-mb", "inf", expect=2)
    assert "--max-upload-mb must be a finite number" in run.error_line()
    cli("serve", "--home", built.home, "--max-upload-mb", "nan", expect=2)  # below the minimum


def test_verify_asnorm_without_database_needs_a_cohort(cli, built, no_home, tmp_path):
    a, b = built.files["spk00"][0], built.files["spk00"][1]
    run = cli("verify", a, b, "--home", no_home, "--score-norm", "asnorm", "--json", expect=2)
    assert "--cohort FILE" in run.error_line()
    assert run.stdout == ""
    run = cli("verify", a, b, "--home", built.home, "--score-norm", "foo", expect=2)
    assert "foo" in run.error_line()


def test_asnorm_on_a_one_speaker_database(cli, built, tmp_path):
    from tests.synth import write_corpus

    write_corpus(tmp_path / "one", speakers=1, utterances=2)
    home = tmp_path / "h"
    cli("init", "--home", home)
    cli("ingest", tmp_path / "one", "--home", home, "-q")
    run = cli("identify", built.files["spk00"][0], "--home", home, "--score-norm", "asnorm",
              expect=2)
    assert "fewer than 2 labelled speakers" in run.error_line()


@pytest.mark.parametrize("args", [["identify"], ["identify", "x.wav", "--top-k", "0"],
                                  ["verify", "only-one.wav"], ["ingest"], ["nosuchcommand"]])
def test_argument_errors_exit_2(cli, built, args):
    run = cli(*args, "--home", built.home, expect=2)
    assert run.stdout == ""


def test_init_where_a_file_is(cli, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert str(f) in cli("init", "--home", f, expect=2).error_line()


# init twice ----------------------------------------------------------------------------------
def test_init_twice_with_the_same_model(cli, built, home_copy):
    doc = cli("init", "--home", home_copy, "--json").json()
    assert doc["created"] is False
    assert doc["model"] == built.init_doc["model"]
    run = cli("init", "--home", home_copy, "--model", "spectral")
    assert run.stdout.startswith("already exists:")
    counts = cli("stats", "--home", home_copy, "--json").json()["counts"]
    assert counts["segments"] == 12  # nothing was wiped


# check after tampering -----------------------------------------------------------------------
def _rows_file(home):
    [p] = home.glob("vectors-*.f32")
    return p


def _delete_rows(home):
    p = _rows_file(home)
    p.unlink()
    return f"{p.name}: vector file is missing"


def _garbage_json(home):
    (home / "vectors.json").write_text("{not json")
    return "vectors.json: unreadable description"


def _wrong_ntotal(home):
    p = home / "vectors.json"
    info = json.loads(p.read_text())
    info["ntotal"] += 3
    p.write_text(json.dumps(info))
    return "vectors.json: says 15 vectors, its rows hold 12"


def _wrong_model(home):
    p = home / "vectors.json"
    info = json.loads(p.read_text())
    info["model_sha256"] = "0" * 64
    p.write_text(json.dumps(info))
    return "vectors: model sha256 000000000000… but the database model is"


def _truncated_rows(home):
    p = _rows_file(home)
    p.write_bytes(p.read_bytes()[:100])
    return f"{p.name}: 100 bytes, its description needs {12 * 256 * 4}"


@pytest.mark.parametrize("tamper", [_delete_rows, _garbage_json, _wrong_ntotal, _wrong_model,
                                    _truncated_rows])
def test_check_fails_after_tampering_and_repair_fixes_it(cli, home_copy, tamper):
    cli("check", "--home", home_copy)  # ok before
    where = tamper(home_copy)

    doc = cli("check", "--home", home_copy, "--json", expect=1).json()
    assert doc["ok"] is False and doc["repaired"] is False
    assert doc["problems"] and all(isinstance(p, str) and "\n" not in p for p in doc["problems"])
    assert any(where in p for p in doc["problems"]), doc["problems"]

    run = cli("check", "--home", home_copy, expect=1)
    assert any(ln.startswith("problem: ") for ln in run.stdout.splitlines())
    assert "check FAILED" in run.stdout

    doc = cli("check", "--home", home_copy, "--repair", "--json").json()
    assert doc["ok"] is True and doc["repaired"] is True

    doc = cli("check", "--home", home_copy, "--json").json()
    assert doc == {**doc, "ok": True, "problems": [], "repaired": False}
    assert doc["counts"]["segments"] == 12


def test_check_repair_text(cli, home_copy):
    _delete_rows(home_copy)
    run = cli("check", "--home", home_copy, "--repair")
    assert "check ok (repaired)" in run.stdout
    assert "problem: " in run.stdout  # what was found is still reported


def test_identify_after_tampering_catches_up(cli, built, home_copy):
    """Opening a database rebuilds a damaged index from the store (the source of truth)."""
    _garbage_json(home_copy)
    [r] = cli("identify", built.files["spk03"][1], "--home", home_copy,
              "--json").json()["results"]
    assert r["speaker"] == "spk03"
    cli("check", "--home", home_copy)


def test_check_on_a_store_without_schema(cli, home_copy):
    (home_copy / "speakerdb.sqlite").write_bytes(b"")
    run = cli("check", "--home", home_copy, expect=2)
    assert str(home_copy) in run.error_line()


@pytest.mark.parametrize("command", ["init", "embed", "verify"])
def test_unknown_device(cli, built, tmp_path, command):
    audio = {"init": [], "embed": [built.files["spk00"][0]],
             "verify": [built.files["spk00"][0], built.files["spk00"][1]]}[command]
    run = cli(command, *audio, "--home", tmp_path / "h", "--model", "spectral", "--device",
              "tpu", expect=2)
    assert "--device 'tpu'" in run.error_line()


# a lost home.json ----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["missing", "garbled", "not_an_object"])
def test_lost_home_file_says_how_and_init_rebuilds_it(cli, built, home_copy, damage):
    hf = home_copy / "home.json"
    if damage == "missing":
        hf.unlink()
    else:
        hf.write_text("{not json" if damage == "garbled" else "[]")
    before = read_home(home_copy)
    probe = built.files["spk01"][0]
    for args in (["stats"], ["check"], ["identify", probe], ["speakers", "list"]):
        line = cli(*args, "--home", home_copy, "--json", expect=2).error_line()
        assert "home.json" in line and "holds a database" in line
        assert f"`speakerdb init --home {home_copy}` rebuilds it from the store" in line
    run = cli("init", "--home", home_copy, "--model", "campplus", expect=2)
    assert "bound to spectral" in run.error_line()
    assert read_home(home_copy) == before  # a refused rebuild leaves it as it was
    doc = cli("init", "--home", home_copy, "--json").json()
    assert doc["created"] is False and "home.json" in doc["rebuilt_home_file"]
    assert doc["model"] == built.init_doc["model"]
    assert json.loads(hf.read_text()) == {"db_url": None, "model_spec": "spectral",
                                            "vectors": "faiss", "vad": "energy"}
    assert cli("check", "--home", home_copy, "--json").json()["ok"]
    res = cli("identify", probe, "--home", home_copy, "--json").json()["results"][0]
    assert res["speaker"] == "spk01"
    again = cli("init", "--home", home_copy)
    assert again.stdout.startswith("already exists:")


def read_home(home):
    p = home / "home.json"
    return p.read_text() if p.exists() else None


# an optional engine that is not installed ----------------------------------------------------
@pytest.mark.parametrize("json_mode", [False, True])
def test_engine_ray_without_ray_is_one_line_saying_how_to_install_it(cli, built, monkeypatch,
                                                                      json_mode):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    run = cli("ingest", built.corpus, "--home", built.home, "--engine", "ray",
              *(["--json"] if json_mode else []), expect=2)
    line = run.error_line()
    assert "pip install 'speakerdb[ray]'" in line
    assert run.stdout == ""


def test_unknown_ingest_engine_is_a_usage_error(cli, built):
    run = cli("ingest", built.corpus, "--home", built.home, "--engine", "spark", expect=2)
    line = run.error_line()
    assert "unknown ingest engine 'spark'" in line and "local" in line and "ray" in line
