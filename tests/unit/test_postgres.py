"""PostgreSQL as the store: the driver as an extra, passwords never shown (and taken from the
environment or ``~/.pgpass``), several homes and processes on one store (two ingests at once,
an ingest while another process answers, speaker management seen by the others), a server
restart during an ingest, and the same answers as SQLite after the same ingest."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from speakerdb.api import SpeakerDB
from speakerdb.errors import StoreDriverMissing, StoreError, StoreUnavailable
from tests.pg import PASSWORD, SECRET_ROLE
from tests.synth import write_corpus
from tests.unit.test_processes import cli, cli_async, manifest, snapshot

pytestmark = pytest.mark.pg


def _create(home, url, embedder):
    return SpeakerDB.create(home, model="spectral", db_url=url, embedder=embedder)


# the driver, the URL and passwords ----------------------------------------------------------------
def test_a_missing_driver_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    from speakerdb.store.engine import make_engine

    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg: ImportError
    with pytest.raises(StoreDriverMissing, match=r"pip install 'speakerdb\[postgres\]'") as e:
        make_engine("postgresql+psycopg://me:hunter2@localhost/x")
    assert "hunter2" not in str(e.value) and "\n" not in str(e.value)


def test_the_cli_says_so_with_exit_2(tmp_path):
    stub = tmp_path / "stub"
    (stub / "psycopg").mkdir(parents=True)
    (stub / "psycopg" / "__init__.py").write_text("raise ImportError('no psycopg here')\n")
    env = dict(os.environ, PYTHONPATH=f"{stub}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    from tests.unit.test_processes import REPO
    import subprocess

    p = subprocess.run([sys.executable, "-m", "speakerdb", "init", "--home", tmp_path / "h",
                        "--db-url", "postgresql://me:hunter2@127.0.0.1:1/x"], cwd=REPO,
                       capture_output=True, text=True, env=env, timeout=120, check=False)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0, p.stderr
    assert "speakerdb[postgres]" in p.stderr and "hunter2" not in p.stderr + p.stdout


def test_a_url_without_a_driver_means_psycopg_and_passwords_are_masked(pg_url):
    from speakerdb.store.engine import make_engine, mask_passwords, redact

    engine = make_engine(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    assert engine.dialect.driver == "psycopg"
    engine.dispose()
    assert redact("postgresql://u:s3cr%40t@h:5/db") == "postgresql://u:***@h:5/db"
    assert mask_passwords("x postgresql+psycopg://u:s3cr:t@h/db y") == \
        "x postgresql+psycopg://u:***@h/db y"
    assert redact("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"


def test_init_and_every_command_on_postgres_never_show_the_password(pg_server, pg_url, tmp_path):
    from sqlalchemy.engine import make_url

    name = make_url(pg_url).database
    url = pg_server.url(name, SECRET_ROLE, PASSWORD)
    write_corpus(tmp_path / "c", speakers=2, utterances=2)
    home = tmp_path / "home"
    outputs = []
    for args in (["init", "--db-url", url, "--json"], ["ingest", tmp_path / "c", "-q"],
                 ["stats", "--json"], ["check"], ["speakers", "list"],
                 ["identify", tmp_path / "c" / "spk01" / "utt1.wav", "--json"]):
        p = cli(*args, "--home", home)
        assert p.returncode == 0, p.stderr
        outputs.append(p.stdout + p.stderr)
    assert json.loads(outputs[0])["db_url"] == url.replace(PASSWORD, "***")
    assert json.loads(outputs[-1])["results"][0]["speaker"] == "spk01"
    wrong = pg_server.url(name, SECRET_ROLE, "not-" + PASSWORD)
    p = cli("init", "--home", tmp_path / "other", "--db-url", wrong)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0, p.stderr
    assert "password authentication failed" in p.stderr and "PGPASSWORD or ~/.pgpass" in p.stderr
    outputs.append(p.stdout + p.stderr)
    assert not any(PASSWORD in o for o in outputs)


def test_the_password_may_come_from_the_environment_or_pgpass(pg_server, pg_url, tmp_path,
                                                              spectral_embedder, monkeypatch):
    from sqlalchemy.engine import make_url

    u = make_url(pg_url)
    url = pg_server.url(u.database, SECRET_ROLE)  # no password in it
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(StoreError, match="no password supplied.*PGPASSWORD or ~/.pgpass"):
        _create(tmp_path / "h0", url, spectral_embedder)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    _create(tmp_path / "h1", url, spectral_embedder).close()
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.delenv("PGPASSFILE")
    (tmp_path / ".pgpass").write_text(f"{u.host}:{u.port}:*:{SECRET_ROLE}:{PASSWORD}\n")
    (tmp_path / ".pgpass").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    p = cli("stats", "--home", tmp_path / "h1", "--json")  # a new process: ~/.pgpass
    assert p.returncode == 0, p.stderr


def test_speakerdb_db_url_names_the_store_of_a_new_home(pg_url, tmp_path, monkeypatch):
    from speakerdb.store.engine import redact

    monkeypatch.setenv("SPEAKERDB_DB_URL", pg_url)
    p = cli("init", "--home", tmp_path / "h", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["db_url"] == redact(pg_url)
    assert not (tmp_path / "h" / "speakerdb.sqlite").exists()


# several homes and processes on one store ---------------------------------------------------------
@pytest.fixture
def homes(pg_url, tmp_path, spectral_embedder):
    """Two homes (own indexes each) on one PostgreSQL store."""
    out = [tmp_path / "home-a", tmp_path / "home-b"]
    for h in out:
        _create(h, pg_url, spectral_embedder).close()
    return out


def test_homes_created_at_once_on_an_empty_database_take_turns(pg_url, tmp_path,
                                                              spectral_embedder):
    import threading

    errors: list[BaseException] = []

    def create(k: int) -> None:
        try:
            _create(tmp_path / f"h{k}", pg_url, spectral_embedder).close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=create, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    for k in range(4):
        with SpeakerDB.open(tmp_path / f"h{k}") as db:
            assert db.model.sha256 == spectral_embedder.sha256


def test_two_ingests_of_overlapping_sources_in_two_homes_at_once(homes, tmp_path):
    files = write_corpus(tmp_path / "c", speakers=6, utterances=3)
    spks = sorted(files)
    m1 = manifest(tmp_path / "one.csv", {s: files[s] for s in spks[:4]})
    m2 = manifest(tmp_path / "two.csv", {s: files[s] for s in spks[2:]})
    runs = [cli_async("ingest", m, "--home", h, "--json", "-q", "--batch", "2")
            for m, h in zip((m1, m2), homes)]
    docs = []
    for r in runs:
        out, err = r.communicate(timeout=180)
        assert r.returncode == 0, err
        assert "Traceback" not in err and "IntegrityError" not in err
        docs.append(json.loads(out))
    assert sum(d["added"] for d in docs) == 18  # every file once
    assert sum(d["skipped"] for d in docs) == 6
    assert all(d["failed"] == 0 for d in docs)
    for h in homes:  # each home's saved vectors lack the other's files: check catches up
        done = cli("check", "--home", h, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "behind the store" in json.loads(done.stdout)["notes"][0]
        assert cli("check", "--home", h, "--json").returncode == 0  # and nothing is left
        recordings, segments, speakers = snapshot(h)
        assert (recordings, segments) == (18, 18)
        assert speakers == [(s, 3) for s in spks]


def test_a_serving_process_follows_another_homes_ingest_and_management(homes, tmp_path,
                                                                       spectral_embedder):
    write_corpus(tmp_path / "a", speakers=3, utterances=2)
    new = write_corpus(tmp_path / "n", speakers=2, utterances=2, first_speaker=7)
    assert cli("ingest", tmp_path / "a", "--home", homes[0], "-q").returncode == 0
    with SpeakerDB.open(homes[1], embedder=spectral_embedder) as served:  # like `serve`
        assert served.indexes.set.ntotal == 6  # caught up at open
        probe = new["spk08"][0]
        assert served.identify(probe).speaker != "spk08"
        assert served.refresh() is False
        assert cli("ingest", tmp_path / "n", "--home", homes[0], "-q").returncode == 0
        after = served.identify(probe)  # the generation changed: caught up first
        assert after.speaker == "spk08" and after.score == pytest.approx(1.0, abs=1e-5)
        assert cli("speakers", "rename", "spk08", "eight", "--home", homes[0]).returncode == 0
        assert served.identify(probe).speaker == "eight"
        assert cli("speakers", "merge", "spk07", "eight", "--home", homes[0]).returncode == 0
        assert served.identify(new["spk07"][0]).speaker == "eight"
        assert cli("speakers", "delete", "eight", "--home", homes[0]).returncode == 0
        assert all(c.speaker != "eight" for c in served.identify(probe).candidates)
        assert [s.label for s in served.speakers()] == ["spk00", "spk01", "spk02"]
        assert served.indexes.set.ntotal == 6
    for h in homes:
        SpeakerDB.open(h).close()
        assert snapshot(h)[:2] == (6, 6)


def test_a_running_server_follows_another_home_and_survives_a_store_outage(
        pg_server, homes, tmp_path):
    from tests.server.conftest import TOKEN, serve

    if not pg_server.own:
        pytest.skip("SPEAKERDB_TEST_PG_URL names a server the tests cannot stop")
    write_corpus(tmp_path / "a", speakers=2, utterances=2)
    new = write_corpus(tmp_path / "n", speakers=1, utterances=2, first_speaker=8)
    probe = ("probe.wav", new["spk08"][0].read_bytes(), "audio/wav")
    assert cli("ingest", tmp_path / "a", "--home", homes[0], "-q").returncode == 0
    with serve(homes[1], token=TOKEN) as s, s.client(TOKEN) as c:
        assert c.post("/identify", files={"audio": probe}).json()["speaker"] != "spk08"
        p = cli_async("ingest", tmp_path / "n", "--home", homes[0], "-q")  # while it serves
        while p.poll() is None:
            assert c.post("/identify", files={"audio": probe}).status_code == 200
        assert p.returncode == 0, p.stderr.read()
        r = c.post("/identify", files={"audio": probe}).json()
        assert (r["decision"], r["speaker"]) == ("match", "spk08")
        pg_server.pg_ctl("stop", "-m", "fast")
        try:
            r = c.post("/identify", files={"audio": probe})
            assert r.status_code == 503 and r.json()["error"]["type"] == "StoreUnavailable", r.text
        finally:
            pg_server.pg_ctl("start")
        assert c.post("/identify", files={"audio": probe}).json()["speaker"] == "spk08"
    for h in homes:
        SpeakerDB.open(h).close()
        assert cli("check", "--home", h).returncode == 0


def test_writers_in_two_threads_never_share_a_generation(pg_url, spectral_embedder, tmp_path):
    import threading

    from speakerdb.store.engine import make_engine
    from speakerdb.store.store import Store

    _create(tmp_path / "h", pg_url, spectral_embedder).close()
    stores = [Store(make_engine(pg_url)) for _ in range(2)]
    seen: list[tuple[int, int]] = []

    def work(store, k):
        for i in range(15):
            counts: dict = {}
            store.write_batch(None, [_rec(f"{k}{i:063d}", k * 100 + i)], [], counts)
            seen.append(counts["generation"])

    start = stores[0].generation()
    threads = [threading.Thread(target=work, args=(s, k)) for k, s in enumerate(stores, 1)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    afters = sorted(after for _, after in seen)
    assert afters == list(range(start + 1, start + 31))  # each commit its own number
    assert stores[0].generation() == start + 30
    for s in stores:
        s.close()


def _rec(sha: str, seed: int):
    from speakerdb.store.records import RecordingIn

    raw = np.random.default_rng(seed).standard_normal((1, 256)).astype(np.float32)
    return RecordingIn(sha, f"/x/{sha[:8]}.wav", "ann", 1.0, 16000, 1, "folders", [0.0], [1.0],
                       raw)


# a lost connection ----------------------------------------------------------------------------------
def test_a_server_restart_inside_a_batch_is_one_error_and_the_ingest_resumes(
        pg_server, pg_url, tmp_path, spectral_embedder):
    from speakerdb.config import IngestConfig
    from speakerdb.store.store import Store

    write_corpus(tmp_path / "c", speakers=4, utterances=3)
    home = tmp_path / "home"
    db = _create(home, pg_url, spectral_embedder)
    original, calls = Store._speaker_ids, []

    def speaker_ids(s, labels):  # inside a batch's transaction, after its first query
        calls.append(1)
        if len(calls) == 3:  # the third batch: the server restarts under it
            pg_server.restart()
        return original(s, labels)

    Store._speaker_ids = staticmethod(speaker_ids)
    try:
        with pytest.raises(StoreUnavailable, match="run the command again") as e:
            db.ingest([tmp_path / "c"], config=IngestConfig(files_per_batch=2, workers=0))
        assert "\n" not in str(e.value)
    finally:
        Store._speaker_ids = staticmethod(original)
    assert db.store.counts()["recordings"] == 4  # two whole batches, nothing of the third
    db.close()
    p = cli("ingest", tmp_path / "c", "--home", home, "--json", "-q")  # resumes
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["added"] == 8
    assert snapshot(home)[:2] == (12, 12)


def test_a_restart_between_batches_is_a_fresh_connection(pg_server, pg_url, tmp_path,
                                                       spectral_embedder):
    from speakerdb.config import IngestConfig

    write_corpus(tmp_path / "c", speakers=3, utterances=2)
    home = tmp_path / "home"
    batches = []

    def progress(_n):
        batches.append(1)
        if len(batches) == 1:
            pg_server.restart()

    with _create(home, pg_url, spectral_embedder) as db:
        stats = db.ingest([tmp_path / "c"], config=IngestConfig(files_per_batch=2, workers=0),
                          progress=progress)
        assert len(batches) == 3 and stats.added == 6
    assert snapshot(home)[:2] == (6, 6)


def test_a_restart_between_requests_is_reconnected(pg_server, homes, tmp_path, spectral_embedder):
    write_corpus(tmp_path / "a", speakers=2, utterances=2)
    assert cli("ingest", tmp_path / "a", "--home", homes[0], "-q").returncode == 0
    with SpeakerDB.open(homes[1], embedder=spectral_embedder) as served:
        probe = tmp_path / "a" / "spk01" / "utt1.wav"
        assert served.identify(probe).speaker == "spk01"
        pg_server.restart()
        assert served.identify(probe).speaker == "spk01"  # pre-ping: a fresh connection


# the same answers as SQLite -------------------------------------------------------------------------
def test_vectors_ids_and_answers_equal_sqlites(pg_url, tmp_path, spectral_embedder):
    files = write_corpus(tmp_path / "c", speakers=5, utterances=3)
    dbs = [_create(tmp_path / "sqlite", None, spectral_embedder),
           _create(tmp_path / "pg", pg_url, spectral_embedder)]
    try:
        for db in dbs:
            db.ingest([tmp_path / "c"])
        (ids_s, raw_s), (ids_p, raw_p) = (db.store.all_vectors() for db in dbs)
        np.testing.assert_array_equal(ids_s, ids_p)
        np.testing.assert_array_equal(raw_s, raw_p)
        assert dbs[0].store.counts() == dbs[1].store.counts()
        assert dbs[0].speakers() == dbs[1].speakers()
        for paths in files.values():
            a, b = (db.identify(paths[0]) for db in dbs)
            assert a.speaker == b.speaker and a.decision == b.decision
            assert abs(a.score - b.score) <= 1e-6
            assert [c.speaker for c in a.candidates] == [c.speaker for c in b.candidates]
            for x, y in zip(a.candidates, b.candidates):
                assert abs(x.score - y.score) <= 1e-6
    finally:
        for db in dbs:
            db.close()


def test_a_rename_the_server_rolls_back_in_a_deadlock_is_run_again(pg_url, tmp_path,
                                                                   spectral_embedder):
    """Another writer locks the generation row, then the speaker row the rename updated: the
    rename waits on the first lock, the other on the rename's, and PostgreSQL breaks the cycle
    by rolling the rename back (it waited first). The rename runs again once the other commits."""
    import threading

    from sqlalchemy import create_engine, text

    write_corpus(tmp_path / "a", speakers=2, utterances=1)
    db = _create(tmp_path / "home", pg_url, spectral_embedder)
    other = create_engine(pg_url)
    try:
        db.ingest([str(tmp_path / "a")])
        locked, done = threading.Event(), []
        con = other.connect()
        tx = con.begin()
        con.exec_driver_sql("SET LOCAL deadlock_timeout = '20s'")  # the rename's 1 s acts first
        con.execute(text("SELECT value FROM settings WHERE key = 'generation' FOR UPDATE"))

        def rename():
            locked.wait()
            done.append(db.rename_speaker("spk00", "zero"))

        t = threading.Thread(target=rename)
        t.start()
        locked.set()
        import time

        time.sleep(0.5)  # the rename holds spk00's row and waits for the generation row
        con.execute(text("UPDATE speakers SET label = label WHERE label = 'spk00'"))
        tx.commit()
        con.close()
        t.join(60)
        assert not t.is_alive() and done and done[0].label == "zero"
        assert [s.label for s in db.speakers()] == ["spk01", "zero"]
    finally:
        db.close()
        other.dispose()
