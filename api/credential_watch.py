"""Open WebSockets end soon after their credential does.

A WebSocket is authenticated once, at its start; a token revoked (``igrt token revoke``),
expired, or a review-page sign-in ended (sign-out, idle, expiry) must not keep a stream or a live
monitor open. :func:`close_when_revoked` re-checks the credential every
``IGRT_CREDENTIAL_RECHECK_S`` (one indexed read in a worker thread, the connection returned at
once) and, when it no longer holds, sends an ``unauthenticated`` error, closes the socket with
1008 and cancels the conversation.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio
from fastapi import WebSocket
from starlette.concurrency import run_in_threadpool

from api.security import Principal, token_is_active
from api.service import Service
from api.web_sessions import authenticate_web_session

__all__ = ["POLICY_VIOLATION", "close_when_revoked", "credential_check"]

POLICY_VIOLATION = 1008
_REVOKED = "the token was revoked or expired, or the sign-in ended"


def credential_check(
    service: Service, principal: Principal, cookie_secret: str | None = None
) -> Callable[[], bool]:
    """A blocking check whether the bearer token (or the sign-in of ``cookie_secret``) holds."""

    def check() -> bool:
        with service.sessions() as db:
            if cookie_secret is not None:
                signed_in = authenticate_web_session(
                    db,
                    service.pepper,
                    cookie_secret,
                    idle_minutes=service.settings.web_session_idle_minutes,
                    touch=False,  # watching is not using the page
                )
                return signed_in is not None
            return token_is_active(db, principal.token_id)

    return check


async def close_when_revoked(
    websocket: WebSocket,
    check: Callable[[], bool],
    interval_s: float,
    conversation: anyio.CancelScope,
) -> None:
    """Every ``interval_s``: if ``check()`` fails, close with 1008 and cancel ``conversation``."""
    while True:
        await anyio.sleep(interval_s)
        if await run_in_threadpool(check):
            continue
        try:
            error = {"type": "error", "code": "unauthenticated", "detail": _REVOKED}
            await websocket.send_text(json.dumps({**error, "field": None}))
            await websocket.close(code=POLICY_VIOLATION, reason=_REVOKED[:120])
        except RuntimeError:  # already closing
            pass
        conversation.cancel()
        return
