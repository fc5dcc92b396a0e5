"""A real ``kill -9`` during ingest, then a resumed ingest: the result equals an uninterrupted
run's (same recordings, segments, vectors, speakers and failures) and ``speakerdb check``
passes.

The killed ingest runs in a child process (``tests/ingest_child.py``) with two files per store
transaction, so there are many transactions to land between. Kill points: while the child is
still opening the database, then after the first batch (the indexes never saved); while the store
holds 20 segments, with the indexes saved after every batch (so the kill often lands inside a
save); during batch 6; near the end; and twice in a row on the same database. The resumed
ingest and the check run through the command line. The children read with the default
worker processes (one per core), but for one plan that reads in process (``--workers 0``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from speakerdb.api import SpeakerDB
from speakerdb.config import IngestConfig
from speakerdb.index import IndexSet
from tests.synth import RATE, voice, write_corpus

pytestmark = pytest.mark.slow

BATCH = 2
GOOD = 40  # 8 speakers x 5 utterances of 0.8 s: one segment each
CHILD = Path(__file__).resolve().parents[1] / "ingest_child.py"
REPO = Path(__file__).resolve().parents[2]

# (trigger, index_flush_s) for each child killed, in order, on one database
PLANS = {
    "while-opening-then-after-first-batch": [("line", "ready", 30.0), ("pause", 1, 30.0)],
    "at-20-segments-saving-every-batch": [("segments", 20, 0.0)],
    "during-batch-6": [("line", "batch 5", 0.0)],
    "near-the-end": [("pause", 19, 0.0)],
    "killed-twice": [("pause", 3, 30.0), ("segments", 26, 0.0)],
    "during-batch-6-in-process": [("line", "batch 5", 0.0, 0)],
}
PG_PLANS = ["while-opening-then-after-first-batch", "at-20-segments-saving-every-batch",
            "killed-twice"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    import soundfile as sf

    root = tmp_path_factory.mktemp("kill9") / "corpus"
    write_corpus(root, speakers=8, utterances=5, seconds=0.8)
    (root / "spk00" / "bad.wav").write_text("not audio at all\n")
    sf.write(root / "spk01" / "short.wav", voice(1, 9, 0.2), RATE, subtype="PCM_16")
    return root


_ENGINES: dict = {}


def _store(home: Path):
    """An engine on the home's store (its SQLite file, or the PostgreSQL database it names)."""
    from sqlalchemy import create_engine

    from speakerdb.config import read_home_file
    from speakerdb.store.engine import home_store_url

    url = (read_home_file(home) or {}).get("db_url") or home_store_url(home)
    if url not in _ENGINES:
        _ENGINES[url] = create_engine(url)
    return _ENGINES[url]


@pytest.fixture(autouse=True)
def _close_engines():
    yield
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def _rows(home: Path, sql: str) -> list[tuple]:
    with _store(home).connect() as con:
        return [tuple(r) for r in con.exec_driver_sql(sql)]


def snapshot(home: Path) -> dict:
    """What the store holds, in plain SQL: keyed by content, not by row ids."""
    return {
        "recordings": _rows(home,
            "SELECT r.sha256, r.path, s.label, r.duration_s, r.sample_rate, r.channels, r.source"
            " FROM recordings r LEFT JOIN speakers s ON s.id = r.speaker_id"
            " ORDER BY r.sha256"),
        "segments": [(sha, a, b, bytes(v)) for sha, a, b, v in _rows(home,
            "SELECT r.sha256, g.start_s, g.end_s, g.vector FROM segments g"
            " JOIN recordings r ON r.id = g.recording_id ORDER BY r.sha256, g.start_s")],
        "failures": _rows(home, "SELECT path, sha256, reason, message FROM failures ORDER BY path"),
        "speakers": _rows(home, "SELECT label FROM speakers ORDER BY label"),
    }


def segment_count(home: Path) -> int:
    return _rows(home, "SELECT count(*) FROM segments")[0][0]


def stored_inputs(home: Path) -> int:
    """Recordings plus failures: inputs whose batch was committed."""
    return sum(_rows(home, f"SELECT count(*) FROM {t}")[0][0] for t in ("recordings", "failures"))


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict:
    """An uninterrupted ingest with the same batch size."""
    home = tmp_path_factory.mktemp("reference") / "home"
    with SpeakerDB.create(home, model="spectral") as db:
        stats = db.ingest([str(corpus)], config=IngestConfig(files_per_batch=BATCH))
        assert db.check().ok
    assert (stats.added, stats.failed) == (GOOD, 2)
    snap = snapshot(home)
    assert len(snap["recordings"]) == len(snap["segments"]) == GOOD
    assert sorted(f[2] for f in snap["failures"]) == ["too_short", "unreadable"]
    return snap


def kill_child(home: Path, source: Path, trigger: tuple, log: Path) -> None:
    """Start an ingest in a child process and SIGKILL it at ``trigger``:
    ("line", text): as soon as it prints ``text``; ("pause", k): once it stops after batch k;
    ("segments", n): as soon as the store holds at least n segments (it keeps running)."""
    kind, value, flush_s, *workers = trigger
    pause_at = value if kind == "pause" else 0
    cmd = [sys.executable, str(CHILD), str(home), str(source), str(BATCH), str(flush_s),
           str(pause_at), *map(str, workers)]
    with open(log, "a") as err:
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    watchdog = threading.Timer(60, child.kill)  # never hang the test run
    watchdog.start()
    try:
        if kind == "segments":
            while child.poll() is None and segment_count(home) < value:
                time.sleep(0.002)
        else:
            want = "paused" if kind == "pause" else value
            for line in child.stdout:
                if line.strip() == want:
                    break
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        watchdog.cancel()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL, (
        f"the child was not killed mid-ingest (exit {child.returncode}): {log.read_text()}")


def speakerdb_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speakerdb", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("backend,plan", [("sqlite", p) for p in PLANS] + [
    pytest.param("postgresql", p, marks=pytest.mark.pg) for p in PG_PLANS])
def test_kill9_then_resume_equals_an_uninterrupted_run(backend, plan, corpus, reference,
                                                       tmp_path, request):
    """On SQLite, and on PostgreSQL (some of the plans; compared with the SQLite reference)."""
    home = tmp_path / "home"
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    SpeakerDB.create(home, model="spectral", db_url=url).close()
    for trigger in PLANS[plan]:
        before = stored_inputs(home)
        kill_child(home, corpus, trigger, tmp_path / "child.log")
        assert segment_count(home) < GOOD  # interrupted before the end
        kind, value, flush_s, *_ = trigger
        if kind == "pause" and before == 0:  # batches are whole: exactly `value` are in
            assert stored_inputs(home) == BATCH * value
            if flush_s > 10:  # and none of them reached the saved indexes
                info = IndexSet.state(home)
                assert info is None or info.ntotal == 0

    done = speakerdb_cli("ingest", str(corpus), "--home", str(home), "--batch", str(BATCH),
                         "--quiet", "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["inputs"] == GOOD + 2
    assert stats["added"] + stats["skipped"] + stats["failed"] == GOOD + 2

    assert snapshot(home) == reference

    check = speakerdb_cli("check", "--home", str(home), "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report["ok"] and report["problems"] == []
    assert report["counts"]["segments"] == report["counts"]["recordings"] == GOOD

    with SpeakerDB.open(home) as db:  # and a further run changes nothing
        assert db.ingest([str(corpus)], config=IngestConfig(files_per_batch=BATCH)).added == 0
    assert snapshot(home) == reference
