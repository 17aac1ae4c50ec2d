"""The real-time path over plain HTTP: single-frame dome tracking, one request per frame.

For clients that cannot keep a WebSocket (proxies, simple scripts): the same tracking and
KIM-style alert as ``/sessions/{session_id}/stream`` (:mod:`api.routes.stream`), the same
:class:`~api.streaming.StreamMonitor`, the same answer per frame. Any role may stream.

1. **Start**: ``POST /api/v1/sessions/{session_id}/streams`` with the WebSocket's start message as
   a JSON body (:class:`~api.schemas.stream.StreamOpen`; ``type`` may be left out; its
   ``reference.mode`` ``plan`` takes the reference from the session's registration, 409 when
   there is none; ``mode`` ``breath_hold`` for ABC / DIBH). 201 with the
   ``stream_id``, the panel, the alert rule and the limits (:class:`~api.schemas.stream.
   StreamOpened`).
2. **Frames**: ``POST .../streams/{stream_id}/frames?time_s=0.2&rows=256&columns=256`` (optional
   ``gantry_deg``, ``detector_offset_u_mm``, ``detector_offset_v_mm`` of this frame) with
   ``Content-Type: application/octet-stream`` and exactly ``rows * columns * 2`` bytes,
   little-endian uint16, row after row. 200 with the frame's result
   (:class:`~api.schemas.stream.StreamFrameResult`). Frames of one stream are tracked in the
   order they arrive; send the next after the answer to the previous.
3. **Stop**: ``POST .../streams/{stream_id}/stop``: 200 with the summary.

A stream belongs to the token that started it (another token gets 404) and lives in this
process's memory only (:mod:`api.http_streams`): it holds one of the service's stream slots
(``IGRT_STREAM_MAX_OPEN`` shared with the WebSockets, ``IGRT_STREAM_MAX_PER_TOKEN`` per token;
429 at once beyond), is closed after ``IGRT_STREAM_IDLE_TIMEOUT_S`` without a frame, and lost on
a restart, like a WebSocket's state (real-time state is not persisted; start a new stream).
Errors are
:class:`~api.schemas.common.Problem` bodies: 404 unknown, stopped or expired stream, 413 a body
over ``IGRT_STREAM_MAX_FRAME_BYTES``, 415 not ``application/octet-stream``, 422 a wrong byte count
or panel size (``code`` ``invalid_frame``). The audit trail gets ``stream.open``,
``stream.alert_raised``, ``stream.alert_cleared`` and ``stream.close`` (resource: the session,
detail ``transport: http``), and the review page's live monitor (:mod:`api.routes.monitor`)
sees the ``started``, ``result`` and ``summary`` documents, as for the WebSocket.

:data:`api.routes.stream.router` includes this router, so the application serves both
transports without further wiring.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Annotated, Any

import anyio
import anyio.to_thread
import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.audit import record_audit
from api.core.config import API_PREFIX
from api.core.logging import log_event
from api.crud import get_session
from api.deps import AnyRole, JsonContent, ServiceDep, require_media_type
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.http_streams import HttpStream, HttpStreamRegistry, TooManyStreamsError
from api.schemas.stream import StreamFrameResult, StreamOpen, StreamOpened, StreamSummary
from api.security import Principal
from api.service import Service
from api.stream_setup import planned_dome, session_protocol
from api.stream_slots import StreamSlot
from api.streaming import (
    alert_audit_detail,
    frame_geometry,
    open_monitor,
    projection_geometry,
    started_document,
)
from igrt.errors import IgrtError
from igrt.frame_of_reference import PatientPositionValues

__all__ = ["HttpStreams", "get_http_streams", "router"]

router = APIRouter(prefix=API_PREFIX, tags=["stream"], responses=PROBLEM_RESPONSES)

_OCTET_STREAM = "application/octet-stream"
_FRAME_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The frame: rows x columns little-endian uint16 pixels, row after row.",
        "content": {_OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
    }
}
_NO_STREAM = problem(404, "No such open stream of this session and token.")


async def get_http_streams(request: Request) -> HttpStreamRegistry:
    """The application's open HTTP streams, made on first use.

    Async so that it runs on the event loop: two first requests cannot make two registries.
    """
    registry = getattr(request.app.state, "http_streams", None)
    if not isinstance(registry, HttpStreamRegistry):
        service: Service = request.app.state.service
        registry = HttpStreamRegistry(
            slots=service.stream_slots, idle_timeout_s=service.settings.stream_idle_timeout_s
        )
        request.app.state.http_streams = registry
    return registry


HttpStreams = Annotated[HttpStreamRegistry, Depends(get_http_streams)]

STARTS_AT_ONCE = 2
"""Admitted stream starts prepared in worker threads at once (session read, tracker, audit).

