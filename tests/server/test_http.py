"""Every endpoint through a real uvicorn server on 127.0.0.1: answers, status codes, the
error body, auth, upload limits, the web page and the ``serve`` command's refusal."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.server.conftest import SPEAKERS, TOKEN, UTTERANCES, wav_bytes


def audio(k: int, j: int, name: str = "clip.wav", ctype: str = "audio/wav"):
    return (name, wav_bytes(k, j), ctype)


def assert_error(r, status: int, type_: str | None = None) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    msg = body["error"]["message"]
    assert msg and "\n" not in msg
    if type_ is not None:
        assert body["error"]["type"] == type_, body
    return msg


# reads ---------------------------------------------------------------------------------------
def test_health_and_stats(client):
    h = client.get("/health").json()
    assert h["ok"] is True and h["model"] == "spectral"
    assert h["counts"]["speakers"] == SPEAKERS
    assert h["counts"]["recordings"] == SPEAKERS * UTTERANCES
    s = client.get("/stats").json()
    assert s["model"]["name"] == "spectral" and s["counts"]["segments"] == SPEAKERS * UTTERANCES
    assert s["vectors"]["dims"] == [64, 128, 192, 256] and s["vectors"]["ntotal"] > 0


@pytest.mark.parametrize("k", range(SPEAKERS))
def test_identify_held_out_voice(client, k):
    r = client.post("/identify", files={"audio": audio(k, UTTERANCES + 4, f"probe{k}.wav")})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["input"] == f"probe{k}.wav"
    assert res["decision"] == "match" and res["speaker"] == f"spk{k:02d}"
    assert res["candidates"][0]["speaker"] == f"spk{k:02d}"
    assert res["score"] >= res["threshold"]


@pytest.mark.parametrize("path,fields", [("/identify", ["audio"]), ("/embed", ["audio"]),
                                         ("/verify", ["a", "b"])])
def test_several_files_for_one_field_are_refused(client, path, fields):
    files = [(f, audio(k, 9, f"{f}{k}.wav")) for f in fields for k in (1,)]
    files.append((fields[-1], audio(2, 9, "second.wav")))
    msg = assert_error(client.post(path, files=files), 422, "ValidationError")
    assert f"{fields[-1]}: 2 files sent" in msg
    one = [(f, audio(k, 9, f"{f}{k}.wav")) for k, f in enumerate(fields, start=1)]
    assert client.post(path, files=one).status_code == 200


def test_identify_parameters_as_query_or_form(client):
    f = {"audio": audio(1, 9)}
    r = client.post("/identify", files=f, params={"top_k": 2, "threshold": 1.5})
    res = r.json()
    assert r.status_code == 200 and len(res["candidates"]) == 2
    assert res["decision"] == "unknown" and res["threshold"] == 1.5
    assert res["threshold_source"] == "given"
    r = client.post("/identify", files=f, data={"top_k": "3"})
    assert r.status_code == 200 and len(r.json()["candidates"]) == 3
    r = client.post("/identify", files=f, params={"score_norm": "asnorm"})
    assert r.status_code == 200 and r.json()["score_norm"] == "asnorm"


@pytest.mark.parametrize("params", [{"top_k": 0}, {"top_k": "many"}, {"threshold": "nan"},
                                    {"threshold": "inf"}, {"score_norm": "znorm"}])
def test_identify_bad_parameters_are_422(client, params):
    r = client.post("/identify", files={"audio": audio(1, 9)}, params=params)
    assert_error(r, 422, "ValidationError")


def test_verify_and_embed(client):
    same = client.post("/verify", files={"a": audio(2, 5, "a.wav"), "b": audio(2, 6, "b.wav")})
    diff = client.post("/verify", files={"a": audio(2, 5, "a.wav"), "b": audio(3, 6, "b.wav")})
    assert same.status_code == diff.status_code == 200
    assert same.json()["inputs"] == ["a.wav", "b.wav"]
    assert same.json()["decision"] == "same"
    assert set(same.json()["scores"]) == {"64", "128", "192", "256"}
    assert same.json()["score"] > diff.json()["score"]
    e = client.post("/embed", files={"audio": audio(2, 5, "e.wav")}).json()
    assert e["model"]["name"] == "spectral" and e["input"] == "e.wav"
    assert {k: len(v) for k, v in e["embeddings"].items()} == {
        "64": 64, "128": 128, "192": 192, "256": 256}


def test_speakers_list(client):
    body = client.get("/speakers").json()
    assert [s["label"] for s in body["speakers"]] == [f"spk{k:02d}" for k in range(SPEAKERS)]
    assert all(s["recordings"] == UTTERANCES for s in body["speakers"])


# bad uploads -----------------------------------------------------------------------------------
def test_corrupt_audio_is_400(client):
    junk = os.urandom(4000)
    r = client.post("/identify", files={"audio": ("junk.wav", junk, "audio/wav")})
    assert "junk.wav" in assert_error(r, 400, "AudioError")


@pytest.mark.parametrize("files", [
    {"audio": ("empty.wav", b"", "audio/wav")},
    {"audio": ("short.wav", wav_bytes(1, 9, seconds=0.1), "audio/wav")},
    {"audio": ("riff.wav", b"RIFF\x00\x00\x00\x00WAVEfmt ", "application/octet-stream")},
])
def test_unusable_audio_is_400(client, files):
    assert_error(client.post("/identify", files=files), 400)
    assert_error(client.post("/embed", files=files), 400)


def test_wrong_content_type_is_415(client):
    r = client.post("/identify", files={"audio": ("x.txt", wav_bytes(1, 9), "text/plain")})
    assert "text/plain" in assert_error(r, 415, "UnsupportedMediaType")
    r = client.post("/verify", files={"a": audio(1, 1), "b": ("b.png", b"x", "image/png")})
    assert_error(r, 415)


def test_missing_or_text_fields_are_422(client):
    assert_error(client.post("/identify"), 422, "ValidationError")
    assert_error(client.post("/identify", data={"audio": "/etc/passwd"}), 422)
    assert_error(client.post("/verify", files={"a": audio(1, 1)}), 422)


def test_oversize_upload_is_413(client):
    big = b"\0" * 1_200_000  # the server's limit is 1,000,000 bytes
    r = client.post("/identify", files={"audio": ("big.wav", big, "audio/wav")})
    assert_error(r, 413, "PayloadTooLarge")
    assert client.get("/health").status_code == 200


def test_oversize_streamed_upload_is_413(client):
    def chunks():  # no content-length: the server must count while it reads
        yield (b'--xyz\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"'
               b"\r\nContent-Type: audio/wav\r\n\r\n")
        for _ in range(40):
            yield b"\0" * 50_000

    r = client.post("/identify", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert_error(r, 413, "PayloadTooLarge")


def test_the_files_together_count_against_the_limit(server):
    half = ("half.wav", b"\0" * 600_000, "audio/wav")
    with server.client(TOKEN) as c:
        r = c.post("/verify", files={"a": half, "b": half})
    assert_error(r, 413)


def test_unknown_route_and_method(client):
    assert_error(client.get("/nothing"), 404, "NotFound")
    assert_error(client.put("/health"), 405, "MethodNotAllowed")


# writes and auth -----------------------------------------------------------------------------
WRITES = [
    ("post", "/speakers/spk01/enroll", {"files": {"audio": audio(1, 9)}}),
    ("patch", "/speakers/spk01", {"json": {"label": "renamed"}}),
    ("post", "/speakers/spk01/merge", {"json": {"into": "spk02"}}),
    ("delete", "/speakers/spk01", {}),
    ("delete", "/recordings/spk01/utt0.wav", {}),
]


@pytest.mark.parametrize("method,path,kw", WRITES)
@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN + "x", ""])
def test_writes_need_the_token(server, method, path, kw, token):
    with server.client(token) as c:
        r = getattr(c, method)(path, **kw) if method != "delete" else c.delete(path)
    assert_error(r, 401, "Unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    with server.client(TOKEN) as c:
        assert len(c.get("/speakers").json()["speakers"]) == SPEAKERS


def test_writes_with_the_token(server):
    with server.client(TOKEN) as c:
        r = c.post("/speakers/newcomer/enroll",
                   files=[("audio", audio(7, 0, "n0.wav")), ("audio", audio(7, 1, "n1.wav"))])
        assert r.status_code == 200, r.text
        assert r.json()["added"] == 2 and r.json()["speaker"] == "newcomer"
        r = c.post("/identify", files={"audio": audio(7, 5)})
        assert r.json()["speaker"] == "newcomer"
        r = c.patch("/speakers/newcomer", json={"label": "guest"})
        assert r.status_code == 200 and r.json()["speaker"]["label"] == "guest"
        r = c.delete("/speakers/guest")
        assert r.status_code == 200 and r.json()["segments"] == 2
        assert "guest" not in [s["label"] for s in c.get("/speakers").json()["speakers"]]


def test_speaker_management_without_a_token(open_server):
    with open_server.client() as c:
        r = c.post("/speakers/spk00/enroll", files={"audio": audio(0, 7, "extra.wav")})
        assert r.status_code == 200 and r.json()["added"] == 1
        again = c.post("/speakers/spk00/enroll", files={"audio": audio(0, 7, "again.wav")})
        assert again.json()["added"] == 0 and len(again.json()["skipped"]) == 1
        bad = c.post("/speakers/spk00/enroll",
                     files={"audio": ("junk.wav", os.urandom(3000), "audio/wav")})
        assert bad.status_code == 200 and bad.json()["failed"][0]["input"] == "junk.wav"
        r = c.post("/speakers/spk01/merge", json={"into": "spk02"})
        assert r.status_code == 200 and r.json()["speaker"] == {
            "label": "spk02", "recordings": 6, "segments": 6, "seconds": 9.0}
        r = c.delete("/recordings/extra.wav")
        assert r.status_code == 200 and r.json()["segments"] == 1
        labels = [s["label"] for s in c.get("/speakers").json()["speakers"]]
        assert "spk01" not in labels and "spk02" in labels
        assert c.post("/identify", files={"audio": audio(1, 8)}).json()["speaker"] == "spk02"
    assert open_server.db.check().ok


@pytest.mark.parametrize("method,path,kw", [
    ("patch", "/speakers/nobody", {"json": {"label": "x"}}),
    ("post", "/speakers/nobody/merge", {"json": {"into": "spk00"}}),
    ("post", "/speakers/spk00/merge", {"json": {"into": "nobody"}}),
    ("delete", "/speakers/nobody", {}),
    ("delete", "/recordings/0123456789abcdef", {}),
])
def test_unknown_speaker_or_recording_is_404(open_server, method, path, kw):
    with open_server.client() as c:
        r = getattr(c, method)(path, **kw) if method != "delete" else c.delete(path)
    assert "nobody" in assert_error(r, 404, "NotFound") or "0123" in r.text


def test_recording_key_is_not_a_pattern_and_ambiguous_is_409(open_server):
    from sqlalchemy import select

    from speakerdb.store.models import Recording

    with open_server.db.store.session() as s:
        shas = sorted(s.scalars(select(Recording.sha256)))
    with open_server.client() as c:
        before = c.get("/health").json()["counts"]["recordings"]
        assert before == len(shas)
        assert_error(c.delete(f"/recordings/%25{shas[0][-12:]}"), 404, "NotFound")
        assert_error(c.delete(f"/recordings/_{shas[0][1:12]}"), 404, "NotFound")
        a = next(a for a, b in zip(shas, shas[1:]) if a[0] == b[0])
        msg = assert_error(c.delete(f"/recordings/{a[0]}"), 409, "AmbiguousKey")
        assert "ambiguous" in msg
        assert c.get("/health").json()["counts"]["recordings"] == before


def test_bad_write_bodies(open_server):
    with open_server.client() as c:
        assert_error(c.patch("/speakers/spk00", json={"label": ""}), 400, "UsageError")
        assert_error(c.patch("/speakers/spk00", json={"name": "x"}), 422)
        assert_error(c.patch("/speakers/spk00", content=b"{not json",
                             headers={"content-type": "application/json"}), 422)
        assert_error(c.patch("/speakers/spk00", json={"label": "spk01"}), 400, "UsageError")
        assert_error(c.patch("/speakers/spk00", json={"label": " padded "}), 400)
        assert_error(c.post("/speakers/spk00/enroll"), 422)
        r = c.post("/speakers/spk00/enroll", files={"audio": ("a.txt", b"hi", "text/plain")})
        assert_error(r, 415)


def test_every_write_refuses_the_same_labels(open_server):
    from urllib.parse import quote

    from tests.labels import BAD_LABELS, message

    with open_server.client() as c:
        for label in BAD_LABELS:
            want = message(label)
            assert assert_error(c.patch("/speakers/spk00", json={"label": label}),
                                400, "UsageError") == want
            assert assert_error(c.post("/speakers/spk00/merge", json={"into": label}),
                                400, "UsageError") == want
            r = c.post(f"/speakers/{quote(label, safe='')}/enroll",
                       files={"audio": audio(0, 7, "extra.wav")})
            if "/" in label or label == "..":  # the path is split at "/", ".." leaves the
                # speaker's segment: no route takes either (why they are refused everywhere)
                assert r.status_code == 404
            else:
                assert assert_error(r, 400, "UsageError") == want
        labels = [s["label"] for s in c.get("/speakers").json()["speakers"]]
        assert labels == [f"spk{k:02d}" for k in range(SPEAKERS)]
        # any label the rule allows is addressable, percent-encoded (a backslash too: the
        # label of a folder whose name is not UTF-8)
        for old, new in [("spk00", "O'Brien, Ann"), ("spk01", "sp\\xffk"), ("spk02", "Zoë 李")]:
            r = c.patch(f"/speakers/{quote(old, safe='')}", json={"label": new})
            assert r.status_code == 200
            r = c.post(f"/speakers/{quote(new, safe='')}/enroll",
                       files={"audio": audio(int(old[-1]), 8, "more.wav")})
            assert r.status_code == 200 and r.json()["speaker"] == new
            assert c.delete(f"/speakers/{quote(new, safe='')}").json()["deleted"] == new
    assert open_server.db.check().ok


# the web page --------------------------------------------------------------------------------
def test_page_is_html_with_local_assets_only(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs, "the page references its script and stylesheet"
    for ref in refs:
        assert not re.match(r"^(https?:)?//", ref), f"remote asset {ref}"
        if ref.startswith("/static/"):
            asset = client.get(ref)
            assert asset.status_code == 200 and asset.content, ref
            assert not re.search(r"https?://", asset.text), f"{ref} loads something remote"
    assert "/static/app.js" in refs and "/static/style.css" in refs
    js = client.get("/static/app.js").text
    assert "/identify" in js and "/speakers" in js and "MediaRecorder" in js
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").json()["paths"]


def test_static_files_cannot_escape_their_folder(client):
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        assert client.get(path).status_code == 404


# the command ---------------------------------------------------------------------------------
def run_cli(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "SPEAKERDB_TOKEN"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "speakerdb", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "example.org", "::"])
def test_serve_refuses_a_public_host_without_a_token(tmp_path, host):
    p = run_cli("serve", "--home", tmp_path / "none", "--host", host)
    assert p.returncode == 2, p
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("speakerdb: error: ") and host in lines[0]
    assert p.stdout == ""


def test_serve_with_a_token_gets_past_the_host_check(tmp_path):
    p = run_cli("serve", "--home", tmp_path / "none", "--host", "0.0.0.0",
                env_extra={"SPEAKERDB_TOKEN": "t"})
    assert p.returncode == 2 and "no speakerdb database" in p.stderr


def test_serve_on_a_port_in_use_is_one_line(base_home):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = run_cli("serve", "--home", base_home, "--port", str(port))
    assert p.returncode == 2, p
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("speakerdb: error: --port ") and "already in use" in lines[0]
    assert p.stdout == ""


def test_loopback_hosts():
    from speakerdb.cli.server import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.org", ""]))


def test_help_does_not_import_the_server():
    code = ("import sys, speakerdb.cli.main; "
            "bad = [m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# load ----------------------------------------------------------------------------------------
def test_identify_under_load_while_ingesting(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "server_load.py"
    spec = importlib.util.spec_from_file_location("server_load", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.run_load(threads=4, requests=6, ingest_speakers=6, gallery_speakers=4,
                       workdir=tmp_path)
    assert r["requests"] == 24 and r["errors"] == 0, r["error_samples"]
    assert r["ingest_complete"] and r["check_ok"], r


def test_uploads_longer_than_the_duration_limit_are_400(fresh_home):
    from tests.server.conftest import serve

    with serve(fresh_home, max_duration_s=2.0) as s, s.client() as c:
        assert s.db.policy.max_duration_s == 2.0
        long = {"audio": ("long.wav", wav_bytes(1, 7, seconds=3.0), "audio/wav")}
        message = assert_error(c.post("/identify", files=long), 400, "TooLongError")
        assert message == ("long.wav: too long: 3.0 s of audio, the limit is 2 s "
                           "(max_duration)")
        assert_error(c.post("/embed", files=long), 400, "TooLongError")
        ok = {"audio": ("ok.wav", wav_bytes(1, 7, seconds=1.5), "audio/wav")}
        assert c.post("/identify", files=ok).status_code == 200


def test_uploads_have_a_lower_duration_limit_by_default(server):
    from speakerdb.audio import MAX_DURATION_S
    from speakerdb.config import HTTP_MAX_DURATION_S

    assert server.db.policy.max_duration_s == HTTP_MAX_DURATION_S == 1800 < MAX_DURATION_S
