"""``speakerdb identify`` over folders and CSV manifests: the same answers as one file at a
time, JSON lines and CSV streams, the summary's exact counts, failures that do not stop a run."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from tests.synth import write_corpus

SEARCH_ONLY = ("seconds",)  # differs from run to run
TRUTH_KEYS = ("truth", "outcome", "correct")


def _answer(r: dict) -> dict:
    """A result without what varies per run or only a bulk run knows (the truth)."""
    return {k: v for k, v in r.items() if k not in SEARCH_ONLY + TRUTH_KEYS}


@pytest.fixture(scope="session")
def probes(tmp_path_factory) -> Path:
    """spk02 and spk03 (enrolled: copies of stored utterances) and spk04 (not enrolled), two
    utterances each, in the folders layout."""
    root = tmp_path_factory.mktemp("bulk-probes") / "probes"
    write_corpus(root, speakers=3, utterances=2, first_speaker=2)
    return root


@pytest.fixture(scope="session")
def manifest(tmp_path_factory, built, new_utterances, stranger) -> tuple[Path, list[tuple]]:
    """A manifest with a truth for each outcome, an unlabelled row and an unreadable file:
    (csv, [(path, truth, expected outcome)])."""
    d = tmp_path_factory.mktemp("bulk-manifest")
    bad = d / "broken.wav"
    bad.write_bytes(b"not audio at all")
    rows = [
        (built.files["spk00"][0], "spk00", "correct_match"),
        (new_utterances["spk01"], "spk01", "correct_match"),
        (new_utterances["spk02"], "spk03", "wrong_match"),
        (stranger, "spk00", "miss"),
        (stranger, "nobody", "correct_rejection"),
        (built.files["spk03"][1], "nobody", "false_accept"),
        (built.files["spk01"][2], "", None),
        (bad, "spk02", None),
    ]
    # the same path twice with different speakers is a conflict: copy the stranger
    twin = d / "stranger-twin.wav"
    shutil.copyfile(stranger, twin)
    rows[4] = (twin, "nobody", "correct_rejection")
    text = "path,speaker\n" + "".join(f"{p},{s}\n" for p, s, _ in rows)
    path = d / "probes.csv"
    path.write_text(text, encoding="utf-8")
    return path, rows


def _single(cli, home, path) -> dict:
    [r] = cli("identify", path, "--home", home, "--json").json()["results"]
    return r


def test_folder_gives_each_file_its_single_file_answer(cli, built, probes):
    doc = cli("identify", probes, "--home", built.home, "--json", "-q").json()
    assert set(doc) == {"results", "summary"}
    files = sorted(probes.rglob("*.wav"))
    assert [r["input"] for r in doc["results"]] == [str(p) for p in files]
    for r, p in zip(doc["results"], files):
        assert _answer(r) == _answer(_single(cli, built.home, p))
        assert r["truth"] == p.parent.name
    assert [(r["decision"], r["speaker"], r["outcome"], r["correct"]) for r in doc["results"]] \
        == [("match", "spk02", "correct_match", True)] * 2 + \
           [("match", "spk03", "correct_match", True)] * 2 + \
           [("unknown", None, "correct_rejection", True)] * 2


def test_folder_summary_counts_are_exact(cli, built, probes):
    s = cli("identify", probes, "--home", built.home, "--json").json()["summary"]
    assert (s["inputs"], s["answered"], s["failed"]) == (6, 6, 0)
    assert s["accuracy"] == {
        "with_truth": 6, "enrolled": 4, "not_enrolled": 2,
        "correct_matches": {"count": 4, "rate": 1.0},
        "wrong_matches": {"count": 0, "rate": 0.0},
        "misses": {"count": 0, "rate": 0.0},
        "correct_rejections": {"count": 2, "rate": 1.0},
        "false_accepts": {"count": 0, "rate": 0.0},
        "correct": {"count": 6, "rate": 1.0},
    }
    assert set(s["seconds"]) == {"decode", "embed", "search", "wait"}
    assert all(s["seconds"][k] > 0 for k in ("decode", "embed", "search"))
    assert s["workers"] == 0 and s["seconds"]["wait"] == 0  # 6 inputs: one batch, no workers
    w = cli("identify", probes, "--home", built.home, "--json", "--batch", "2",
            "--workers", "2").json()
    assert w["summary"]["workers"] == 2 and w["summary"]["accuracy"] == s["accuracy"]
    assert s["probes_per_s"] > 0 and s["wall_s"] > 0


def test_manifest_truth_gives_every_outcome(cli, built, manifest):
    path, rows = manifest
    run = cli("identify", path, "--home", built.home, "--json", expect=2)
    doc = run.json()
    results = doc["results"]
    assert [r["input"] for r in results] == [str(p) for p, _, _ in rows]
    for r, (p, truth, outcome) in zip(results, rows):
        if p.name == "broken.wav":
            assert r == {"input": str(p), "error": r["error"], "truth": "spk02",
                         "outcome": None, "correct": None}
            assert r["error"].startswith(f"{p}: ")
            continue
        assert _answer(r) == _answer(_single(cli, built.home, p))
        assert r.get("truth") == (truth or None) and r.get("outcome") == outcome
    s = doc["summary"]
    assert (s["inputs"], s["answered"], s["failed"]) == (8, 7, 1)
    assert s["accuracy"] == {
        "with_truth": 6, "enrolled": 4, "not_enrolled": 2,
        "correct_matches": {"count": 2, "rate": 0.5},
        "wrong_matches": {"count": 1, "rate": 0.25},
        "misses": {"count": 1, "rate": 0.25},
        "correct_rejections": {"count": 1, "rate": 0.5},
        "false_accepts": {"count": 1, "rate": 0.5},
        "correct": {"count": 3, "rate": 0.5},
    }


def test_jsonl_lines_are_the_json_results(cli, built, manifest):
    path, rows = manifest
    results = cli("identify", path, "--home", built.home, "--json", expect=2).json()["results"]
    run = cli("identify", path, "--home", built.home, "--jsonl", expect=2)
    lines = run.stdout.splitlines()
    assert len(lines) == len(rows)
    parsed = [json.loads(line) for line in lines]
    assert [_answer(r) | {k: r[k] for k in TRUTH_KEYS if k in r} for r in parsed] == \
        [_answer(r) | {k: r[k] for k in TRUTH_KEYS if k in r} for r in results]
    # the summary goes to stderr as text, stdout holds only the lines
    assert run.stderr.splitlines()[0].startswith("identify: 8 inputs, 7 answered, 1 failed;")
    assert "correct 3 (50.0 % of all)" in run.stderr


def test_csv_rows_with_header(cli, built, manifest):
    path, rows = manifest
    results = cli("identify", path, "--home", built.home, "--json", expect=2).json()["results"]
    run = cli("identify", path, "--home", built.home, "--csv", expect=2)
    table = list(csv.reader(io.StringIO(run.stdout)))
    assert table[0] == ["input", "decision", "speaker", "score", "truth", "correct", "error"]
    assert len(table) == 1 + len(rows)
    for row, r in zip(table[1:], results):
        want = {"input": r["input"], "decision": r.get("decision") or "",
                "speaker": r.get("speaker") or "",
                "score": "" if r.get("score") is None else str(r["score"]),
                "truth": r.get("truth") or "",
                "correct": {True: "true", False: "false", None: ""}[r.get("correct")],
                "error": r.get("error", "")}
        assert dict(zip(table[0], row)) == want
    assert table[-1][-1].endswith("broken.wav: not audio (no known audio format)")


def test_csv_of_files_without_truth_has_no_truth_columns(cli, built):
    run = cli("identify", built.files["spk02"][1], "--home", built.home, "--csv")
    assert run.stdout == f"input,decision,speaker,score,error\n" \
                         f"{built.files['spk02'][1]},match,spk02,1.0,\n"


def test_unreadable_file_in_a_folder_is_one_line_and_the_run_goes_on(cli, built, probes,
                                                                    tmp_path):
    folder = tmp_path / "probes"
    shutil.copytree(probes, folder)
    (folder / "spk03" / "bad.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    run = cli("identify", folder, "--home", built.home, "-q", expect=2)
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("speakerdb: error:")]
    assert errors == [f"speakerdb: error: {folder / 'spk03' / 'bad.wav'}: "
                      + errors[0].split("bad.wav: ", 1)[1]]
    answered = [ln.split(": ")[0] for ln in run.stdout.splitlines() if not ln.startswith(" ")]
    assert answered == [str(p) for p in sorted(folder.rglob("utt*.wav"))]
    assert "identify: 7 inputs, 6 answered, 1 failed;" in run.stderr
    assert "Traceback" not in run.stderr


def test_missing_folder_is_one_error_line(cli, built, tmp_path):
    missing = tmp_path / "no-such-folder"
    run = cli("identify", missing, "--home", built.home, "--json", expect=2)
    assert run.error_line() == f"speakerdb: error: {missing}: no such file or directory"
    assert run.stdout == ""


def test_folder_without_audio_is_one_error_line(cli, built, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    run = cli("identify", empty, "--home", built.home, expect=2)
    assert run.error_line() == \
        f"speakerdb: error: {empty}: the folder holds no audio files to identify"
    assert run.stdout == ""


def test_file_arguments_keep_the_json_shape(cli, built):
    doc = cli("identify", built.files["spk00"][0], built.files["spk01"][0], "--home",
              built.home, "--json").json()
    assert set(doc) == {"results"}
    assert [r["speaker"] for r in doc["results"]] == ["spk00", "spk01"]
    assert not any(k in r for r in doc["results"] for k in TRUTH_KEYS)


def test_one_output_format_at_a_time(cli, built):
    run = cli("identify", built.files["spk00"][0], "--home", built.home, "--json", "--csv",
              expect=2)
    assert run.error_line() == "speakerdb: error: --json and --csv: choose one output format"
