"""speakerdb.files.download on local files and a loopback HTTP server: nothing leaves 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from speakerdb.errors import DownloadError
from speakerdb.files import download as D
from tests.loopback import LoopbackServer, without_proxies

PAYLOAD = bytes(range(256)) * 2050 + b"tail"  # a little over 512 KiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def source(tmp_path) -> Path:
    p = tmp_path / "src" / "w.pt"
    p.parent.mkdir()
    p.write_bytes(PAYLOAD)
    return p


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serves tmp_path/www on 127.0.0.1; yields (base_url, list of requested paths)."""
    without_proxies(monkeypatch)
    root = tmp_path / "www"
    root.mkdir()
    (root / "w.pt").write_bytes(PAYLOAD)
    s = LoopbackServer(root)
    yield s.url, s.requests
    s.close()


@pytest.mark.parametrize("as_url", [False, True])
def test_local_file_fetched_verified_and_recorded(tmp_path, source, as_url):
    cache = tmp_path / "cache"
    seen = []
    got = D.fetch(source.as_uri() if as_url else source, cache / "w.pt", DIGEST, len(PAYLOAD),
                  progress=lambda done, total: seen.append((done, total)))
    assert got == cache / "w.pt" and got.read_bytes() == PAYLOAD and source.exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert _names(cache) == ["w.pt", "w.pt.sha256"]
    lines = (cache / "w.pt.sha256").read_text().splitlines()
    st = got.stat()
    assert lines == [f"{DIGEST}  w.pt", f"# size={st.st_size} mtime_ns={st.st_mtime_ns}"]
    assert D.read_record(got) == D.Record(DIGEST, st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize("sha, size, why", [
    ("0" * 64, None, "is not the expected"),
    (DIGEST, len(PAYLOAD) + 1, "expected"),
])
def test_mismatch_raises_and_leaves_nothing(tmp_path, source, sha, size, why):
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=why) as err:
        D.fetch(source, cache / "w.pt", sha, size)
    assert str(source) in str(err.value)
    assert _names(cache) == []


def test_missing_local_file(tmp_path):
    with pytest.raises(DownloadError, match="nope.pt: cannot be read"):
        D.fetch(tmp_path / "nope.pt", tmp_path / "cache" / "w.pt", DIGEST)
    assert _names(tmp_path / "cache") == []


def test_http_fetch_verified(tmp_path, server):
    base, requests = server
    seen = []
    got = D.fetch(f"{base}/w.pt", tmp_path / "cache" / "w.pt", DIGEST, len(PAYLOAD),
                  progress=lambda done, total: seen.append((done, total)), timeout=5)
    assert got.read_bytes() == PAYLOAD and requests == ["/w.pt"]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert _names(tmp_path / "cache") == ["w.pt", "w.pt.sha256"]


def test_http_fetch_without_expected_sha_records_what_came(tmp_path, server):
    base, _ = server
    got = D.fetch(f"{base}/w.pt", tmp_path / "cache" / "w.pt", timeout=5)
    assert D.read_record(got).sha256 == DIGEST


def test_http_sha_mismatch_leaves_nothing(tmp_path, server):
    base, _ = server
    with pytest.raises(DownloadError, match=rf"{base}/w.pt: sha256 {DIGEST[:12]}… is not the"):
        D.fetch(f"{base}/w.pt", tmp_path / "cache" / "w.pt", "f" * 64, timeout=5)
    assert _names(tmp_path / "cache") == []


def test_http_404(tmp_path, server):
    base, _ = server
    with pytest.raises(DownloadError, match=rf"{base}/missing.pt: HTTP 404"):
        D.fetch(f"{base}/missing.pt", tmp_path / "cache" / "w.pt", DIGEST, timeout=5)
    assert _names(tmp_path / "cache") == []


def test_unsupported_scheme(tmp_path):
    with pytest.raises(DownloadError, match="unsupported URL"):
        D.fetch("ftp://example.org/w.pt", tmp_path / "w.pt", DIGEST)


def test_cached_file_reused_without_refetch_or_rehash(tmp_path, server, monkeypatch):
    base, requests = server
    dest = tmp_path / "cache" / "w.pt"
    D.fetch(f"{base}/w.pt", dest, DIGEST, timeout=5)
    monkeypatch.setattr(D, "sha256_file", lambda p: pytest.fail("hashed a recorded file"))
    for _ in range(2):
        assert D.fetch(f"{base}/w.pt", dest, DIGEST, len(PAYLOAD), timeout=5) == dest
        assert D.fetch(f"{base}/w.pt", dest, timeout=5) == dest
    assert requests == ["/w.pt"]


