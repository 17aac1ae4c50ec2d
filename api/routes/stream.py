"""The real-time path: a WebSocket that tracks the dome on fluoroscopy frames one at a time.

``ws(s)://HOST/api/v1/sessions/{session_id}/stream`` (any role: console, therapist, physicist).

Conversation
------------
1. **Authenticate**: send ``Authorization: Bearer <token>`` with the handshake, or make the first
   message ``{"type": "auth", "token": "<token>"}`` within 10 s (for clients that cannot set
   headers). Tokens never go in the URL: query strings end up in access logs. The server answers
   ``{"type": "ready", ...}`` with the protocol's alert threshold and persistence and the limits.
2. **Start**: ``{"type": "start", "geometry": {"preset": "xvi", "binning": 4}, "intensity":
   "raw", "reference": {"mode": "plan"}, "mode": "free_breathing", "window_s": 8}`` (see
   :class:`api.schemas.stream.StreamStart`: the reference comes from the session's registration
   (``plan``), a given level (``fixed``) or, unverified, the first seconds (``initial``, the
   default); ``mode`` ``breath_hold`` watches the hold level against the protocol's gating
   window); answer ``{"type": "started", "stream_id": ...}`` with the reference, its source and
   the rule applied (protocol fields with their provenance). A ``plan`` reference the session
   cannot give (no completed registration with a planning dome apex) is answered with an error
   ``no_reference`` and the server waits for another start.
3. **Frames**, each as two messages: a text header ``{"type": "frame", "time_s": 0.2, "rows":
   256, "columns": 256}`` (optionally ``gantry_deg`` and ``detector_offset_mm`` of this frame),
   then one binary message of exactly ``rows * columns * 2`` bytes, little-endian uint16, row
   after row. Each frame is answered with ``{"type": "result", ...}``
   (:meth:`api.streaming.StreamMonitor.process`): dome position, running excursion, end-exhale
   level, reference, displacement, alert state, server processing time.
4. **Stop**: ``{"type": "stop"}``; answer ``{"type": "summary", ...}`` and close 1000.

The same tracking is served over plain HTTP, one request per frame
(``POST /api/v1/sessions/{session_id}/streams`` and so on; see :mod:`api.routes.stream_http`).

Clients should not negotiate ``permessage-deflate`` (e.g. ``compression=None`` in the
``websockets`` client): deflating noisy 16-bit pixels costs about 8 ms a frame and saves little.

Errors
------
Each open stream holds one of the service's stream slots (``IGRT_STREAM_MAX_OPEN`` in all, shared
with the HTTP streams, and ``IGRT_STREAM_MAX_PER_TOKEN`` per token): without one the socket is
closed with **1013** (try again later, code ``too_many_streams``). After authentication the
server waits at most ``IGRT_STREAM_IDLE_TIMEOUT_S`` for each message (closed **1001**, code
``idle_timeout``), and re-checks the token every ``IGRT_CREDENTIAL_RECHECK_S``: a revoked or
expired token closes the stream with **1008** (code ``unauthenticated``).

A bad frame or message gets ``{"type": "error", "code", "detail", "field"}`` and the stream goes
on (codes: ``invalid_message``, ``invalid_frame``, ``frame_without_header``,
``missing_pixels``, ``frame_too_large``, ``not_started``, ``no_reference``). The connection is
closed with **1008** (policy violation) for a missing, unknown or revoked token, an unknown
session or a session whose protocol version this service does not know, and with **1003**
(unsupported data) for binary data where only text may come (before ``start``). Alert state
changes and the stream's opening and closing go to the audit trail (``stream.open``,
``stream.alert_raised``, ``stream.alert_cleared``, ``stream.close``; resource: the session).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any

import anyio
import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from api.audit import record_audit
from api.core.config import API_PREFIX
from api.core.logging import REQUEST_ID, log_event
from api.credential_watch import close_when_revoked, credential_check
from api.db.models import TreatmentSession
from api.enums import RoleValues
from api.errors import ApiError
from api.routes import stream_http
from api.schemas.stream import (
    CLIENT_MESSAGE,
    StreamAuth,
    StreamFrameHeader,
    StreamStart,
    StreamStop,
)
from api.security import Principal, authenticate_token
from api.service import Service
from api.stream_setup import planned_dome, session_protocol
from api.stream_slots import StreamSlot, TooManyStreamsError
from api.streaming import (
    AlertEvent,
    PlannedDome,
    StreamMonitor,
    alert_audit_detail,
    frame_geometry,
    open_monitor,
    projection_geometry,
    started_document,
)
from igrt.errors import IgrtError
from igrt.frame_of_reference import PatientPositionValues
from igrt.geometry import ProjectionGeometry
from igrt.protocol import DEFAULT_PROTOCOL, MotionProtocol

__all__ = ["AUTH_TIMEOUT_S", "router"]

_websocket_router = APIRouter(prefix=API_PREFIX)

AUTH_TIMEOUT_S = 10.0
"""How long the server waits for the ``auth`` message."""

_POLICY_VIOLATION = 1008
_UNSUPPORTED_DATA = 1003
_GOING_AWAY = 1001
_TRY_AGAIN_LATER = 1013
_ROLES = frozenset(RoleValues)


# What the review page's live monitor sees of a stream (api.routes.monitor).
_WATCHED = frozenset({"started", "result", "summary"})


class _ClosedError(Exception):
    """The conversation ended (client gone, or we closed it)."""


class _Conversation:
    def __init__(self, websocket: WebSocket, service: Service, session_id: str) -> None:
        self.websocket = websocket
        self.service = service
        self.session_id = session_id
        self.stream_id = uuid.uuid4().hex
        self.principal: Principal | None = None
        self.session_position = PatientPositionValues.HFS
        self.protocol: MotionProtocol = DEFAULT_PROTOCOL
        self.monitor: StreamMonitor | None = None
        self.close_audited = False

    # --- sending -------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        if message.get("type") in _WATCHED:
            self.service.live.publish(self.session_id, message)
        try:
            await self.websocket.send_text(json.dumps(message, allow_nan=False))
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise _ClosedError from exc

    async def error(self, code: str, detail: str, field: str | None = None, **extra: Any) -> None:
        await self.send({"type": "error", "code": code, "detail": detail, "field": field, **extra})

    async def refuse(self, code: int, error: str, detail: str) -> None:
        """Send the error, close with ``code`` and end the conversation."""
        if self.websocket.application_state is WebSocketState.CONNECTED:
            try:
                await self.error(error, detail)
                await self.websocket.close(code=code, reason=detail[:120])
            except (_ClosedError, RuntimeError):
                pass
        raise _ClosedError

    async def receive(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The next message; after authentication, within the idle timeout (closed 1001)."""
        if timeout_s is None and self.principal is not None:
            timeout_s = self.service.settings.stream_idle_timeout_s
        try:
            with anyio.fail_after(timeout_s):
                message = await self.websocket.receive()
        except TimeoutError:
            if self.principal is None:
                await self.refuse(_POLICY_VIOLATION, "unauthenticated", "no auth message in time")
            await self.refuse(
                _GOING_AWAY, "idle_timeout", f"no message for {timeout_s:g} s: the stream ended"
            )
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise _ClosedError from exc
        if message["type"] == "websocket.disconnect":
            raise _ClosedError
        return dict(message)

    # --- database (in a worker thread) --------------------------------------------------

    def _authenticate(self, token: str) -> tuple[Principal | None, TreatmentSession | None]:
        with self.service.sessions() as db:
            principal = authenticate_token(db, self.service.pepper, token)
            session = db.get(TreatmentSession, self.session_id) if principal else None
            if session is not None:
                db.expunge(session)
            return principal, session

    def _audit(self, action: str, detail: dict[str, Any]) -> None:
        context = REQUEST_ID.set(self.stream_id)
        try:
            with self.service.sessions() as db:
                record_audit(
                    db,
                    self.principal,
                    action,
                    "session",
                    self.session_id,
                    {"stream_id": self.stream_id, **detail},
                )
                db.commit()
        finally:
            REQUEST_ID.reset(context)

    def _planned_dome(self, registration_id: str | None) -> PlannedDome:
        with self.service.sessions() as db:
            return planned_dome(db, self.session_id, registration_id)

    async def audit(self, action: str, detail: dict[str, Any]) -> None:
        await run_in_threadpool(self._audit, action, detail)

    # --- steps ---------------------------------------------------------------------------

    async def authenticate(self) -> None:
        header = self.websocket.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                await self.refuse(_POLICY_VIOLATION, "unauthenticated", "use a Bearer token")
        else:
            message = await self.receive(AUTH_TIMEOUT_S)
            if message.get("text") is None:
                await self.refuse(
                    _POLICY_VIOLATION, "unauthenticated", "the first message must be auth"
                )
            try:
                auth = StreamAuth.model_validate_json(message["text"])
            except ValidationError:
                await self.refuse(
                    _POLICY_VIOLATION,
                    "unauthenticated",
                    'the first message must be {"type": "auth", "token": "..."}',
                )
            token = auth.token
        principal, session = await run_in_threadpool(self._authenticate, token.strip())
        if principal is None or principal.role not in _ROLES:
            await self.refuse(_POLICY_VIOLATION, "unauthenticated", "unknown or revoked token")
        self.principal = principal
        if session is None:
            await self.refuse(
                _POLICY_VIOLATION, "not_found", f"no session with id {self.session_id[:64]!r}"
            )
        assert session is not None
        protocol = session_protocol(self.service, session.protocol_version)
        if protocol is None:
            await self.refuse(
                _POLICY_VIOLATION,
                "unknown_protocol",
                f"protocol version {session.protocol_version!r} is not known to this service",
            )
        assert protocol is not None
        self.protocol = protocol
        self.session_position = PatientPositionValues(session.patient_position)
        settings = self.service.settings
        await self.send(
            {
                "type": "ready",
                "session_id": self.session_id,
                "protocol_version": self.protocol.version,
                "alert_threshold_mm": self.protocol.intrafraction_alert_mm,
                "alert_persistence_s": self.protocol.intrafraction_alert_duration_s,
                "max_frame_bytes": settings.stream_max_frame_bytes,
                "max_rows": settings.max_image_rows,
                "max_columns": settings.max_image_columns,
            }
        )

    async def wait_for_start(self) -> StreamStart:
        while True:
            message = await self.receive()
            if message.get("text") is None:
                await self.refuse(
                    _UNSUPPORTED_DATA, "not_started", "send the start message before any frame"
                )
            parsed = await self.parse(str(message["text"]))
            if isinstance(parsed, StreamStart):
                return parsed
            if isinstance(parsed, StreamStop):
                raise _ClosedError
            if parsed is not None:
                await self.error("not_started", "send the start message first", "type")

    async def parse(
        self, text: str
    ) -> StreamAuth | StreamStart | StreamFrameHeader | StreamStop | None:
        try:
            return CLIENT_MESSAGE.validate_json(text)
        except ValidationError as exc:
            errors = exc.errors()
            location = [str(part) for part in errors[0]["loc"]] if errors else []
            message = errors[0]["msg"] if errors else "invalid"
            location = [part for part in location if not part.isdigit()]
            if location and location[0] in ("auth", "start", "frame", "stop"):
                location = location[1:]
            field = ".".join(location) or "body"
            await self.error("invalid_message", f"{field}: {message}", field)
            return None

    async def start(self, start: StreamStart) -> tuple[StreamMonitor, ProjectionGeometry] | None:
        try:
            geometry = projection_geometry(start.geometry)
        except IgrtError as exc:
            await self.error("invalid_message", str(exc), "geometry")
            return None
        rows, columns = geometry.detector_shape
        settings = self.service.settings
        if rows > settings.max_image_rows or columns > settings.max_image_columns:
            await self.error("frame_too_large", "the panel exceeds the image limits", "geometry")
            return None
        try:
            planned = (
                await run_in_threadpool(self._planned_dome, start.reference.registration_id)
                if start.reference.mode == "plan"
                else None
            )
            monitor = open_monitor(start, self.protocol, self.session_position, geometry, planned)
        except ApiError as exc:
            await self.error("no_reference", exc.detail, exc.field or "reference")
            return None
        except IgrtError as exc:
            await self.error("invalid_message", str(exc), "reference")
            return None
        await self.audit(
            "stream.open",
            {
                "reference_mode": start.reference.mode,
                "reference": monitor.reference_document(),
                "mode": monitor.core.mode.value,
                "detector_shape": [rows, columns],
            },
        )
        await self.send(started_document(self.stream_id, start, geometry, monitor))
        return monitor, geometry

    async def track(
        self,
        monitor: StreamMonitor,
        base: ProjectionGeometry,
        header: StreamFrameHeader,
        pixels: bytes,
    ) -> None:
        received = time.perf_counter()
        expected = header.rows * header.columns * 2
        if len(pixels) != expected:
            await self.error(
                "invalid_frame",
                f"{header.rows} x {header.columns} uint16 pixels are {expected} bytes, "
                f"got {len(pixels)}",
                "frame",
                time_s=header.time_s,
            )
            return
        if (header.rows, header.columns) != base.detector_shape:
            await self.error(
                "invalid_frame",
                f"the frame is {header.rows} x {header.columns} but the panel is "
                f"{base.detector_shape[0]} x {base.detector_shape[1]}",
                "rows",
                time_s=header.time_s,
            )
            return
        frame = np.frombuffer(pixels, dtype="<u2").reshape(header.rows, header.columns)
        try:
            geometry = frame_geometry(base, header.gantry_deg, header.detector_offset_mm)
            result, event = await self.service.frame_lanes.process(
                monitor, frame, header.time_s, geometry
            )
        except IgrtError as exc:
            field = getattr(exc, "field", None) or "frame"
            await self.error("invalid_frame", str(exc), field, time_s=header.time_s)
            return
        if event is not None:
            await self.audit_alert(event, monitor)
        result["latency_ms"] = round((time.perf_counter() - received) * 1000.0, 3)
        await self.send(result)

    async def audit_alert(self, event: AlertEvent, monitor: StreamMonitor) -> None:
        await self.audit(f"stream.alert_{event.kind}", alert_audit_detail(event, monitor))
        log_event(
            f"stream alert {event.kind}",
            stream_id=self.stream_id,
            session_id=self.session_id,
            time_s=event.time_s,
        )

    async def frames(self, monitor: StreamMonitor, geometry: ProjectionGeometry) -> None:
        limit = self.service.settings.stream_max_frame_bytes
        pending: StreamFrameHeader | None = None
        while True:
            message = await self.receive()
            data = message.get("bytes")
            if data is not None:
                if pending is None:
                    await self.error(
                        "frame_without_header", "send a frame header before its pixels", "type"
                    )
                elif len(data) > limit:
                    await self.error(
                        "frame_too_large",
                        f"a frame may have at most {limit} bytes, got {len(data)}",
                        "frame",
                        time_s=pending.time_s,
                    )
                else:
                    await self.track(monitor, geometry, pending, bytes(data))
                pending = None
                continue
            parsed = await self.parse(str(message.get("text") or ""))
            if pending is not None and parsed is not None:
                await self.error(
                    "missing_pixels",
                    "the previous frame header was not followed by its pixels",
                    "frame",
                    time_s=pending.time_s,
                )
                pending = None
            if isinstance(parsed, StreamFrameHeader):
                if parsed.rows * parsed.columns * 2 > limit:
                    await self.error(
                        "frame_too_large",
                        f"a frame may have at most {limit} bytes",
                        "rows",
                        time_s=parsed.time_s,
                    )
                else:
                    pending = parsed
            elif isinstance(parsed, StreamStop):
                return
            elif parsed is not None:
                await self.error("invalid_message", f"{parsed.type} is not expected now", "type")

    async def converse(self) -> None:
        """From the start message to the summary (the stream's slot is held meanwhile)."""
        started = None
        while started is None:
            started = await self.start(await self.wait_for_start())
        self.monitor, geometry = started
        await self.frames(self.monitor, geometry)
        # The summary acknowledges the stop: the audit trail holds the close before it is sent.
        await self.audit_close()
        await self.send(self.monitor.summary())
        await self.websocket.close(code=1000)

    async def audit_close(self) -> None:
        """``stream.close`` with the monitor's summary, once (a stop, or a lost connection)."""
        if self.monitor is None or self.close_audited:
            return
        self.close_audited = True
        summary = self.monitor.summary()
        summary.pop("type")
        with anyio.CancelScope(shield=True):
            await self.audit("stream.close", summary)

    async def take_slot(self) -> StreamSlot:
        assert self.principal is not None
        try:
            return self.service.stream_slots.acquire(self.principal.token_id)
        except TooManyStreamsError as exc:
            await self.refuse(_TRY_AGAIN_LATER, "too_many_streams", str(exc))
            raise  # pragma: no cover - refuse raised already

    async def run(self) -> None:
        await self.websocket.accept()
        try:
            await self.authenticate()
            assert self.principal is not None
            slot = await self.take_slot()
            check = credential_check(self.service, self.principal)
            try:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(
                        close_when_revoked,
                        self.websocket,
                        check,
                        self.service.settings.credential_recheck_s,
                        tasks.cancel_scope,
                    )
                    with contextlib.suppress(_ClosedError):
                        await self.converse()
                    tasks.cancel_scope.cancel()
            finally:
                self.service.stream_slots.release(slot)
        except _ClosedError:
            pass
        finally:
            await self.audit_close()


@_websocket_router.websocket("/sessions/{session_id}/stream", name="stream_session")
async def stream_session(websocket: WebSocket, session_id: str) -> None:
    """Track the dome on fluoroscopy frames in real time (see the module docstring)."""
    service: Service = websocket.app.state.service
    await _Conversation(websocket, service, session_id).run()


router = APIRouter()
"""Both transports: this WebSocket and the plain-HTTP streams (:mod:`api.routes.stream_http`).

Each carries the /api/v1 prefix itself, so that a route's template is its full path.
"""
router.include_router(_websocket_router)
router.include_router(stream_http.router)
