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
