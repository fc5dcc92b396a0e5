"""Who may use a server that has a token: every route of the app with no, a wrong, the read and
the right token; the read token on writes; what a refusal logs; the page's token form."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.routing import APIRoute

from tests.server.conftest import SPEAKERS, TOKEN, serve, wav_bytes
from tests.server.test_http import assert_error, run_cli

READ_TOKEN = "read-only-5c2e"
# Routes that hold no data and stay open: the liveness probe, the page and the API docs.
OPEN = {("GET", "/health"), ("GET", "/"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"), ("GET", "/openapi.json")}
WRITES = {("POST", "/speakers/{label}/enroll"), ("PATCH", "/speakers/{label}"),
          ("POST", "/speakers/{label}/merge"), ("DELETE", "/speakers/{label}"),
          ("DELETE", "/recordings/{key}")}


def audio(k: int, j: int, name: str = "clip.wav"):
    return (name, wav_bytes(k, j), "audio/wav")


# A request that the route answers with 2xx when access is granted (writes on a scratch
# speaker, so that the module's shared database keeps its five speakers).
REQUESTS = {
    ("GET", "/stats"): ("/stats", {}),
    ("GET", "/speakers"): ("/speakers", {}),
    ("POST", "/identify"): ("/identify", {"files": {"audio": audio(1, 9)}}),
    ("POST", "/diarize"): ("/diarize", {"files": {"audio": audio(1, 9)}}),
    ("POST", "/verify"): ("/verify", {"files": {"a": audio(1, 8), "b": audio(1, 9)}}),
    ("POST", "/embed"): ("/embed", {"files": {"audio": audio(1, 9)}}),
    ("POST", "/speakers/{label}/enroll"): ("/speakers/scratch/enroll",
                                           {"files": {"audio": audio(9, 0, "s0.wav")}}),
    ("PATCH", "/speakers/{label}"): ("/speakers/scratch", {"json": {"label": "scratch2"}}),
    ("POST", "/speakers/{label}/merge"): ("/speakers/scratch2/merge", {"json": {"into": "x"}}),
    ("DELETE", "/speakers/{label}"): ("/speakers/x", {}),
    ("DELETE", "/recordings/{key}"): ("/recordings/nothing-like-this", {}),
}
# the right token: 2xx, or 404 where the request names what another step removed
GRANTED = {("POST", "/speakers/{label}/merge"): 404, ("DELETE", "/speakers/{label}"): 404,
           ("DELETE", "/recordings/{key}"): 404}


def api_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every API route, also inside included routers (which FastAPI keeps
    as wrappers in newer versions)."""
    out, todo = set(), list(app.routes)
    while todo:
        r = todo.pop()
        inner = getattr(r, "original_router", None) or getattr(r, "router", None)
        if isinstance(r, APIRoute):
            out |= {(m, r.path.replace(":path}", "}")) for m in r.methods}
        elif inner is not None and hasattr(inner, "routes"):
            todo.extend(inner.routes)
    return out


@pytest.fixture(scope="module")
def guarded(base_home, tmp_path_factory):
    import shutil

    home = tmp_path_factory.mktemp("guarded") / "home"
    shutil.copytree(base_home, home)
    with serve(home, token=TOKEN, read_token=READ_TOKEN) as s:
        yield s


def send(served, key, token):
    path, kw = REQUESTS[key]
    with served.client(token) as c:
        return c.request(key[0], path, **kw)


def test_every_route_is_known_here(guarded):
    """A new route must be added to this file (guarded or OPEN on purpose)."""
    routes = api_routes(guarded.app)
    assert routes - OPEN == set(REQUESTS), routes
    with guarded.client(TOKEN) as c:
        documented = {(m.upper(), p) for p, ops in c.get("/openapi.json").json()["paths"].items()
                      for m in ops}
    assert documented - OPEN == set(REQUESTS)
    assert WRITES <= set(REQUESTS)


@pytest.mark.parametrize("key", sorted(REQUESTS))
@pytest.mark.parametrize("token", [None, "", "wrong-token", TOKEN + "x", TOKEN[:-1],
                                   READ_TOKEN + "x", f"Basic {TOKEN}"])
