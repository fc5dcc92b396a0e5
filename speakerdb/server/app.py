"""``create_app``: the FastAPI application over one open ``SpeakerDB``.

Errors: a ``SpeakerDBError`` answers with its ``http_status``, request validation with 422,
HTTP errors (401, 404, 405, 413, 415) with their status, each with the body
``{"error": {"type": ClassName, "message": one line}}``; anything else is a bug and answers
500 with the same shape (logged with its traceback).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from speakerdb.config import HTTP_MAX_DURATION_S
from speakerdb.errors import SpeakerDBError
from speakerdb.server.auth import TokenGate, check_tokens
from speakerdb.server.routes import public, router
from speakerdb.server.uploads import FORM_OVERHEAD_BYTES, BodyLimit

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_WRITE_WAIT_S", "STATIC", "create_app"]

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_WRITE_WAIT_S = 30.0
UPLOAD_TYPES = "audio/*, application/octet-stream"
STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("speakerdb.server")

_HTTP_TYPES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
               405: "MethodNotAllowed", 406: "NotAcceptable", 413: "PayloadTooLarge",
               415: "UnsupportedMediaType", 422: "ValidationError"}


def create_app(db, *, token: str | None = None, read_token: str | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_duration_s: float = HTTP_MAX_DURATION_S,
               write_wait_s: float | None = DEFAULT_WRITE_WAIT_S) -> FastAPI:
    """The HTTP app serving ``db`` (opened and later closed by the caller). With ``token``
    every endpoint but ``/health`` needs ``Authorization: Bearer <token>``; ``read_token``
    (which needs ``token``) opens the search and listing endpoints only. A request may upload
    at most ``max_upload_bytes`` of audio (all its files together), and each uploaded input at
    most ``max_duration_s`` seconds of audio (set on ``db``: longer ones fail with the
    reason). A write waits at most ``write_wait_s`` for another process writing to the same
    home (then 409 ``Busy``); this sets ``db.lock_wait_s``. Every search first catches up with
    other processes' writes."""
    if max_upload_bytes < 1:
        raise ValueError("max_upload_bytes must be positive")
    check_tokens(token or None, read_token or None)
    if db is not None:
        db.set_max_duration(max_duration_s)
    app = FastAPI(
        title="speakerdb",
        summary="Speaker identification over a speakerdb database",
        description="Identify, verify and embed voices; list, enroll, rename, merge and "
                    "delete speakers. Errors: `{\"error\": {\"type\", \"message\"}}`.",
        version=_version(),
    )
    app.state.db = db
    if db is not None:  # None: an app built for its schema only
        db.lock_wait_s = write_wait_s
    app.state.token = token or None
    app.state.read_token = read_token or None
    app.state.max_upload_bytes = max_upload_bytes
    app.state.write_lock = threading.Lock()
    app.include_router(public)
    app.include_router(router)
    app.add_middleware(BodyLimit, limit=max_upload_bytes + FORM_OVERHEAD_BYTES)
    app.add_middleware(TokenGate)  # added last: runs first, before any body is read
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    _document_upload_types(app)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


def _document_upload_types(app: FastAPI) -> None:
    """Declare in the OpenAPI schema which content types the uploaded files may have."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        schemas = spec.get("components", {}).get("schemas", {})
        for item in spec.get("paths", {}).values():
            for op in item.values():
                form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
                if not form:
                    continue
                ref = form.get("schema", {}).get("$ref", "")
                props = schemas.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
                files = [k for k, v in props.items() if _is_file(v)]
                form["encoding"] = {k: {"contentType": UPLOAD_TYPES} for k in files}
        return spec

    app.openapi = openapi


def _is_file(prop: dict) -> bool:
    if prop.get("format") == "binary" or prop.get("contentMediaType"):
        return True
    items = prop.get("items", {})
    return items.get("format") == "binary" or bool(items.get("contentMediaType"))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("speakerdb")
    except Exception:  # noqa: BLE001 - running from a checkout that was never installed
        return "0"


def _error(status: int, type_: str, message: str, headers=None) -> JSONResponse:
    line = " ".join(str(message).split()) or type_
    return JSONResponse({"error": {"type": type_, "message": line}}, status_code=status,
                        headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()))
        parts.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SpeakerDBError)
    async def library_error(request: Request, exc: SpeakerDBError):
        if exc.http_status >= 500:
            log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path,
                      exc)
        return _error(exc.http_status, type(exc).__name__, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _error(422, "ValidationError", _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        type_ = _HTTP_TYPES.get(exc.status_code, "HTTPError")
        return _error(exc.status_code, type_, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path,
                      exc_info=exc)
        return _error(500, "InternalError", f"internal error: {type(exc).__name__}")
