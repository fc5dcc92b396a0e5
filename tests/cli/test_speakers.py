"""``speakerdb speakers list|rename|merge|delete``, ``speakerdb recordings delete`` and
``speakerdb enroll``: text and --json output, errors as one line with exit 2."""

from __future__ import annotations

import hashlib

import pytest
import soundfile as sf

from tests.synth import RATE, voice


def labels(cli, home) -> list[str]:
    doc = cli("speakers", "list", "--home", home, "--json").json()
    return [s["label"] for s in doc["speakers"]]


def check_ok(cli, home) -> None:
    assert cli("check", "--home", home, "--json").json()["ok"]


def test_speakers_list_text_and_json(cli, built):
    doc = cli("speakers", "list", "--home", built.home, "--json").json()
    assert [s["label"] for s in doc["speakers"]] == ["spk00", "spk01", "spk02", "spk03"]
    for s in doc["speakers"]:
        assert (s["recordings"], s["segments"]) == (3, 3)
        assert s["seconds"] == pytest.approx(4.5)
    text = cli("speakers", "list", "--home", built.home).stdout.splitlines()
    assert text[0].split() == ["speaker", "recordings", "segments", "minutes"]
    assert text[1].split() == ["spk00", "3", "3", "0.07"]
    assert text[-1] == "4 speakers"


def test_rename_text_and_json(cli, home_copy):
    out = cli("speakers", "rename", "spk00", "alice", "--home", home_copy).stdout
    assert out.strip() == "renamed spk00 to alice: 3 recordings, 3 segments, 0.07 min"
    doc = cli("speakers", "rename", "alice", "bob", "--home", home_copy, "--json").json()
    assert doc["renamed"] == "alice"
    assert doc["speaker"]["label"] == "bob" and doc["speaker"]["recordings"] == 3
    assert labels(cli, home_copy) == ["bob", "spk01", "spk02", "spk03"]
    check_ok(cli, home_copy)


def test_rename_then_identify(cli, home_copy, new_utterances):
    cli("speakers", "rename", "spk01", "carol", "--home", home_copy)
    doc = cli("identify", new_utterances["spk01"], "--home", home_copy, "--json").json()
    assert doc["results"][0]["speaker"] == "carol"


def test_merge_text_and_json(cli, home_copy, new_utterances):
    out = cli("speakers", "merge", "spk00", "spk01", "--home", home_copy).stdout
    assert out.strip() == "merged spk00 into spk01: 6 recordings, 6 segments, 0.15 min"
    doc = cli("speakers", "merge", "spk02", "spk01", "--home", home_copy, "--json").json()
    assert doc["merged"] == "spk02"
    assert (doc["speaker"]["label"], doc["speaker"]["recordings"]) == ("spk01", 9)
    assert labels(cli, home_copy) == ["spk01", "spk03"]
    doc = cli("identify", new_utterances["spk00"], "--home", home_copy, "--json").json()
    assert doc["results"][0]["speaker"] == "spk01"
    check_ok(cli, home_copy)


def test_speakers_delete_text_and_json(cli, home_copy):
    out = cli("speakers", "delete", "spk00", "--home", home_copy).stdout
    assert out.strip() == "deleted speaker spk00 (3 segments)"
    doc = cli("speakers", "delete", "spk01", "--home", home_copy, "--json").json()
    assert doc == {"deleted": "spk01", "segments": 3}
    assert labels(cli, home_copy) == ["spk02", "spk03"]
    check_ok(cli, home_copy)


def test_recordings_delete_by_path_and_sha_prefix(cli, home_copy, built):
    paths = built.files["spk03"]
    out = cli("recordings", "delete", paths[0], "--home", home_copy).stdout
    assert out.strip() == f"deleted recording {paths[0]} (1 segments)"
    sha = hashlib.sha256(paths[1].read_bytes()).hexdigest()[:12]
    doc = cli("recordings", "delete", sha, "--home", home_copy, "--json").json()
    assert doc == {"deleted": sha, "segments": 1}
    assert "spk03" in labels(cli, home_copy)
    cli("recordings", "delete", str(paths[2]), "--home", home_copy, "--json")
    assert "spk03" not in labels(cli, home_copy)  # no recordings left: the speaker goes too
    stats = cli("stats", "--home", home_copy, "--json").json()["counts"]
    assert (stats["speakers"], stats["recordings"]) == (3, 9)
    check_ok(cli, home_copy)


