"""Ingest on Ray (speakerdb/ingest/ray_engine.py): the database a local ingest builds, the
same failures with the same reasons, re-runs that write nothing twice, ``file://`` URIs read by
the workers, the command line's ``--engine ray`` and its --json summary."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from speakerdb.api import SpeakerDB
from speakerdb.config import IngestConfig
from tests.audio_corpus import write_bad_corpus
from tests.synth import write_corpus
from tests.unit.test_ingest_pool import _counts, _same, _snapshot

pytestmark = pytest.mark.ray


@pytest.fixture
def mixed(tmp_path):
    """Good files, bad ones (empty, corrupt, too short, silent, NaN, a 10-minute file of 60
    segments ...), a missing one (manifest), duplicates within the run, one labelled file
    listed twice."""
    root = tmp_path / "mixed"
    write_corpus(root / "c", speakers=4, utterances=3)
    write_bad_corpus(root / "c" / "bad")
    shutil.copy(root / "c" / "spk00" / "utt0.wav", root / "c" / "spk01" / "dup.wav")
    (root / "m.csv").write_text(f"path,speaker\n{root / 'gone.wav'},spk09\n"
                                f"{root / 'c' / 'spk00' / 'utt1.wav'},spk00\n")
    return [root / "c", root / "m.csv"]


def _ingest(home, sources, engine, batch=4, **kw):
    with SpeakerDB.create(home, model="spectral") as db:
        stats = db.ingest(sources, config=IngestConfig(files_per_batch=batch, engine=engine,
                                                       **kw))
        assert db.check().ok
        return stats, _snapshot(db)


def test_ray_builds_the_database_a_local_ingest_builds(tmp_path, mixed, ray_cluster):
    s_local, db_local = _ingest(tmp_path / "local", mixed, "local")
    s_ray, db_ray = _ingest(tmp_path / "ray", mixed, "ray")
    _same(db_local, db_ray)  # recordings, segments (vectors within 1e-6), speakers, failures
    assert _counts(s_ray) == _counts(s_local)
    reasons = {f["reason"] for f in s_ray.failures}
    assert {"unreadable", "too_short", "silent"} <= reasons
    assert s_ray.engine["name"] == "ray" and s_ray.engine["actors"] == 1  # 2 CPUs
    assert sum(s_ray.engine["nodes"].values()) == s_ray.added
    assert s_ray.added > 10 and s_ray.segments > s_ray.added  # the long file's 60 segments


def test_a_rerun_on_ray_writes_nothing_twice(tmp_path, mixed, ray_cluster):
    home = tmp_path / "home"
    first, snap = _ingest(home, mixed, "ray")
    with SpeakerDB.open(home) as db:
        again = db.ingest(mixed, config=IngestConfig(files_per_batch=4, engine="ray"))
        assert db.check().ok
        _same(snap, _snapshot(db))
    # every input is known (a recording or a failure) but the file the manifest names that
    # does not exist: with no content to know it by, it fails again, as it does locally
    assert (again.added, again.segments) == (0, 0)
    assert [(f["input"].rsplit("/", 1)[-1], f["reason"]) for f in again.failures] == [
        ("gone.wav", "unreadable")]
    assert again.skipped == again.inputs - 1 == first.inputs - 1


def test_file_uris_are_read_by_the_workers(tmp_path, ray_cluster):
    root = tmp_path / "corpus"
    write_corpus(root, speakers=3, utterances=2)
    (root / "spk00" / "bad.wav").write_text("not audio at all\n")
    _, local = _ingest(tmp_path / "local", [root], "local")
    stats, remote = _ingest(tmp_path / "uri", [root.as_uri()], "ray")
    assert stats.added == 6 and stats.failed == 1
    # the same failure, its name the URI: "<name>: not audio (no known audio format)"
    [(name, reason, message)] = remote[1]
    [(local_name, local_reason, local_message)] = local[1]
    assert name == (root / "spk00" / "bad.wav").as_uri() and reason == local_reason
    assert message == local_message.replace(local_name, name)

    def by_content(snap):  # the URI names differ from the paths; the rest is the same
        return {(k[0].rsplit("/", 2)[-2:][0], k[0].rsplit("/", 1)[-1]): v
                for k, v in snap[0].items()}

    a, b = by_content(local), by_content(remote)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][:2] == b[k][:2]
        np.testing.assert_allclose(a[k][2], b[k][2], rtol=0, atol=1e-6)
    assert all(k[0].startswith("file://") for k in remote[0])


def test_actors_that_would_hold_every_cpu_are_a_usage_error(tmp_path, ray_cluster):
    from speakerdb.errors import UsageError

    root = tmp_path / "corpus"
    write_corpus(root, speakers=1, utterances=1)
    with pytest.raises(UsageError, match="at most 1"):
        _ingest(tmp_path / "home", [root], "ray", workers=2)


def test_cli_engine_ray_json_summary(tmp_path, ray_cluster):
    from typer.testing import CliRunner

    from speakerdb.cli.main import app

    root = tmp_path / "corpus"
    write_corpus(root, speakers=2, utterances=3)
    home = tmp_path / "home"
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--home", str(home)]).exit_code == 0
    r = runner.invoke(app, ["ingest", str(root), "--home", str(home), "--engine", "ray",
                            "--workers", "1", "--batch", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["inputs"], doc["added"], doc["failed"]) == (6, 6, 0)
    assert doc["engine"]["name"] == "ray" and doc["engine"]["actors"] == 1
    assert set(doc["seconds"]) == {"decode", "embed", "write", "wait"}
    assert doc["seconds"]["embed"] > 0 and doc["seconds"]["decode"] > 0


def test_an_error_on_a_worker_is_raised_as_itself(tmp_path, ray_cluster, monkeypatch):
    """An actor whose model is not the database's: the ModelMismatchError it raises reaches
    the caller as such (one line on the command line), and nothing is written."""
    from speakerdb.database import ingesting
    from speakerdb.errors import ModelMismatchError
    from speakerdb.ingest.engine import ingest_engine
    from speakerdb.ingest.ray_engine import RayOptions
    from speakerdb.ingest.ray_stages import EmbedderSpec

    root = tmp_path / "corpus"
    write_corpus(root, speakers=1, utterances=2)
    wrong = ingest_engine("ray", options=RayOptions(), spec=EmbedderSpec("spectral", "0" * 64))
    with SpeakerDB.create(tmp_path / "home", model="spectral") as db:
        monkeypatch.setattr(ingesting, "_engine", lambda db, config: wrong)
        with pytest.raises(ModelMismatchError, match="000000000000"):
            db.ingest([root], config=IngestConfig(engine="ray"))
        assert db.store.counts()["recordings"] == 0
