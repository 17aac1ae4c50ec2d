"""What the request middleware checks before a route reads a byte of the body.

- :func:`body_limit_for`: each route's largest body. File uploads get the upload limit (plus the
  multipart fields and headers), a real-time frame one frame, and every other route (JSON) a
  few kilobytes: a JSON body costs about 20 times its size once parsed, so a 512 MiB allowance
  on every route let anyone make the server parse gigabytes.
- :func:`pre_authenticate`: a request that carries a body to ``/api/v1`` must present a valid
  bearer token or review-page sign-in first; FastAPI would otherwise read and parse the body
  before the route's token check runs. The sign-in itself (``POST /api/v1/web-session``, a
  token in a small JSON body) is the one exception.

Multipart uploads are parsed by Starlette, which spools each file part to a temporary file once
it exceeds 1 MiB (never more than that in memory per part) and is bounded in total by
:func:`body_limit_for`.
"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from api.core.config import API_PREFIX, Settings
from api.security import Principal
from api.service import Service
from api.web_sessions import SESSION_COOKIE, authenticate_web_session

__all__ = [
    "BODY_METHODS",
    "MULTIPART_OVERHEAD_BYTES",
    "PRE_AUTHENTICATED",
    "SIGN_IN_PATH",
    "body_limit_for",
    "needs_pre_authentication",
    "pre_authenticate",
]

MULTIPART_OVERHEAD_BYTES = 256 * 1024
"""Room for the form fields and part headers that come with an upload of the maximum size."""

PRE_AUTHENTICATED = "pre_authenticated"
"""Key of the request state holding the principal authenticated before the body was read."""

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SIGN_IN_PATH = f"{API_PREFIX}/web-session"

_UPLOAD = re.compile(rf"^{API_PREFIX}/sessions/[^/]+/uploads/(fluoroscopy|volume)/?$")
_FRAME = re.compile(rf"^{API_PREFIX}/sessions/[^/]+/streams/[^/]+/frames/?$")


def body_limit_for(path: str, settings: Settings) -> int:
    """The largest body the route at ``path`` accepts, bytes."""
    if _UPLOAD.match(path):
        return settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    if _FRAME.match(path):
        return settings.stream_max_frame_bytes
    return settings.max_json_bytes


def needs_pre_authentication(method: str, path: str) -> bool:
    """Whether the request must be authenticated before its body is read."""
    return method in BODY_METHODS and path.startswith(API_PREFIX + "/") and path != SIGN_IN_PATH


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def pre_authenticate(service: Service, scope: Scope) -> Principal | None:
    """The caller by bearer token or sign-in cookie; None if neither is valid.

    A bearer token is looked up from the event loop (:class:`api.token_reader.TokenReader`), a
    cookie in a worker thread. The route checks again: roles, CSRF, the sign-in's activity.
    """
    authorization = _header(scope, b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return await service.tokens.authenticate(service.pepper, token.strip())
    cookies = SimpleCookie()
    try:
        cookies.load(_header(scope, b"cookie") or "")
    except Exception:  # a malformed Cookie header is no credential
        return None
    morsel = cookies.get(SESSION_COOKIE)
    if morsel is None:
        return None
    return await run_in_threadpool(_signed_in, service, morsel.value)


def _signed_in(service: Service, secret: str) -> Principal | None:
    with service.sessions() as db:
        signed_in = authenticate_web_session(
            db,
            service.pepper,
            secret,
            idle_minutes=service.settings.web_session_idle_minutes,
            touch=False,
        )
        return None if signed_in is None else signed_in.principal
