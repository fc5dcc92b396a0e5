"""Speaker labels: one rule at every entry of the API (enroll, rename, merge, ingest), and
labels given on a re-ingest of stored recordings (applied, or reported as conflicts)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from speakerdb.config import IngestConfig
from speakerdb.errors import UsageError
from tests.labels import BAD_LABELS, message
from tests.synth import RATE, voice, write_corpus


def write_manifest(path, rows) -> None:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "speaker"), *rows])


def labels_of(db) -> list[str]:
    return [i.label for i in db.speakers()]


@pytest.mark.parametrize("label", list(BAD_LABELS))
def test_every_api_entry_refuses_the_same_labels(db, tmp_path, label):
    write_corpus(tmp_path / "c", speakers=2, utterances=1)
    db.ingest([tmp_path / "c"])
    want = message(label)
    for call in (lambda: db.enroll(label, [tmp_path / "c" / "spk00" / "utt0.wav"]),
                 lambda: db.rename_speaker("spk00", label),
                 lambda: db.merge_speakers("spk00", label)):
        with pytest.raises(UsageError) as e:
            call()
        assert str(e.value) == want
    assert labels_of(db) == ["spk00", "spk01"]


def test_manifest_rows_with_bad_labels_fail_alone(db, tmp_path):
    rows = [("good.wav", "ann")]
    sf.write(tmp_path / "good.wav", voice(0, 0), RATE)
    for k, label in enumerate(BAD_LABELS):
        sf.write(tmp_path / f"b{k}.wav", voice(1, k), RATE)
        rows.append((f"b{k}.wav", label))
    write_manifest(tmp_path / "m.csv", rows)
    stats = db.ingest([tmp_path / "m.csv"])
    assert (stats.added, stats.failed) == (1, len(BAD_LABELS))
    got = {f["input"].rsplit("/", 1)[-1]: (f["reason"], f["error"]) for f in stats.failures}
    for k, label in enumerate(BAD_LABELS):
        name = str(tmp_path / f"b{k}.wav")
        assert got[f"b{k}.wav"] == ("bad_label", f"{name}: {message(label)}")
    assert labels_of(db) == ["ann"]
    assert db.check().ok


# labels given on a re-ingest ------------------------------------------------------------------
def flat_files(root, n_speakers=2, n_utts=2) -> dict[str, list]:
    """Files directly in ``root`` (a folders ingest leaves them unlabelled): {speaker: paths}."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, name in enumerate(["ann", "bob", "cid"][:n_speakers]):
        out[name] = []
        for j in range(n_utts):
            p = root / f"{name[0]}{j}.wav"
            sf.write(p, voice(k, j), RATE, subtype="PCM_16")
            out[name].append(p)
    return out


def vectors(db):
    ids, raw = db.store.all_vectors()
    return ids.copy(), raw.copy()


def same_vectors(before, after) -> bool:
    return np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])


def counts_by_label(db) -> dict[str, int]:
    return {i.label: i.recordings for i in db.speakers()}


def test_reingest_labels_stored_unlabelled_recordings(db, tmp_path):
    files = flat_files(tmp_path / "flat")
    first = db.ingest([tmp_path / "flat"])
    assert (first.added, first.labelled, db.speakers()) == (4, 0, [])
    before = vectors(db)
    write_manifest(tmp_path / "flat" / "m.csv",
                   [(p.name, name) for name, ps in files.items() for p in ps])
    stats = db.ingest([tmp_path / "flat" / "m.csv"])
    assert (stats.added, stats.skipped, stats.labelled, stats.relabelled) == (0, 4, 4, 0)
    assert stats.label_conflicts == [] and stats.segments == 0
    assert counts_by_label(db) == {"ann": 2, "bob": 2}
    assert same_vectors(before, vectors(db))
    assert np.array_equal(db.indexes.set.ids(), before[0])
    assert db.identify(files["bob"][0]).speaker == "bob"
    assert db.check().ok
    again = db.ingest([tmp_path / "flat" / "m.csv"])  # nothing left to do
    assert (again.labelled, again.relabelled, again.label_conflicts) == (0, 0, [])


def test_conflicting_labels_are_reported_and_applied_only_with_relabel(db, tmp_path):
    files = flat_files(tmp_path / "d")
    write_manifest(tmp_path / "d" / "m.csv",
                   [(p.name, name) for name, ps in files.items() for p in ps])
    db.ingest([tmp_path / "d" / "m.csv"])
    before = vectors(db)
    a0, b0, b1 = files["ann"][0], files["bob"][0], files["bob"][1]
    write_manifest(tmp_path / "d" / "m2.csv", [(a0.name, "carol"), (files["ann"][1].name, "ann"),
                                               (b0.name, "ann"), (b1.name, "ann")])
    stats = db.ingest([tmp_path / "d" / "m2.csv"])
    conflicts = [{"input": str(p), "stored": s, "given": g, "applied": False}
                 for p, s, g in [(a0, "ann", "carol"), (b0, "bob", "ann"), (b1, "bob", "ann")]]
    assert (stats.skipped, stats.labelled, stats.relabelled) == (4, 0, 0)
    assert stats.label_conflicts == conflicts
    assert stats.as_dict()["label_conflicts"] == conflicts
    assert counts_by_label(db) == {"ann": 2, "bob": 2}
    relabel = db.ingest([tmp_path / "d" / "m2.csv"], config=IngestConfig(relabel=True))
    assert (relabel.skipped, relabel.labelled, relabel.relabelled) == (4, 0, 3)
    assert relabel.label_conflicts == [dict(c, applied=True) for c in conflicts]
    assert counts_by_label(db) == {"ann": 3, "carol": 1}  # bob has no recordings left: gone
    assert same_vectors(before, vectors(db))
    assert db.identify(b0).speaker == "ann"
    assert db.check().ok
