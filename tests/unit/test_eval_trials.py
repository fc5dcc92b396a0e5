import random
from itertools import combinations
from pathlib import Path

import pytest

from speakerdb.errors import ManifestError, UsageError
from speakerdb.eval.trials import (
    LabelledFile,
    Trial,
    labelled_files,
    make_trials,
    read_trials,
    trial_stats,
    write_trials,
)


def touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def tiny() -> list[LabelledFile]:
    """A: 3 files (a1, a2 from one recording), B: 2 files, C: 1 file."""
    return [
        LabelledFile("A/a1.wav", "A", "recA"),
        LabelledFile("A/a2.wav", "A", "recA"),
        LabelledFile("A/a3.wav", "A", "recA2"),
        LabelledFile("B/b1.wav", "B", "B/b1.wav"),
        LabelledFile("B/b2.wav", "B", "B/b2.wav"),
        LabelledFile("C/c1.wav", "C", "C/c1.wav"),
    ]


def many(speakers: int = 8, per: int = 6) -> list[LabelledFile]:
    return [
        LabelledFile(f"s{s}/u{u}.wav", f"s{s}", f"s{s}/r{u // 2}")
        for s in range(speakers)
        for u in range(per)
    ]


def speaker_of(files):
    return {f.path: f.speaker for f in files}


def check_well_formed(trials, files):
    spk = speaker_of(files)
    keys = [frozenset((t.a, t.b)) for t in trials]
    assert len(keys) == len(set(keys)), "a pair occurs twice"
    for t in trials:
        assert t.a != t.b
        assert t.a < t.b
        assert t.target == (spk[t.a] == spk[t.b])
    assert trials == sorted(trials, key=lambda t: (t.a, t.b))


# --- reading and writing ----------------------------------------------------------------------


def test_round_trip(tmp_path):
    trials = [Trial(True, "id1/v/1.wav", "id1/w/2.wav"), Trial(False, "a.wav", "b.wav")]
    path = write_trials(trials, tmp_path / "list.txt")
    assert path.read_text() == "1 id1/v/1.wav id1/w/2.wav\n0 a.wav b.wav\n"
    assert read_trials(path) == trials
    assert [p.name for p in tmp_path.iterdir()] == ["list.txt"]  # no temporary left


