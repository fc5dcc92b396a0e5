"""Crash safety on Ray: a ``kill -9`` of the driver (the process that owns the database)
mid-run, then a re-run on the cluster, ends with every file in once and ``check`` green; an
embedding actor killed mid-run is restarted by Ray and loses no input."""

from __future__ import annotations

import json
import os
import signal

import pytest

from speakerdb.api import SpeakerDB
from speakerdb.config import IngestConfig
from tests.slow.test_kill9 import (BATCH, GOOD, kill_child, segment_count, snapshot,
                                   speakerdb_cli)
from tests.synth import RATE, voice, write_corpus

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import soundfile as sf

    root = tmp_path_factory.mktemp("ray-kill9") / "corpus"
    write_corpus(root, speakers=8, utterances=5, seconds=0.8)
    (root / "spk00" / "bad.wav").write_text("not audio at all\n")
    sf.write(root / "spk01" / "short.wav", voice(1, 9, 0.2), RATE, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict:
    """An uninterrupted local ingest with the same batch size."""
    home = tmp_path_factory.mktemp("ray-reference") / "home"
    with SpeakerDB.create(home, model="spectral") as db:
        db.ingest([str(corpus)], config=IngestConfig(files_per_batch=BATCH, workers=0))
    return snapshot(home)


@pytest.mark.parametrize("trigger", [("pause", 3, 0.0), ("segments", 12, 0.0)],
                         ids=["after-batch-3", "at-12-segments"])
def test_driver_killed_then_rerun_on_ray_equals_a_local_run(trigger, corpus, reference,
                                                            tmp_path, ray_cluster):
    home = tmp_path / "home"
    SpeakerDB.create(home, model="spectral").close()
    kind, value, flush_s = trigger
    kill_child(home, corpus, (kind, value, flush_s, "-", "ray", ray_cluster),
               tmp_path / "child.log")
    assert 0 < segment_count(home) < GOOD  # interrupted in the middle

    done = speakerdb_cli("ingest", str(corpus), "--home", str(home), "--batch", str(BATCH),
                         "--engine", "ray", "--ray-address", ray_cluster, "--quiet", "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["inputs"] == GOOD + 2 and stats["skipped"] > 0
    assert snapshot(home) == reference
    check = speakerdb_cli("check", "--home", str(home), "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["counts"]["segments"] == GOOD


def _embed_actor_pids() -> list[int]:
    """The embedding actors' processes among this process's descendants (the session's Ray
    was started from here), found by their process titles (``ray::MapWorker(...Embed)``)."""
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    parents[int(d)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass

    def mine(pid):
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 0)
        return False

    out = []
    for pid in parents:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                title = fh.read().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::") and "Embed" in title and mine(pid):
            out.append(pid)
    return out


def test_an_embedding_actor_killed_mid_run_loses_nothing(corpus, reference, tmp_path,
                                                         ray_cluster):
    home = tmp_path / "home"
    killed = []

    def progress(_n):
        if not killed:
            pids = _embed_actor_pids()
            assert pids, "no embedding actor is alive mid-run"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    with SpeakerDB.create(home, model="spectral") as db:
        stats = db.ingest([str(corpus)], config=IngestConfig(files_per_batch=BATCH,
                                                             engine="ray"), progress=progress)
        assert db.check().ok
    assert killed
    assert (stats.added, stats.failed) == (GOOD, 2)
    assert snapshot(home) == reference
