"""Reaching a database's Qdrant collection: where it is (``home.json``'s ``qdrant``), the
client (the optional ``qdrant`` extra), the collection's layout, and every client failure as
one typed error.

A location is ``http(s)://host:6333`` (a server or cluster; ``QDRANT_API_KEY`` is sent when
set), a folder (qdrant-client's local mode, persisted; one process at a time) or ``:memory:``
(local mode in this process only: rebuilt from the store at every open).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from speakerdb.errors import Busy, VectorEngineMissing, VectorEngineUnavailable

__all__ = ["QDRANT_ENV", "TIMEOUT_ENV", "connect", "default_collection", "guarded",
           "is_server", "normalise_location", "vector_name"]

QDRANT_ENV = "SPEAKERDB_QDRANT"  # the location `init --vectors qdrant` uses when none is given
TIMEOUT_ENV = "SPEAKERDB_QDRANT_TIMEOUT"  # seconds one request to a server may take
DEFAULT_TIMEOUT_S = 10
MEMORY = ":memory:"


def is_server(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def normalise_location(location: str | None) -> str:
    """``location`` as home.json records it: a URL or ``:memory:`` as given, a folder made
    absolute (relative to the working directory)."""
    location = (location or os.environ.get(QDRANT_ENV) or "").strip()
    if not location:
        from speakerdb.errors import UsageError

        raise UsageError(f"the Qdrant tier needs a location: a server URL (http://host:6333), a "
                         f"folder or :memory: (qdrant, or ${QDRANT_ENV})", option="qdrant")
    if is_server(location) or location == MEMORY:
        return location.rstrip("/")
    return str(Path(location).expanduser().resolve())


def default_collection(home: Path) -> str:
    """A collection name of its own for the database in ``home``."""
    digest = hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:12]
    return f"speakerdb-{digest}"


def vector_name(dim: int) -> str:
    return f"d{int(dim)}"


def _timeout_s() -> int:
    try:
        return max(1, int(float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def connect(location: str):
    """A qdrant-client for ``location``; the extra missing is a VectorEngineMissing, a folder
    another process holds is Busy."""
    try:
        from qdrant_client import QdrantClient
    except ImportError:
        raise VectorEngineMissing(
            f"{location}: the Qdrant vector tier needs qdrant-client: "
            "pip install 'speakerdb[qdrant]'") from None
    if is_server(location):
        with guarded(location):
            return QdrantClient(url=location, timeout=_timeout_s(), check_compatibility=False,
                                api_key=os.environ.get("QDRANT_API_KEY") or None)
    if location == MEMORY:
        return QdrantClient(location=MEMORY)
    try:
        return QdrantClient(path=location)
    except RuntimeError as e:
        if "already accessed" in str(e):
            raise Busy(f"{location}: the Qdrant folder is open in another process (local mode "
                       "allows one at a time; run a Qdrant server to share it)") from None
        raise VectorEngineUnavailable(f"{location}: {e}") from None
    except OSError as e:
        raise VectorEngineUnavailable(f"{location}: cannot open the Qdrant folder ({e})") from None


def _failures() -> tuple[type[BaseException], ...]:
    """The exception types a qdrant-client call fails with on a lost, slow or refusing
    server."""
    out: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        out += [ResponseHandlingException, UnexpectedResponse]
    except ImportError:  # pragma: no cover - the extra is missing: connect said so
        pass
    try:
        import httpx

        out.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import grpc

        out.append(grpc.RpcError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(out)


@contextmanager
def guarded(location: str, doing: str = "") -> Iterator[None]:
    """Turn a client failure inside the block into one VectorEngineUnavailable line."""
    try:
        yield
    except _failures() as e:
        what = " ".join(str(e).split()) or type(e).__name__
        if len(what) > 300:
            what = what[:300] + "…"
        during = f" while {doing}" if doing else ""
        raise VectorEngineUnavailable(f"Qdrant at {location}{during}: {what} (nothing was "
                                      "answered from it; is the server up?)") from None
