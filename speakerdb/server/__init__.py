"""The HTTP server: a FastAPI app built from an open ``SpeakerDB`` (``create_app``).

Importing this package imports FastAPI; the command line imports it only inside ``serve``.
"""

from __future__ import annotations

from speakerdb.server.app import DEFAULT_MAX_UPLOAD_BYTES, create_app

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "create_app"]