def test_recordings_delete_key_is_not_a_pattern(cli, home_copy, built):
    shas = sorted(hashlib.sha256(p.read_bytes()).hexdigest()
                  for paths in built.files.values() for p in paths)
    for key in ("%" + shas[0][-12:], "_" + shas[0][1:12]):
        run = cli("recordings", "delete", key, "--home", home_copy, expect=2)
        assert f"recording '{key}' is not in the database" in run.error_line()
    a, b = next((a, b) for a, b in zip(shas, shas[1:]) if a[0] == b[0])
    run = cli("recordings", "delete", a[0], "--home", home_copy, "--json", expect=2)
    assert "is ambiguous" in run.error_line() and run.stdout == ""
    stats = cli("stats", "--home", home_copy, "--json").json()["counts"]
    assert stats["recordings"] == len(shas)


def test_enroll_text_and_json(cli, home_copy, tmp_path, built, stranger):
    files = []
    for j in range(2):
        p = tmp_path / f"dave{j}.wav"
        sf.write(p, voice(8, 10 + j), RATE, subtype="PCM_16")
        files.append(p)
    out = cli("enroll", "dave", *files, built.files["spk02"][0], "--home", home_copy).stdout
    lines = out.splitlines()
    assert lines[0] == "enrolled dave: 2 recordings added (2 segments), 1 skipped, 0 failed"
    assert lines[1] == f"  skipped {built.files['spk02'][0]}: already in the database as spk02"
    doc = cli("enroll", "dave", files[0], "--home", home_copy, "--json").json()
    assert doc == {"speaker": "dave", "added": 0, "segments": 0, "failed": [],
                   "skipped": [{"input": str(files[0]),
                                "reason": "already in the database as dave"}]}
    res = cli("identify", stranger, "--home", home_copy, "--json").json()["results"][0]
    assert res["speaker"] == "dave"
    assert "dave" in labels(cli, home_copy)
    check_ok(cli, home_copy)


def test_enroll_failures_exit_2(cli, home_copy, tmp_path):
    short, good = tmp_path / "short.wav", tmp_path / "good.wav"
    sf.write(short, voice(9, 0, 0.2), RATE, subtype="PCM_16")
    sf.write(good, voice(9, 1), RATE, subtype="PCM_16")
    run = cli("enroll", "erin", short, good, "--home", home_copy, "--json", expect=2)
    doc = run.json()
    assert doc["added"] == 1
    assert [(f["input"], f["reason"]) for f in doc["failed"]] == [(str(short), "too_short")]
    run = cli("enroll", "erin", short, "--home", home_copy, expect=2)
    assert run.error_line().startswith(f"speakerdb: error: {short}: too short")
    assert "0 recordings added" in run.stdout
    check_ok(cli, home_copy)


@pytest.mark.parametrize("args, message", [
    (("speakers", "rename", "nobody", "x"), "speaker 'nobody' is not in the database"),
    (("speakers", "rename", "spk00", "spk01"), "speaker 'spk01' exists already; use merge"),
    (("speakers", "merge", "nobody", "spk01"), "speaker 'nobody' is not in the database"),
    (("speakers", "merge", "spk01", "nobody"), "speaker 'nobody' is not in the database"),
    (("speakers", "merge", "spk01", "spk01"), "into itself"),
    (("speakers", "delete", "nobody"), "speaker 'nobody' is not in the database"),
    (("recordings", "delete", "ffffffffffff"), "recording 'ffffffffffff' is not in the database"),
    (("enroll", "", "x.wav"), "speaker label must be a non-empty string"),
])
@pytest.mark.parametrize("json_", [False, True])
def test_errors_are_one_line_exit_2(cli, home_copy, args, message, json_):
    extra = ("--json",) if json_ else ()
    run = cli(*args, "--home", home_copy, *extra, expect=2)
    assert message in run.error_line()
    assert run.stdout == ""
    assert labels(cli, home_copy) == ["spk00", "spk01", "spk02", "spk03"]


