"""Uploaded audio: a hard limit on request bodies, content-type checks, in-memory decoding.

The limit is enforced twice: ``BodyLimit`` (an ASGI middleware) refuses a request whose
declared length is over it before reading anything and stops reading a streamed body as soon
as it passes the limit; ``read_uploads`` counts the bytes of the uploaded files themselves.
Audio is handed to the library as in-memory ``AudioSource``s: no endpoint ever opens a path.
"""

from __future__ import annotations

import io
import json
import re

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.exceptions import HTTPException

from speakerdb.audio.inputs import AudioSource, audio_input

__all__ = ["FORM_OVERHEAD_BYTES", "BodyLimit", "TooLarge", "one_file_each", "read_uploads",
           "upload_name"]

FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries, part headers and small form fields
CHUNK = 256 * 1024


class TooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, streaming (never buffered).

    Past the limit nothing more is kept: the rest of the body is read and discarded (up to
    ``drain`` bytes, so that the client, still sending, reads the 413 instead of a reset
    connection); a larger remainder is cut off by closing the connection."""

    def __init__(self, app, limit: int, drain: int = 32 * 1024 * 1024):
        self.app, self.limit, self.drain = app, limit, drain

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._discard(receive, more=True)
            return await _send_413(send, self.limit)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    await self._discard(receive, more=message.get("more_body", False))
                    raise TooLarge(self.limit)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except TooLarge:
            if started:
                raise
            await _send_413(send, self.limit)

    async def _discard(self, receive, more: bool) -> None:
        dropped = 0
        while more and dropped <= self.drain:
            message = await receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            more = message.get("more_body", False)


def _content_length(scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send, limit: int) -> None:
    body = json.dumps({"error": {"type": "PayloadTooLarge", "message":
                                 f"request body is larger than the limit of {limit} bytes"}})
    data = body.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})


_ALLOWED = re.compile(r"^(audio/[\w.+-]+|application/octet-stream)$", re.IGNORECASE)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def upload_name(upload: UploadFile, field: str) -> str:
    """A one-line display name for an upload: its file name without any directory part."""
    raw = upload.filename or field
    name = _UNSAFE.sub("", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return (name or field)[:200]


def _check_type(upload: UploadFile, name: str) -> None:
    ctype = (upload.content_type or "").split(";", 1)[0].strip()
    if not _ALLOWED.match(ctype):
        raise HTTPException(415, f"{name}: content type {ctype or 'missing'!r} is not audio/* "
                                 "or application/octet-stream")


def read_uploads(uploads: list, field: str, limit: int) -> list[tuple[str, AudioSource]]:
    """``(name, AudioSource)`` for each upload of ``field`` (its bytes, through
    ``audio.inputs.audio_input`` like every other input); 415 for a wrong content type, 413
    when the files together pass ``limit`` bytes, 422 for a form value that is not a file."""
    out, total = [], 0
    for upload in uploads:
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, f"{field}: expected an uploaded file, got a text value")
        name = upload_name(upload, field)
        _check_type(upload, name)
        buf = io.BytesIO()
        upload.file.seek(0)
        while chunk := upload.file.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise TooLarge(limit)
            buf.write(chunk)
        # named as the library's messages and results call this input
        out.append((name, audio_input(buf.getvalue(), name)))
    return out


def one_file_each(*fields: str):
    """A route dependency: 422 when a form field that takes one file came several times
    (FastAPI would silently use one of them and answer for it alone)."""

    async def check(request: Request) -> None:
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            return  # no form: the route's own validation answers
        form = await request.form()  # parsed once per request, shared with the route
        for field in fields:
            n = len(form.getlist(field))
            if n > 1:
                raise HTTPException(422, f"{field}: {n} files sent, this endpoint takes one; "
                                         "send one request per file")

    return check