def test_damaged_cached_file_is_fetched_again_when_the_sha_is_known(tmp_path, server):
    base, requests = server
    dest = tmp_path / "cache" / "w.pt"
    D.fetch(f"{base}/w.pt", dest, DIGEST, timeout=5)
    st = dest.stat()
    dest.write_bytes(PAYLOAD[:-1] + b"!")
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert D.fetch(f"{base}/w.pt", dest, DIGEST, timeout=5).read_bytes() == PAYLOAD
    assert len(requests) == 2


def _old_json_sidecar(path: Path, digest: str = DIGEST) -> None:
    """The CAM++ weights cache's sidecar before files/download.py."""
    st = path.stat()
    path.with_name(path.name + ".sha256").write_text(json.dumps(
        {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}))


def _old_sha256sum_sidecar(path: Path, digest: str = DIGEST) -> None:
    """The ReDimNet release cache's sidecar before files/download.py."""
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def test_old_json_sidecar_accepted_without_hashing(tmp_path, monkeypatch):
    dest = tmp_path / "w.pt"
    dest.write_bytes(PAYLOAD)
    _old_json_sidecar(dest)
    before = (tmp_path / "w.pt.sha256").read_text()
    monkeypatch.setattr(D, "sha256_file", lambda p: pytest.fail("hashed a recorded file"))
    assert D.cached(dest, DIGEST, len(PAYLOAD)) and D.cached(dest)
    assert (tmp_path / "w.pt.sha256").read_text() == before  # a read-only use writes nothing


def test_old_sha256sum_sidecar_accepted_and_upgraded(tmp_path):
    dest = tmp_path / "w.pt"
    dest.write_bytes(PAYLOAD)
    _old_sha256sum_sidecar(dest)
    assert D.read_record(dest) == D.Record(DIGEST)
    assert D.cached(dest)  # hashed once against the record ...
    st = dest.stat()
    assert D.read_record(dest) == D.Record(DIGEST, st.st_size, st.st_mtime_ns)  # ... then kept


@pytest.mark.parametrize("write", [_old_json_sidecar, _old_sha256sum_sidecar])
def test_old_sidecar_that_disagrees(tmp_path, write):
    dest = tmp_path / "w.pt"
    dest.write_bytes(PAYLOAD)
    write(dest, "a" * 64)
    st = dest.stat()  # the file changed after its record was written
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(DownloadError, match="recorded at download"):
        D.cached(dest)  # no expected sha: the record is the reference
    assert dest.exists()
    assert D.cached(dest, DIGEST)  # an expected sha wins; the record is rewritten
    assert D.read_record(dest).sha256 == DIGEST


def test_real_campplus_cache_sidecar_is_understood():
    """The JSON sidecar an existing CAM++ cache holds (read only, when there is one)."""
    from speakerdb.model.campplus.weights import CAMPPLUS, cache_dir

    path = cache_dir() / CAMPPLUS.name
    if not D.sidecar_path(path).exists():
        pytest.skip(f"no {D.sidecar_path(path)}")
    assert D.read_record(path).sha256 == CAMPPLUS.sha256


@pytest.mark.parametrize("text", ["", "not a digest  w.pt\n", "{\"sha256\": 1}", "{oops"])
def test_unreadable_sidecar_means_no_record(tmp_path, text):
    dest = tmp_path / "w.pt"
    dest.write_bytes(PAYLOAD)
    (tmp_path / "w.pt.sha256").write_text(text)
    assert D.read_record(dest) is None and not D.cached(dest)
    assert D.cached(dest, DIGEST)  # with the expected sha the file is hashed and accepted


def test_no_partial_file_is_ever_the_target(tmp_path, source, monkeypatch):
    """A download that fails after writing bytes leaves neither the target nor a temporary."""
    cache = tmp_path / "cache"
    calls = []

    def failing_progress(done, total):
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        D.fetch(source, cache / "w.pt", DIGEST, progress=failing_progress)
    assert calls and _names(cache) == []


def test_module_imports_no_pooch():
    import subprocess
    import sys

    code = ("import sys, speakerdb.files.download; "
            "assert 'pooch' not in sys.modules and 'requests' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
