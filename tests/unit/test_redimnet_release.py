"""Release names, URLs and downloads of official ReDimNet files — on local files only."""

from __future__ import annotations

import hashlib
import os
import socket
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
from tests.loopback import LoopbackServer, without_proxies

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


@pytest.fixture
def server(tmp_path, monkeypatch):
    without_proxies(monkeypatch)
    root = tmp_path / "served"
    root.mkdir()
    for name in ("b2-vox2-ft_lm.pt", "b0-vox2-ptn.pt"):
        (root / name).write_bytes(PAYLOAD)
    (root / "M-vb2+vox2+cnc-ft_mix.pt").write_bytes(PAYLOAD[::-1])
    s = LoopbackServer(root)
    yield s
    s.close()


def test_fetch_records_and_reuses(tmp_path, server):
    seen = []
    cache = tmp_path / "cache"
    p = fetch_release("b2-vox2-ft_lm", cache, base_url=server.url,
                      progress=lambda got, total: seen.append((got, total)))
    assert p == cache / "b2-vox2-ft_lm.pt" and p.read_bytes() == PAYLOAD
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert (p.parent / "b2-vox2-ft_lm.pt.sha256").read_text().splitlines()[0] == \
        f"{digest}  b2-vox2-ft_lm.pt"
    assert server.requests == ["/b2-vox2-ft_lm.pt"]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert sorted(f.name for f in p.parent.iterdir()) == ["b2-vox2-ft_lm.pt", "b2-vox2-ft_lm.pt.sha256"]
    # second use: verified against the record, no download
    assert fetch_release("b2-vox2-ft_lm", cache, sha256=digest.upper(), base_url=server.url) == p
    assert len(server.requests) == 1
    # a changed cached file is refused, not used (the record covers the size and mtime)
    st = p.stat()
    p.write_bytes(PAYLOAD[:-1] + b"x")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(DownloadError, match="recorded at download"):
        fetch_release("b2-vox2-ft_lm", cache, base_url=server.url)
    assert len(server.requests) == 1


def test_fetch_reads_a_bare_sha256sum_record(tmp_path, server):
    """The sidecar format of earlier versions (one sha256sum line) is still the reference."""
    (tmp_path / "b0-vox2-ptn.pt").write_bytes(PAYLOAD)
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    (tmp_path / "b0-vox2-ptn.pt.sha256").write_text(f"{digest}  b0-vox2-ptn.pt\n")
    assert fetch_release("b0-vox2-ptn", tmp_path, base_url=server.url).read_bytes() == PAYLOAD
    assert server.requests == []
    (tmp_path / "b0-vox2-ptn.pt.sha256").write_text(f"{'0' * 64}  b0-vox2-ptn.pt\n")
    with pytest.raises(DownloadError, match="recorded at download"):
        fetch_release("b0-vox2-ptn", tmp_path, base_url=server.url)


def test_fetch_wrong_expected_sha_leaves_nothing(tmp_path, server):
    with pytest.raises(DownloadError, match="not the expected"):
        fetch_release("b0-vox2-ptn", tmp_path / "c", sha256="0" * 64, base_url=server.url)
    assert list((tmp_path / "c").iterdir()) == []


def test_fetch_cut_short_leaves_nothing(tmp_path, server):
    with pytest.raises(DownloadError, match="cut short"):
        fetch_release("b0-vox2-ptn", tmp_path / "c", base_url=server.url + "/short/")
    assert list((tmp_path / "c").iterdir()) == []


def test_fetch_without_record_downloads_again(tmp_path, server):
    (tmp_path / "b0-vox2-ptn.pt").write_bytes(b"stale")
    p = fetch_release("b0-vox2-ptn", tmp_path, base_url=server.url)
    assert p.read_bytes() == PAYLOAD and len(server.requests) == 1


def test_fetch_network_error_is_typed(tmp_path, monkeypatch):
    without_proxies(monkeypatch)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}.*download failed"):
        fetch_release("b0-vox2-ptn", tmp_path, base_url=f"http://127.0.0.1:{port}/", timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_fetch_over_http_from_localhost(tmp_path, server):
    cache = tmp_path / "cache"
    (server.root / "b0-vox2-ptn.pt").unlink()
    p = fetch_release("b2-vox2-ft_lm", cache, base_url=server.url,
                      sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert p.read_bytes() == PAYLOAD
    q = fetch_release("M-vb2+vox2+cnc-ft_mix", cache, base_url=server.url)
    assert q.name == "M-vb2+vox2+cnc-ft_mix.pt" and q.read_bytes() == PAYLOAD[::-1]
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_release("b0-vox2-ptn", cache, base_url=server.url)
    assert sorted(f.name for f in cache.iterdir()) == sorted(
        ["b2-vox2-ft_lm.pt", "b2-vox2-ft_lm.pt.sha256",
         "M-vb2+vox2+cnc-ft_mix.pt", "M-vb2+vox2+cnc-ft_mix.pt.sha256"])


def test_release_module_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, speakerdb.model.redimnet.release, speakerdb.model.redimnet; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
