"""Bearer-token access to the API.

Without a token every endpoint is open (the command line allows that only on a loopback
address). With a token, every API endpoint but ``/health`` needs ``Authorization: Bearer
<token>``: a voice database is biometric data, so listing speakers and searching are guarded
like the writes. An optional read token lets a search-only client identify, verify, embed and
list speakers (and read ``/stats``) but not write; a write with it answers 403. The web page,
its static files and the API documentation hold no data and stay open, so that the page can
ask for the token.

Two layers: ``TokenGate`` (an ASGI middleware) answers 401 to a request without a valid token
before its body is read or parsed (an anonymous client cannot make the server decode
uploads); the route dependencies declare the scheme in the OpenAPI schema, check again, and
answer 403 to the read token on a write. A refused request is logged (method, path, client
address, why) without the token's value.
"""

from __future__ import annotations

import hmac
import json
import logging

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

__all__ = ["OPEN_PATHS", "TokenGate", "bearer", "check_tokens", "require_read_access",
           "require_write_access"]

log = logging.getLogger("speakerdb.server.auth")

# What needs no token: the liveness probe, and the page with its assets and the API docs,
# which hold no data (the page has to load to ask for the token).
OPEN_PATHS = frozenset({"/health", "/", "/docs", "/docs/oauth2-redirect", "/redoc",
                        "/openapi.json"})
OPEN_PREFIXES = ("/static/",)
UNAUTHORIZED = "a valid bearer token is required for this endpoint"

bearer = HTTPBearer(auto_error=False, description=(
    "Needed by every endpoint but /health when the server runs with a token (--token or "
    "SPEAKERDB_TOKEN); the read token (--read-token) opens the search and listing endpoints "
    "only."))


def check_tokens(token: str | None, read_token: str | None) -> None:
    """Refuse a token setup that cannot be what was meant (``UsageError``)."""
    from speakerdb.errors import UsageError

    if read_token and not token:
        raise UsageError("a read token needs a token for the writes as well (otherwise writes "
                         "would be open while reads are not)")
    if read_token and hmac.compare_digest(read_token.encode("utf-8"), token.encode("utf-8")):
        raise UsageError("the read token must differ from the token")


def _given(cred: HTTPAuthorizationCredentials | None) -> str:
    return cred.credentials if cred is not None and cred.scheme.lower() == "bearer" else ""


def _same(given: str, expected: str | None) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                  expected.encode("utf-8"))


def _level(state, given: str) -> str | None:
    """``"write"``, ``"read"`` or ``None`` (no valid token) for the token ``given``."""
    if _same(given, state.token):
        return "write"
    if _same(given, state.read_token):
        return "read"
    return None


def _log_refusal(method: str, path: str, client, why: str) -> None:
    # repr without its quotes: a path with control characters cannot forge log lines
    log.warning("refused %s %s from %s: %s", method, repr(path)[1:-1][:300], client or "?", why)


def _refuse(request: Request, status: int, why: str, message: str) -> HTTPException:
    _log_refusal(request.method, request.url.path,
                 request.client.host if request.client else None, why)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return HTTPException(status, message, headers=headers)


def _access(request: Request, cred: HTTPAuthorizationCredentials | None) -> str | None:
    return _level(request.app.state, _given(cred))


def require_read_access(
    request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> None:
    """Any configured token (read or write) opens a read endpoint."""
    if request.app.state.token is None:
        return
    if _access(request, cred) is None:
        why = "no bearer token" if not _given(cred) else "wrong token"
        raise _refuse(request, 401, why, UNAUTHORIZED)


def require_write_access(
    request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> None:
    """Only the (write) token opens a write endpoint; the read token answers 403."""
    if request.app.state.token is None:
        return
    access = _access(request, cred)
    if access == "read":
        raise _refuse(request, 403, "read token on a write endpoint",
                      "the read token cannot change the database; this endpoint needs the "
                      "write token")
    if access is None:
        why = "no bearer token" if not _given(cred) else "wrong token"
        raise _refuse(request, 401, why, UNAUTHORIZED)


class TokenGate:
    """Answer 401 to a request for anything but ``OPEN_PATHS`` that carries neither token,
    before the application reads its body (the rest of a body still being sent is read and
    dropped, up to ``drain`` bytes, so that the client sees the answer)."""

    def __init__(self, app, drain: int = 1024 * 1024):
        self.app, self.drain = app, drain

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope["app"].state
        path = scope.get("path", "")
        if state.token is None or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        given = _bearer_header(scope)
        if _level(state, given or "") is not None:
            return await self.app(scope, receive, send)
        client = scope.get("client")
        _log_refusal(scope.get("method", "?"), path, client[0] if client else None,
                     "no bearer token" if not given else "wrong token")
        drained = await self._discard(receive)
        body = json.dumps({"error": {"type": "Unauthorized", "message": UNAUTHORIZED}}).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"www-authenticate", b"Bearer")]
        await send({"type": "http.response.start", "status": 401,
                    "headers": headers + ([] if drained else [(b"connection", b"close")])})
        await send({"type": "http.response.body", "body": body})

    async def _discard(self, receive) -> bool:
        """Read and drop the body; whether all of it was read."""
        dropped, more = 0, True
        while more and dropped <= self.drain:
            message = await receive()
            if message["type"] != "http.request":
                return False
            dropped += len(message.get("body", b""))
            more = message.get("more_body", False)
        return not more


def _bearer_header(scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            scheme, _, cred = value.decode("utf-8", "surrogateescape").strip().partition(" ")
            return cred.strip() if scheme.lower() == "bearer" and cred.strip() else None
    return None
