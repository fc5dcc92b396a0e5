"""Ray ingest with the real default model (campplus) on real speech: the database a local
ingest of the same files builds, vectors equal within 1e-5."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from speakerdb.api import SpeakerDB
from speakerdb.config import IngestConfig
from tests.unit.test_ingest_pool import _snapshot

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EVERY = 14  # every 14th file of speech-dev's manifest: 21 files of many speakers


def test_campplus_on_ray_equals_local(speech_dev, tmp_path, ray_cluster):
    rows = list(csv.DictReader(open(speech_dev / "manifest.csv")))[::EVERY]
    manifest = tmp_path / "some.csv"
    manifest.write_text("path,speaker\n" + "".join(f"{speech_dev / r['path']},{r['speaker']}\n"
                                                   for r in rows))
    snaps, stats = {}, {}
    for engine in ("local", "ray"):
        with SpeakerDB.create(tmp_path / engine, model="campplus", device="cpu") as db:
            stats[engine] = db.ingest([manifest], config=IngestConfig(engine=engine))
            assert db.check().ok
            snaps[engine] = _snapshot(db)
    assert stats["ray"].added == stats["local"].added == len(rows)
    (a, fa, ca), (b, fb, cb) = snaps["local"], snaps["ray"]
    assert a.keys() == b.keys() and fa == fb == []
    assert ca["segments"] == cb["segments"] and ca["speakers"] == cb["speakers"]
    for k, (spk, end, v) in a.items():
        assert (spk, end) == b[k][:2]
        np.testing.assert_allclose(v, b[k][2], rtol=0, atol=1e-5)
