"""Bearer-token access to the write endpoints (enroll, rename, merge, deletes).

Without a configured token every endpoint is open (the command line allows that only on a
loopback address); with one, a write needs ``Authorization: Bearer <token>``. Reads stay open.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

__all__ = ["bearer", "require_write_access"]

bearer = HTTPBearer(auto_error=False, description=(
    "Needed by the write endpoints when the server runs with a token (--token or "
    "SPEAKERDB_TOKEN); reads never need it."))


def require_write_access(
    request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> None:
    token: str | None = request.app.state.token
    if token is None:
        return
    given = cred.credentials if cred is not None and cred.scheme.lower() == "bearer" else ""
    if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        raise HTTPException(401, "a valid bearer token is required for this endpoint",
                            headers={"WWW-Authenticate": "Bearer"})
