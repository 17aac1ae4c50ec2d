"""Watching a session's real-time stream: the review page's live monitor.

``ws(s)://HOST/api/v1/sessions/{session_id}/monitor`` (any role). Authenticated by
``Authorization: Bearer <token>`` or by the review page's sign-in cookie; with the cookie the
``Origin`` must be this service's own (a page elsewhere cannot watch through a signed-in
browser). The server answers ``{"type": "ready", ...}`` with the session's alert rule, then
forwards what the session's streams produce, as the console sees it: ``started``, each frame's
``result`` (dome position, displacement, alert state), and ``summary``. Messages from the
watcher are ignored. Closed with 1008 for a missing or bad credential or an unknown session, and
within ``IGRT_CREDENTIAL_RECHECK_S`` of the token's revocation or expiry or the sign-in's end
(sign-out, expiry, or idle: opening the monitor is activity, watching it is not); with 1013
when this token already watches ``IGRT_MONITOR_MAX_PER_TOKEN`` monitors or the service
``IGRT_MONITOR_MAX_OPEN``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from api.core.config import API_PREFIX
from api.credential_watch import close_when_revoked, credential_check
from api.db.models import TreatmentSession
from api.security import Principal, authenticate_token
from api.service import Service
from api.stream_slots import TooManyStreamsError
from api.web_sessions import SESSION_COOKIE, authenticate_web_session

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX)

_POLICY_VIOLATION = 1008
_TRY_AGAIN_LATER = 1013


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host")
    return origin is not None and host is not None and urlsplit(origin).netloc == host


def _authenticate(
    service: Service, websocket: WebSocket, session_id: str
) -> tuple[Principal | None, bool, str]:
    """The caller, whether the session exists, and why not when refused."""
    with service.sessions() as db:
        header = websocket.headers.get("authorization", "")
        principal: Principal | None = None
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer":
                principal = authenticate_token(db, service.pepper, token.strip())
        else:
            secret = websocket.cookies.get(SESSION_COOKIE)
            if secret is not None and _same_origin(websocket):
                signed_in = authenticate_web_session(
                    db,
                    service.pepper,
                    secret,
                    idle_minutes=service.settings.web_session_idle_minutes,
                )
                db.commit()  # keeps last_seen_at: watching a monitor is activity
                principal = None if signed_in is None else signed_in.principal
        if principal is None:
            return None, False, "sign in, or send a valid bearer token"
        exists = (
            db.get(TreatmentSession, session_id) is not None if len(session_id) <= 64 else False
        )
        return principal, exists, "" if exists else f"no session with id {session_id[:64]!r}"


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    await websocket.send_text(json.dumps(message, allow_nan=False))


@router.websocket("/sessions/{session_id}/monitor", name="monitor_session")
async def monitor_session(websocket: WebSocket, session_id: str) -> None:
    """Forward a session's live stream results to a watcher (see the module docstring)."""
    service: Service = websocket.app.state.service
    await websocket.accept()
    principal, exists, why = await run_in_threadpool(_authenticate, service, websocket, session_id)
    if principal is None or not exists:
        code = "unauthenticated" if principal is None else "not_found"
        await _send(websocket, {"type": "error", "code": code, "detail": why, "field": None})
        await websocket.close(code=_POLICY_VIOLATION, reason=why[:120])
        return
    assert principal is not None
    try:
        slot = service.monitor_slots.acquire(principal.token_id)
    except TooManyStreamsError as exc:
        await _send(
            websocket,
            {"type": "error", "code": "too_many_monitors", "detail": str(exc), "field": None},
        )
        await websocket.close(code=_TRY_AGAIN_LATER, reason=str(exc)[:120])
        return
    bearer = bool(websocket.headers.get("authorization"))
    check = credential_check(
        service, principal, None if bearer else websocket.cookies.get(SESSION_COOKIE)
    )
    try:
        await _forward(service, websocket, session_id, check)
    finally:
        service.monitor_slots.release(slot)


async def _forward(
    service: Service, websocket: WebSocket, session_id: str, check: Callable[[], bool]
) -> None:
    protocol = service.protocol.protocol  # the active one: streams judge by it
    with service.live.watch(session_id) as queue:
        await _send(
            websocket,
            {
                "type": "ready",
                "session_id": session_id,
                "protocol_version": protocol.version,
                "alert_threshold_mm": protocol.intrafraction_alert_mm,
                "alert_persistence_s": protocol.intrafraction_alert_duration_s,
            },
        )
        try:
            async with anyio.create_task_group() as tasks:

                async def until_disconnect() -> None:
                    while (await websocket.receive())["type"] != "websocket.disconnect":
                        pass
                    tasks.cancel_scope.cancel()

                tasks.start_soon(until_disconnect)
                tasks.start_soon(
                    close_when_revoked,
                    websocket,
                    check,
                    service.settings.credential_recheck_s,
                    tasks.cancel_scope,
                )
                while True:
                    await _send(websocket, await queue.get())
        except (WebSocketDisconnect, RuntimeError):
            pass
