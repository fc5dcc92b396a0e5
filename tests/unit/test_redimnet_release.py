"""Release names, URLs and downloads of official ReDimNet files — on local files only."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import urllib.error
from pathlib import Path

import pytest

from speakerdb.errors import UsageError
from speakerdb.model.redimnet.release import (
    BASE_URL,
    PUBLISHED,
    DownloadError,
    fetch_release,
    parse_release_name,
    release_filename,
    release_url,
)

PAYLOAD = bytes(range(256)) * 4099  # ~1 MB, more than one read chunk


@pytest.mark.parametrize("name, url", [
    ("b2-vox2-ft_lm", BASE_URL + "b2-vox2-ft_lm.pt"),
    ("b0-vox2-ptn.pt", BASE_URL + "b0-vox2-ptn.pt"),
    ("b6-vox2-ft_lm", BASE_URL + "b6-vox2-ft_lm.pt"),
    ("M-vb2+vox2+cnc-ft_mix", BASE_URL + "M-vb2+vox2+cnc-ft_mix.pt"),
    ("S-vb2-ptn", BASE_URL + "S-vb2-ptn.pt"),
])
def test_release_url(name, url):
    assert release_url(name) == url
    assert url == "https://github.com/IDRnD/ReDimNet/releases/download/latest/" + release_filename(name)


def test_parse_and_published_set():
    assert parse_release_name("b3-vox2-ft_lm") == ("b3", "vox2", "ft_lm")
    assert len(PUBLISHED) == 18
    for n in PUBLISHED:
        parse_release_name(n)


@pytest.mark.parametrize("name, why", [
    ("b7-vox2-ft_lm", "unknown size"),
    ("B2-vox2-ft_lm", "unknown size"),
    ("b2-vox1-ft_lm", "unknown dataset"),
    ("b2-vox2-ft", "unknown train type"),
    ("b2-vox2", "expected size-dataset-train_type"),
    ("b2_vox2_ft_lm", "expected size-dataset-train_type"),
    ("../b2-vox2-ft_lm", "unknown size"),
    ("b2-vox2-ft_mix", "not a published"),
    ("M-vox2-ft_lm", "not a published"),
])
def test_bad_names(name, why):
    with pytest.raises(UsageError, match=why):
        release_url(name)


class _Resp(io.BytesIO):
    def __init__(self, data: bytes, length: int | None = None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}


def test_fetch_with_injected_opener_records_and_reuses(tmp_path):
    calls = []

    def opener(req, timeout):
        calls.append(req.full_url)
        return _Resp(PAYLOAD)

    seen = []
    p = fetch_release("b2-vox2-ft_lm", tmp_path / "cache", opener=opener,
                      progress=lambda got, total: seen.append((got, total)))
    assert p == tmp_path / "cache" / "b2-vox2-ft_lm.pt" and p.read_bytes() == PAYLOAD
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert (p.parent / "b2-vox2-ft_lm.pt.sha256").read_text() == f"{digest}  b2-vox2-ft_lm.pt\n"
    assert calls == [BASE_URL + "b2-vox2-ft_lm.pt"]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert sorted(f.name for f in p.parent.iterdir()) == ["b2-vox2-ft_lm.pt", "b2-vox2-ft_lm.pt.sha256"]
    # second use: verified against the record, no download
    assert fetch_release("b2-vox2-ft_lm", tmp_path / "cache", sha256=digest.upper(), opener=opener) == p
    assert len(calls) == 1
    # a changed cached file is refused, not used
    p.write_bytes(PAYLOAD[:-1] + b"x")
    with pytest.raises(DownloadError, match="recorded at download"):
        fetch_release("b2-vox2-ft_lm", tmp_path / "cache", opener=opener)
    assert len(calls) == 1


def test_fetch_wrong_expected_sha_leaves_nothing(tmp_path):
    with pytest.raises(DownloadError, match="not the expected"):
        fetch_release("b0-vox2-ptn", tmp_path, sha256="0" * 64, opener=lambda r, timeout: _Resp(PAYLOAD))
    assert list(tmp_path.iterdir()) == []


def test_fetch_cut_short_leaves_nothing(tmp_path):
    with pytest.raises(DownloadError, match="cut short"):
        fetch_release("b0-vox2-ptn", tmp_path, opener=lambda r, timeout: _Resp(PAYLOAD, len(PAYLOAD) + 10))
    assert list(tmp_path.iterdir()) == []


def test_fetch_without_record_downloads_again(tmp_path):
    (tmp_path / "b0-vox2-ptn.pt").write_bytes(b"stale")
    p = fetch_release("b0-vox2-ptn", tmp_path, opener=lambda r, timeout: _Resp(PAYLOAD))
    assert p.read_bytes() == PAYLOAD


def test_fetch_network_error_is_typed(tmp_path):
    def opener(req, timeout):
        raise urllib.error.URLError("no route to host")

    with pytest.raises(DownloadError, match="no route to host"):
        fetch_release("b0-vox2-ptn", tmp_path, opener=opener)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def local_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "b2-vox2-ft_lm.pt").write_bytes(PAYLOAD)
    (root / "M-vb2+vox2+cnc-ft_mix.pt").write_bytes(PAYLOAD[::-1])

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_over_http_from_localhost(tmp_path, local_server):
    cache = tmp_path / "cache"
    p = fetch_release("b2-vox2-ft_lm", cache, base_url=local_server,
                      sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert p.read_bytes() == PAYLOAD
    q = fetch_release("M-vb2+vox2+cnc-ft_mix", cache, base_url=local_server)
    assert q.name == "M-vb2+vox2+cnc-ft_mix.pt" and q.read_bytes() == PAYLOAD[::-1]
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_release("b0-vox2-ptn", cache, base_url=local_server)
    assert sorted(f.name for f in cache.iterdir()) == sorted(
        ["b2-vox2-ft_lm.pt", "b2-vox2-ft_lm.pt.sha256",
         "M-vb2+vox2+cnc-ft_mix.pt", "M-vb2+vox2+cnc-ft_mix.pt.sha256"])


def test_release_module_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, speakerdb.model.redimnet.release, speakerdb.model.redimnet; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