Their work is Python under the GIL: 32 starts in 32 threads at once took the GIL from the event
loop for up to 200 ms (every route waits for the loop); two at a time keep the loop answering
and finish the burst as soon (issue 12)."""


def _start_limiter(request: Request) -> anyio.CapacityLimiter:
    limiter = getattr(request.app.state, "stream_start_limiter", None)
    if not isinstance(limiter, anyio.CapacityLimiter):
        limiter = anyio.CapacityLimiter(STARTS_AT_ONCE)
        request.app.state.stream_start_limiter = limiter
    return limiter


OctetStreamContent = Annotated[None, Depends(require_media_type(_OCTET_STREAM))]


def _close_detail(stream: HttpStream, reason: str) -> dict[str, Any]:
    summary = stream.monitor.summary()
    summary.pop("type")
    return {"stream_id": stream.stream_id, "transport": "http", **summary, "reason": reason}


def _audit(
    service: Service, principal: Principal, session_id: str, action: str, detail: dict[str, Any]
) -> None:
    with service.sessions() as db:
        record_audit(db, principal, action, "session", session_id, detail)
        db.commit()


def _audit_idle(service: Service, streams: list[HttpStream]) -> None:
    for stream in streams:
        _audit(
            service,
            stream.principal,
            stream.session_id,
            "stream.close",
            _close_detail(stream, "idle_timeout"),
        )


def _not_found(stream_id: str, streams: HttpStreamRegistry) -> ApiError:
    return ApiError(
        404,
        f"no open stream {stream_id[:64]!r} of this session and token (streams close when "
        f"stopped, after {streams.idle_timeout_s:g} s without a frame, and on a restart)",
        field="stream_id",
    )


async def _open_stream(
    service: Service,
    streams: HttpStreamRegistry,
    stream_id: str,
    session_id: str,
    principal: Principal,
) -> HttpStream:
    """The caller's open stream (404 otherwise), after closing and auditing idle ones."""
    idle = streams.expire()
    if idle:
        await run_in_threadpool(_audit_idle, service, idle)
    stream = streams.get(stream_id, session_id, principal)
    if stream is None:
        raise _not_found(stream_id, streams)
    return stream


@router.post(
    "/sessions/{session_id}/streams",
    operation_id="open_stream",
    status_code=201,
    responses={
        **problem(404, "No such session, or no such registration of it (reference mode plan)."),
        **problem(
            409,
            "The session's protocol version is not known to this service, or (reference mode "
            "plan) no registration of the session has a planning dome apex.",
        ),
        **problem(415, "The body is not JSON."),
        **problem(429, "As many streams are open as this service, or this token, may hold."),
    },
)
async def open_stream(
    request: Request,
    principal: AnyRole,
    _: JsonContent,
    service: ServiceDep,
    streams: HttpStreams,
    session_id: str,
    body: StreamOpen,
) -> StreamOpened:
    """Start tracking the dome on frames sent one request at a time (see the frames route)."""
    # Admission first, on the event loop: a slot (or the 429) costs no worker thread and no
    # database read. Under a burst of opens, the refused ones answer at once and the admitted
    # ones make one worker-thread hop each, not one per sync dependency; each hop had to wait
    # for the event loop, which every other route's requests were waiting for too (issue 12).
    idle = streams.expire()
    try:
        slot = streams.reserve(principal)
    except TooManyStreamsError as exc:
        if idle:
            await run_in_threadpool(_audit_idle, service, idle)
        raise ApiError(
            429,
            f"{exc}: stop one, or retry once an idle one closes "
            f"({streams.idle_timeout_s:g} s without a frame)",
            code="too_many_streams",
            headers={"Retry-After": str(math.ceil(streams.idle_timeout_s))},
        ) from None
    try:
        stream, started = await anyio.to_thread.run_sync(
            functools.partial(
                _start_stream, service, streams, slot, idle, session_id, principal, body
            ),
            limiter=_start_limiter(request),
        )
    except BaseException:
        streams.release_unused(slot)
        raise
    # The review page's live monitor watches HTTP streams as it watches WebSockets.
    service.live.publish(stream.session_id, started)
    base = f"{API_PREFIX}/sessions/{stream.session_id}/streams/{stream.stream_id}"
    return StreamOpened.model_validate(
        {
            **started,
            "session_id": stream.session_id,
            "max_frame_bytes": service.settings.stream_max_frame_bytes,
            "idle_timeout_s": streams.idle_timeout_s,
            "frames_url": f"{base}/frames",
            "stop_url": f"{base}/stop",
        }
    )