def test_no_database_is_one_line(cli, no_home):
    run = cli("speakers", "list", "--home", no_home, expect=2)
    assert "no speakerdb database" in run.error_line()


def test_every_command_refuses_the_same_labels(cli, home_copy, built, tmp_path):
    import csv

    from tests.labels import BAD_LABELS, message

    wav = built.files["spk00"][0]
    for label in BAD_LABELS:
        for args in (("speakers", "rename", "spk00", label), ("speakers", "merge", "spk00", label),
                     ("enroll", label, wav)):
            run = cli(*args, "--home", home_copy, expect=2)
            assert run.error_line() == f"speakerdb: error: {message(label)}", args
    rows = [(f"b{k}.wav", label) for k, label in enumerate(BAD_LABELS)]
    for k in range(len(rows)):
        sf.write(tmp_path / f"b{k}.wav", voice(7, k), RATE, subtype="PCM_16")
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "speaker"), *rows])
    doc = cli("ingest", tmp_path / "m.csv", "--home", home_copy, "--json", "-q").json()
    assert (doc["added"], doc["failed"]) == (0, len(BAD_LABELS))
    assert [(f["reason"], f["error"].split(": ", 1)[1]) for f in doc["failures"]] == [
        ("bad_label", message(label)) for label in BAD_LABELS]
    assert labels(cli, home_copy) == ["spk00", "spk01", "spk02", "spk03"]
    check_ok(cli, home_copy)


def test_reingest_with_labels_labels_reports_and_relabels(cli, tmp_path):
    import csv

    from speakerdb.api import SpeakerDB

    home, flat = tmp_path / "home", tmp_path / "flat"
    flat.mkdir()
    names = {}
    for k, speaker in enumerate(["ann", "bob"]):
        for j in range(2):
            sf.write(flat / f"{speaker[0]}{j}.wav", voice(k, j), RATE, subtype="PCM_16")
            names[f"{speaker[0]}{j}.wav"] = speaker

    def manifest(name, rows):
        with open(flat / name, "w", newline="") as fh:
            csv.writer(fh).writerows([("path", "speaker"), *rows])
        return flat / name

    def stored():
        with SpeakerDB.open(home) as db:
            ids, raw = db.store.all_vectors()
        return ids.tolist(), raw.tobytes()

    cli("init", "--home", home)
    assert cli("ingest", flat, "--home", home, "--json", "-q").json()["added"] == 4
    assert labels(cli, home) == []
    before = stored()
    m = manifest("m.csv", list(names.items())[:1])
    out = cli("ingest", m, "--home", home, "-q").stdout.splitlines()
    assert out[0].startswith("1 inputs: 0 added (0 segments), 1 already in, 0 failed")
    assert out[1:] == ["1 stored unlabelled recordings labelled (no re-embedding)"]
    doc = cli("ingest", manifest("m.csv", names.items()), "--home", home, "--json", "-q").json()
    assert (doc["added"], doc["skipped"], doc["labelled"], doc["relabelled"]) == (0, 4, 3, 0)
    assert doc["label_conflicts"] == []
    assert labels(cli, home) == ["ann", "bob"]
    m2 = manifest("m2.csv", [("a0.wav", "carol"), ("b0.wav", "bob")])
    out = cli("ingest", m2, "--home", home, "-q").stdout.splitlines()
    assert out[1:] == ["1 stored recordings have another label: 0 relabelled, the others kept "
                       "(--relabel replaces them)",
                       f"  label kept: {flat / 'a0.wav'}: stored ann, given carol"]
    doc = cli("ingest", m2, "--home", home, "--json", "-q").json()
    assert doc["label_conflicts"] == [{"input": str(flat / "a0.wav"), "stored": "ann",
                                       "given": "carol", "applied": False}]
    assert labels(cli, home) == ["ann", "bob"]
    doc = cli("ingest", m2, "--relabel", "--home", home, "--json", "-q").json()
    assert (doc["labelled"], doc["relabelled"]) == (0, 1)
    assert doc["label_conflicts"][0]["applied"] is True
    assert labels(cli, home) == ["ann", "bob", "carol"]
    assert stored() == before
    check_ok(cli, home)