def test_write_replaces_existing(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("old\n")
    write_trials([Trial(False, "x.wav", "y.wav")], path)
    assert read_trials(path) == [Trial(False, "x.wav", "y.wav")]


def test_write_rejects_whitespace_paths(tmp_path):
    with pytest.raises(UsageError, match="whitespace"):
        write_trials([Trial(True, "a b.wav", "c.wav")], tmp_path / "t.txt")
    assert not (tmp_path / "t.txt").exists()


def test_read_skips_blank_and_comment_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# header\n\n1  a.wav\tb.wav\n   \n0 a.wav c.wav\n")
    assert read_trials(path) == [Trial(True, "a.wav", "b.wav"), Trial(False, "a.wav", "c.wav")]


@pytest.mark.parametrize(
    "bad, problem",
    [
        ("1 a.wav", "expected 3 fields"),
        ("1 a.wav b.wav c.wav", "expected 3 fields"),
        ("2 a.wav b.wav", "label '2' is not 0 or 1"),
        ("yes a.wav b.wav", "label 'yes'"),
    ],
)
def test_malformed_line_names_line(tmp_path, bad, problem):
    path = tmp_path / "t.txt"
    path.write_text(f"1 a.wav b.wav\n# c\n{bad}\n0 a.wav c.wav\n")
    with pytest.raises(ManifestError) as e:
        read_trials(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: line 3: ")
    assert problem in msg


def test_empty_list_is_error(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# nothing\n\n")
    with pytest.raises(ManifestError, match="no trials"):
        read_trials(path)


def test_missing_list_is_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such"):
        read_trials(tmp_path / "absent.txt")


# --- making trials ----------------------------------------------------------------------------


def test_all_target_pairs_of_tiny_set():
    files = tiny()
    trials = make_trials(files)
    targets = {(t.a, t.b) for t in trials if t.target}
    assert targets == {
        ("A/a1.wav", "A/a2.wav"),
        ("A/a1.wav", "A/a3.wav"),
        ("A/a2.wav", "A/a3.wav"),
        ("B/b1.wav", "B/b2.wav"),
    }
    check_well_formed(trials, files)
    stats = trial_stats(trials)
    # default: as many non-targets as targets (4 of the 6 files draw one)
    assert stats == {"trials": 8, "targets": 4, "nontargets": 4, "files": 6}


def test_default_is_balanced():
    files = many()
    trials = make_trials(files)
    stats = trial_stats(trials)
    assert stats["targets"] == 8 * 15
    assert stats["nontargets"] == stats["targets"]
    check_well_formed(trials, files)
    # 120 non-targets over 48 files: every file draws 2 or 3
    drawn = {}
    for t in trials:
        if not t.target:
            for p in (t.a, t.b):
                drawn[p] = drawn.get(p, 0) + 1
    assert len(drawn) == len(files)


def test_deterministic_and_independent_of_order():
    files = many()
    first = make_trials(files, seed=3)
    assert make_trials(files, seed=3) == first
    shuffled = list(files)
    random.Random(1).shuffle(shuffled)
    assert make_trials(shuffled, seed=3) == first
    duplicated = shuffled + shuffled[:5]
    assert make_trials(duplicated, seed=3) == first


def test_seed_changes_nontargets_only():
    files = many()
    one, two = make_trials(files, seed=0), make_trials(files, seed=1)
    assert [t for t in one if t.target] == [t for t in two if t.target]
    assert {(t.a, t.b) for t in one if not t.target} != {(t.a, t.b) for t in two if not t.target}


def test_explicit_counts():
    files = many(speakers=5, per=10)
    trials = make_trials(files, targets_per_file=2, nontargets_per_file=3, seed=7)
    check_well_formed(trials, files)
    stats = trial_stats(trials)
    assert stats["targets"] == 2 * 50  # plenty of partners: every file draws 2 new ones
    assert stats["nontargets"] == 3 * 50
    for f in files:
        assert sum(1 for t in trials if f.path in (t.a, t.b) and t.target) >= 2
    seeded = make_trials(files, targets_per_file=2, nontargets_per_file=3, seed=8)
    assert seeded != trials


def test_counts_capped_by_available_partners():
    files = tiny()
    trials = make_trials(files, targets_per_file=10, nontargets_per_file=10)
    check_well_formed(trials, files)
    stats = trial_stats(trials)
    assert stats["targets"] == 4  # every same-speaker pair, once
    assert stats["nontargets"] == 15 - 4  # every cross-speaker pair, once


def test_no_pair_twice_in_either_order_when_dense():
    files = many(speakers=3, per=3)
    for seed in range(5):
        trials = make_trials(files, seed=seed, targets_per_file=2, nontargets_per_file=6)
        check_well_formed(trials, files)


def test_exclude_same_recording():
    files = tiny()
    trials = make_trials(files, exclude_same_recording=True)
    targets = {(t.a, t.b) for t in trials if t.target}
    assert ("A/a1.wav", "A/a2.wav") not in targets
    assert len(targets) == 3
    drawn = make_trials(files, exclude_same_recording=True, targets_per_file=5)
    assert ("A/a1.wav", "A/a2.wav") not in {(t.a, t.b) for t in drawn if t.target}


def test_fewer_than_two_speakers():
    files = [LabelledFile("a.wav", "A", "r1"), LabelledFile("b.wav", "A", "r2")]
    with pytest.raises(UsageError, match="at least 2 speakers"):
        make_trials(files)


def test_no_target_pair_left():
    files = [
        LabelledFile("a1.wav", "A", "r"),
        LabelledFile("a2.wav", "A", "r"),
        LabelledFile("b1.wav", "B", "s"),
    ]
    make_trials(files)
    with pytest.raises(UsageError, match="no target pair"):
        make_trials(files, exclude_same_recording=True)


def test_bad_counts_and_conflicting_labels():
    with pytest.raises(UsageError):
        make_trials(tiny(), nontargets_per_file=-1)
    files = tiny() + [LabelledFile("A/a1.wav", "B", "x")]
    with pytest.raises(UsageError, match="labelled as both"):
        make_trials(files)


# --- labelled files ---------------------------------------------------------------------------


def test_labelled_files_folders(tmp_path):
    touch(tmp_path / "ann" / "b.wav")
    touch(tmp_path / "ann" / "a.wav")
    touch(tmp_path / "bob" / "c.flac")
    touch(tmp_path / "loose.wav")
    root, files = labelled_files(tmp_path)
    assert root == tmp_path
    assert files == [
        LabelledFile("ann/a.wav", "ann", "ann/a.wav"),
        LabelledFile("ann/b.wav", "ann", "ann/b.wav"),
        LabelledFile("bob/c.flac", "bob", "bob/c.flac"),
    ]


def test_labelled_files_voxceleb(tmp_path):
    for rel in ("id10001/vidA/00001.wav", "id10001/vidA/00002.wav", "id10001/vidB/00001.wav",
                "id10002/vidA/00001.wav"):
        touch(tmp_path / rel)
    root, files = labelled_files(tmp_path)
    assert root == tmp_path
    assert [(f.path, f.speaker) for f in files] == [
        ("id10001/vidA/00001.wav", "id10001"),
        ("id10001/vidA/00002.wav", "id10001"),
        ("id10001/vidB/00001.wav", "id10001"),
        ("id10002/vidA/00001.wav", "id10002"),
    ]
    recs = [f.recording for f in files]
    assert recs[0] == recs[1] != recs[2]
    assert recs[3] != recs[0]  # same video name, other speaker
    trials = make_trials(files, exclude_same_recording=True)
    assert [(t.a, t.b) for t in trials if t.target] == [
        ("id10001/vidA/00001.wav", "id10001/vidB/00001.wav"),
        ("id10001/vidA/00002.wav", "id10001/vidB/00001.wav"),
    ]


def test_labelled_files_manifest_source_split(tmp_path):
    manifest = tmp_path / "data" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "path,speaker,source,license\n"
        "s2/utt_s2.wav,s2,corpus utt via github:x/y@1:a/utt.wav [split 2/3 2.72-6.28s],CC\n"
        "s2/utt_s1.wav,s2,corpus utt via github:x/y@1:a/utt.wav [split 1/3 0.00-2.72s],CC\n"
        "s2/other.wav,s2,corpus other via github:x/y@1:a/other.wav,CC\n"
        's1/one.wav,s1,"corpus one, with comma",CC\n'
        "nolabel.wav,,whatever,CC\n"
        "s1/two.wav,s1,corpus [v2] two [split 1/2 0.00-1.00s],CC\n"
    )
    root, files = labelled_files(manifest)
    assert root == manifest.parent
    assert files == [
        LabelledFile("s1/one.wav", "s1", "corpus one, with comma"),
        LabelledFile("s1/two.wav", "s1", "corpus [v2] two"),
        LabelledFile("s2/other.wav", "s2", "corpus other via github:x/y@1:a/other.wav"),
        LabelledFile("s2/utt_s1.wav", "s2", "corpus utt via github:x/y@1:a/utt.wav"),
        LabelledFile("s2/utt_s2.wav", "s2", "corpus utt via github:x/y@1:a/utt.wav"),
    ]


def test_labelled_files_manifest_recording_column(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,speaker,session,source\n"
        "b.wav,B,s1,x [split 1/2]\n"
        "a.wav,A,s9,x [split 2/2]\n"
        "c.wav,B,,y\n"
    )
    root, files = labelled_files(manifest, recording_column="session")
    assert root == tmp_path
    assert [f.recording for f in files] == ["s9", "s1", "y"]  # empty cell: falls back
    _, plain = labelled_files(manifest)  # no 'recording' column: the source convention
    assert [f.recording for f in plain] == ["x", "x", "y"]
    bare = tmp_path / "bare.csv"
    bare.write_text("path,speaker,recording\nq.wav,Q,r1\np.wav,P,r1\n")
    _, files = labelled_files(bare)
    assert files == [LabelledFile("p.wav", "P", "r1"), LabelledFile("q.wav", "Q", "r1")]
    own = tmp_path / "own.csv"
    own.write_text("path,speaker\nq.wav,Q\n")
    assert labelled_files(own)[1] == [LabelledFile("q.wav", "Q", "q.wav")]


def test_labelled_files_manifest_errors(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,who\na.wav,A\n")
    with pytest.raises(ManifestError, match="'speaker'"):
        labelled_files(manifest)
    with pytest.raises(UsageError):
        labelled_files(tmp_path / "absent.csv")


def test_shared_speech_dev_manifest_if_present():
    manifest = Path(__file__).resolve().parents[3] / "shared/data/speech-dev/manifest.csv"
    if not manifest.is_file():
        pytest.skip("shared speech-dev data not available")
    root, files = labelled_files(manifest)
    assert root == manifest.parent
    by_path = {f.path: f for f in files}
    pieces = [f for f in files if f.path.startswith("eagle-speaker2/speaker_2_test_utt_s")]
    assert len(pieces) == 3 and len({f.recording for f in pieces}) == 1
    assert all("[split" not in f.recording for f in by_path.values())
    trials = make_trials(files, exclude_same_recording=True)
    check_well_formed(trials, files)
    assert not any(
        t.target and by_path[t.a].recording == by_path[t.b].recording for t in trials
    )


def test_pairs_match_combinations():
    files = many(speakers=4, per=5)
    trials = make_trials(files)
    expected = {
        (a.path, b.path)
        for a, b in combinations(sorted(files, key=lambda f: f.path), 2)
        if a.speaker == b.speaker
    }
    assert {(t.a, t.b) for t in trials if t.target} == expected