def _start_stream(
    service: Service,
    streams: HttpStreamRegistry,
    slot: StreamSlot,
    idle: list[HttpStream],
    session_id: str,
    principal: Principal,
    body: StreamOpen,
) -> tuple[HttpStream, dict[str, Any]]:
    """Everything of a start after admission, in one worker thread.

    Returns the stream and its ``started`` document; the slot is the caller's to give back if
    this raises.
    """
    _audit_idle(service, idle)
    with service.sessions() as db:
        session = get_session(db, session_id)
        planned = (
            planned_dome(db, session.id, body.reference.registration_id)
            if body.reference.mode == "plan"
            else None
        )
    protocol = session_protocol(service, session.protocol_version)
    if protocol is None:
        raise ApiError(
            409,
            f"protocol version {session.protocol_version!r} is not known to this service",
            field="session_id",
        )
    try:
        geometry = projection_geometry(body.geometry)
    except IgrtError as exc:
        raise ApiError(422, str(exc), field="geometry") from exc
    rows, columns = geometry.detector_shape
    settings = service.settings
    if rows > settings.max_image_rows or columns > settings.max_image_columns:
        raise ApiError(
            422,
            f"the {rows} x {columns} panel exceeds the image limits "
            f"({settings.max_image_rows} x {settings.max_image_columns})",
            field="geometry",
        )
    if rows * columns * 2 > settings.stream_max_frame_bytes:
        raise ApiError(
            422,
            f"a {rows} x {columns} frame exceeds the frame limit of "
            f"{settings.stream_max_frame_bytes} bytes",
            field="geometry",
        )
    try:
        monitor = open_monitor(
            body, protocol, PatientPositionValues(session.patient_position), geometry, planned
        )
    except IgrtError as exc:
        raise ApiError(422, str(exc), field="reference") from exc
    stream = streams.open(session.id, principal, monitor, geometry, slot=slot)
    # Audited in a transaction of its own, as every write of these routes (the session's read
    # above has ended): SQLite refuses a write from a snapshot older than another connection's
    # commit ("database is locked").
    try:
        _audit(
            service,
            principal,
            session.id,
            "stream.open",
            {
                "stream_id": stream.stream_id,
                "transport": "http",
                "reference_mode": body.reference.mode,
                "reference": monitor.reference_document(),
                "mode": monitor.core.mode.value,
                "detector_shape": [rows, columns],
            },
        )
    except BaseException:
        streams.close(stream)  # an unaudited stream must not run
        raise
    return stream, started_document(stream.stream_id, body, geometry, monitor)