def test_every_route_refuses_a_missing_or_wrong_token(guarded, key, token):
    r = send(guarded, key, token)
    assert_error(r, 401, "Unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


def test_refused_before_the_body_is_parsed(guarded):
    junk = b"--b\r\nnot a form" + b"\0" * 300_000
    with guarded.client("wrong") as c:
        r = c.post("/identify", content=junk,
                   headers={"content-type": "multipart/form-data; boundary=b"})
        assert_error(r, 401, "Unauthorized")  # not 400/422: the form was never parsed
        assert_error(c.get("/no-such-route"), 401)  # routes are not revealed either
        assert c.get("/health").status_code == 200  # the connection is still usable
    with guarded.client(TOKEN) as c:
        assert_error(c.get("/no-such-route"), 404, "NotFound")


def test_a_token_in_another_scheme_or_place_is_refused(guarded):
    with guarded.client() as c:
        for headers in ({"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN},
                        {"X-Token": TOKEN}, {"Cookie": f"token={TOKEN}"}):
            assert c.get("/speakers", headers=headers).status_code == 401, headers
        assert c.get("/speakers", params={"token": TOKEN}).status_code == 401


@pytest.mark.parametrize("key", sorted(REQUESTS))
def test_the_read_token_opens_reads_only(guarded, key):
    r = send(guarded, key, READ_TOKEN)
    if key in WRITES:
        assert "read token" in assert_error(r, 403, "Forbidden")
    else:
        assert r.status_code == 200, r.text


def test_the_token_opens_every_route(guarded):
    for key in sorted(REQUESTS, key=lambda k: list(REQUESTS).index(k)):
        r = send(guarded, key, TOKEN)
        want = GRANTED.get(key, 200)
        assert r.status_code == want, (key, r.text)
    with guarded.client(TOKEN) as c:
        assert len(c.get("/speakers").json()["speakers"]) == SPEAKERS + 1  # scratch2


def test_open_routes_need_no_token(guarded):
    with guarded.client() as c:
        for method, path in sorted(OPEN):
            if path == "/docs/oauth2-redirect":
                continue
            assert c.request(method, path).status_code == 200, path
        h = c.get("/health").json()
        assert h["ok"] is True and h["counts"]["speakers"] >= SPEAKERS
        assert c.get("/static/app.js").status_code == 200


def test_without_a_token_every_route_is_open(open_server):
    with open_server.client("anything") as c:
        assert c.get("/speakers").status_code == 200
        assert c.post("/identify", files={"audio": audio(1, 9)}).status_code == 200


def test_refusals_are_logged_without_the_token(guarded, caplog):
    caplog.set_level(logging.WARNING, logger="speakerdb.server.auth")
    secret = "guess-" + TOKEN[::-1]
    send(guarded, ("GET", "/speakers"), secret)
    send(guarded, ("GET", "/stats"), None)
    send(guarded, ("DELETE", "/speakers/{label}"), READ_TOKEN)
    lines = [r.getMessage() for r in caplog.records if r.name == "speakerdb.server.auth"]
    assert len(lines) == 3, lines
    assert "GET /speakers" in lines[0] and "wrong token" in lines[0]
    assert "GET /stats" in lines[1] and "no bearer token" in lines[1]
    assert "DELETE /speakers/x" in lines[2] and "read token" in lines[2]
    text = "\n".join(lines)
    for value in (secret, TOKEN, READ_TOKEN):
        assert value not in text
    caplog.clear()
    with guarded.client() as c:
        c.get("/speakers%0Arefused%20GET%20/forged")
    [line] = [r.getMessage() for r in caplog.records if r.name == "speakerdb.server.auth"]
    assert "\n" not in line and "\\n" in line


def test_openapi_declares_the_bearer_scheme(guarded):
    with guarded.client() as c:
        spec = c.get("/openapi.json").json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    paths = spec["paths"]
    assert "security" not in paths["/health"]["get"]
    for method, path in REQUESTS:
        assert paths[path][method.lower()].get("security"), (method, path)


@pytest.mark.parametrize("kw", [{"read_token": "r"}, {"token": "same", "read_token": "same"}])
def test_create_app_refuses_a_read_token_alone_or_equal(db, kw):
    from speakerdb.errors import UsageError
    from speakerdb.server import create_app

    with pytest.raises(UsageError):
        create_app(db, **kw)


def test_serve_refuses_a_read_token_without_a_token(tmp_path):
    p = run_cli("serve", "--home", tmp_path / "none", "--read-token", "r")
    assert p.returncode == 2, p
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "read token" in lines[0] and "Traceback" not in p.stderr
    assert "'r'" not in p.stderr


def test_page_asks_for_the_token_and_keeps_it_in_the_page(guarded):
    with guarded.client() as c:
        html = c.get("/").text
        js = c.get("/static/app.js").text
    assert re.search(r'<input[^>]*id="token"[^>]*type="password"', html)
    assert "Authorization" in js and "Bearer" in js
    for store in ("localStorage", "sessionStorage", "document.cookie", "indexedDB"):
        assert store not in js, store
    # every request of the page goes through the one helper that adds the token
    assert js.count("fetch(") == 1
