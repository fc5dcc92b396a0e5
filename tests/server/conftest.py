"""A real HTTP server for the server tests: a small database of synthetic voices, served by
uvicorn on 127.0.0.1 (a free port) from a background thread, and an httpx client.

One database is built per session; each server gets its own copy of it, so tests that delete
or rename never disturb the others.
"""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.homes import synthetic_home
from tests.synth import RATE, voice

TOKEN = "test-token-8b1f"
SPEAKERS, UTTERANCES = 5, 3  # spk00..spk04, utt0..utt2 in the database


def wav_bytes(speaker: int, utterance: int, seconds: float = 1.5) -> bytes:
    """A 16-bit PCM WAV of a synthetic voice (utterance >= UTTERANCES: held out)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, voice(speaker, utterance, seconds), RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="session")
def base_home(tmp_path_factory) -> Path:
    return synthetic_home(tmp_path_factory.mktemp("server"), SPEAKERS, UTTERANCES)


class Served:
    def __init__(self, url: str, db, app):
        self.url, self.db, self.app = url, db, app

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def serve(home: Path, **app_kw):
    """Open ``home``, serve it with uvicorn on a free loopback port, yield a ``Served``."""
    import uvicorn

    from speakerdb.api import SpeakerDB
    from speakerdb.server import create_app

    db = SpeakerDB.open(home)
    app = create_app(db, **app_kw)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the server at {url} did not answer /health")
            time.sleep(0.05)
        yield Served(url, db, app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        db.close()


@pytest.fixture
def fresh_home(base_home, tmp_path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(base_home, home)
    return home


@pytest.fixture(scope="module")
def server(base_home, tmp_path_factory):
    """A server with a token (writes need it), over its own copy of the database."""
    home = tmp_path_factory.mktemp("served") / "home"
    shutil.copytree(base_home, home)
    with serve(home, token=TOKEN, max_upload_bytes=1_000_000) as s:
        yield s


@pytest.fixture
def open_server(fresh_home):
    """A server without a token (every endpoint open), over a fresh copy of the database."""
    with serve(fresh_home) as s:
        yield s


@pytest.fixture
def client(server):
    """A client of the tokened server that carries the token (every endpoint but /health
    needs it)."""
    with server.client(TOKEN) as c:
        yield c