async def _read_frame(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"a frame may have at most {limit} bytes, got {declared}", field="body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked bodies declare no length
            raise ApiError(413, f"a frame may have at most {limit} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/sessions/{session_id}/streams/{stream_id}/frames",
    operation_id="track_stream_frame",
    response_model=StreamFrameResult,
    responses={
        **_NO_STREAM,
        **problem(413, "The body exceeds the frame limit."),
        **problem(415, "The body is not application/octet-stream."),
    },
    openapi_extra=_FRAME_BODY,
)
async def track_stream_frame(
    request: Request,
    principal: AnyRole,
    _: OctetStreamContent,
    service: ServiceDep,
    streams: HttpStreams,
    session_id: str,
    stream_id: str,
    time_s: Annotated[
        float, Query(ge=0, le=86_400, allow_inf_nan=False, description="Frame time, s.")
    ],
    rows: Annotated[int, Query(ge=16, le=4096, description="Frame height, pixels.")],
    columns: Annotated[int, Query(ge=16, le=4096, description="Frame width, pixels.")],
    gantry_deg: Annotated[
        float | None,
        Query(ge=-360, le=360, allow_inf_nan=False, description="This frame's gantry angle."),
    ] = None,
    detector_offset_u_mm: Annotated[
        float | None, Query(ge=-500, le=500, allow_inf_nan=False, description="Panel offset u.")
    ] = None,
    detector_offset_v_mm: Annotated[
        float | None, Query(ge=-500, le=500, allow_inf_nan=False, description="Panel offset v.")
    ] = None,
) -> JSONResponse:
    """Track the dome on one frame: position, excursion, displacement and alert state."""
    stream = await _open_stream(service, streams, stream_id, session_id, principal)
    pixels = await _read_frame(request, service.settings.stream_max_frame_bytes)
    received = time.perf_counter()
    expected = rows * columns * 2
    if len(pixels) != expected:
        raise ApiError(
            422,
            f"{rows} x {columns} uint16 pixels are {expected} bytes, got {len(pixels)}",
            field="body",
            code="invalid_frame",
        )
    if (rows, columns) != stream.geometry.detector_shape:
        panel_rows, panel_columns = stream.geometry.detector_shape
        raise ApiError(
            422,
            f"the frame is {rows} x {columns} but the panel is {panel_rows} x {panel_columns}",
            field="rows",
            code="invalid_frame",
        )
    offset = None
    if detector_offset_u_mm is not None or detector_offset_v_mm is not None:
        base_u_mm, base_v_mm = stream.geometry.detector_offset_mm
        offset = (
            base_u_mm if detector_offset_u_mm is None else detector_offset_u_mm,
            base_v_mm if detector_offset_v_mm is None else detector_offset_v_mm,
        )
    frame = np.frombuffer(pixels, dtype="<u2").reshape(rows, columns)
    async with stream.lock:
        if stream.closed:  # stopped or expired while this frame waited for the previous one
            raise _not_found(stream_id, streams)
        try:
            geometry = frame_geometry(stream.geometry, gantry_deg, offset)
            result, event = await service.frame_lanes.process(
                stream.monitor, frame, time_s, geometry
            )
        except IgrtError as exc:
            field = getattr(exc, "field", None) or "body"
            raise ApiError(422, str(exc), field=field, code="invalid_frame") from exc
    if event is not None:
        detail = {"stream_id": stream.stream_id, "transport": "http"}
        detail.update(alert_audit_detail(event, stream.monitor))
        await run_in_threadpool(
            _audit, service, principal, session_id, f"stream.alert_{event.kind}", detail
        )
        log_event(
            f"stream alert {event.kind}",
            stream_id=stream.stream_id,
            session_id=session_id,
            time_s=event.time_s,
        )
    result["latency_ms"] = round((time.perf_counter() - received) * 1000.0, 3)
    service.live.publish(session_id, result)
    return JSONResponse(result)


@router.post(
    "/sessions/{session_id}/streams/{stream_id}/stop",
    operation_id="stop_stream",
    response_model=StreamSummary,
    responses=_NO_STREAM,
)
async def stop_stream(
    principal: AnyRole,
    service: ServiceDep,
    streams: HttpStreams,
    session_id: str,
    stream_id: str,
) -> JSONResponse:
    """End the stream: its summary (frames, trusted frames, alerts); the id is then unknown."""
    stream = await _open_stream(service, streams, stream_id, session_id, principal)
    async with stream.lock:  # a frame being tracked counts in the summary
        closed = streams.close(stream)
    if not closed:
        raise _not_found(stream_id, streams)
    await run_in_threadpool(
        _audit, service, principal, session_id, "stream.close", _close_detail(stream, "stopped")
    )
    summary = stream.monitor.summary()
    service.live.publish(session_id, summary)
    return JSONResponse(summary)
