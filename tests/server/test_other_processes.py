"""A running server and other processes on its home: it answers from what the store holds now
(a CLI ingest, rename or delete made while it runs), and a write while another process holds
the home's writer lock waits a bounded time and then answers 409 Busy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.server.conftest import TOKEN, serve, wav_bytes
from tests.server.test_http import assert_error
from tests.synth import write_corpus

REPO = Path(__file__).resolve().parents[2]


def cli(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SPEAKERDB_HOME", "SPEAKERDB_TOKEN")}
    env["SPEAKERDB_MODEL"] = "spectral"
    return subprocess.run([sys.executable, "-m", "speakerdb", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env, check=False)


def test_the_server_sees_what_the_command_line_writes(fresh_home, tmp_path):
    files = write_corpus(tmp_path / "new", speakers=1, utterances=2, first_speaker=8)
    probe = ("probe.wav", files["spk08"][0].read_bytes(), "audio/wav")
    with serve(fresh_home, token=TOKEN) as s, s.client(TOKEN) as c:
        r = c.post("/identify", files={"audio": probe}).json()
        assert r["speaker"] != "spk08"
        p = cli("ingest", tmp_path / "new", "--home", fresh_home, "-q")
        assert p.returncode == 0, p.stderr
        r = c.post("/identify", files={"audio": probe}).json()
        assert (r["decision"], r["speaker"]) == ("match", "spk08") and r["score"] > 0.9999
        assert "spk08" in [x["label"] for x in c.get("/speakers").json()["speakers"]]
        assert cli("speakers", "rename", "spk08", "eight", "--home", fresh_home).returncode == 0
        assert c.post("/identify", files={"audio": probe}).json()["speaker"] == "eight"
        assert cli("speakers", "delete", "eight", "--home", fresh_home).returncode == 0
        r = c.post("/identify", files={"audio": probe}).json()
        assert all(x["speaker"] != "eight" for x in r["candidates"])
        # the server's own write then saves indexes holding every stored vector
        r = c.post("/speakers/late/enroll", files={"audio": ("l.wav", wav_bytes(9, 0), "audio/wav")})
        assert r.status_code == 200, r.text
    p = cli("check", "--home", fresh_home, "--json")
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_write_while_another_process_writes_is_409_busy(fresh_home):
    from speakerdb.store.home_lock import HomeLock

    with serve(fresh_home, token=TOKEN, write_wait_s=0.3) as s, s.client(TOKEN) as c:
        with HomeLock(fresh_home).hold():  # another writer (another open file description)
            r = c.post("/speakers/spk00/merge", json={"into": "spk01"})
            assert "another process" in assert_error(r, 409, "Busy")
            assert c.post("/identify", files={"audio": ("a.wav", wav_bytes(1, 9),
                                                        "audio/wav")}).status_code == 200
        r = c.post("/speakers/spk00/merge", json={"into": "spk01"})
        assert r.status_code == 200, r.text
