"""Builds the FastAPI application: ``create_app(settings)``.

Start-up (the lifespan) prepares the data directory, runs ``alembic upgrade head``, loads the
token pepper and, on an empty database, writes a first-run therapist token and the demo
patient. Resources live under ``/api/v1``; ``/healthz`` and ``/readyz`` need no token; the
therapist review page is served at ``/`` (:mod:`api.web`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

import igrt
from api.core.config import Settings
from api.core.logging import configure_logging, log_event
from api.db.migrate import upgrade
from api.db.single_process import SqliteProcessLock
from api.demo import seed_first_run
from api.errors import install_error_handlers
from api.middleware import RequestContextMiddleware
from api.routes import (
    assessments,
    audit,
    dicom,
    health,
    metrics,
    monitor,
    pair_registrations,
    patients,
    previews,
    registrations,
    reviews,
    sessions,
    stream,
    tokens,
    uploads,
    volumes,
    web_session,
    worklist,
)
from api.schemas.health import Health
from api.security import load_pepper
from api.service import Service
from api.web import install_web_ui

__all__ = ["Health", "create_app"]

_DESCRIPTION = """\
Diaphragm tracking, breathing-motion assessment and image registration for liver SBRT.

Every route under `/api/v1` needs `Authorization: Bearer <token>` (make one with
`igrt token create --role console|therapist|physicist --name NAME`). Errors are JSON
`Problem` bodies whose `field` names what to fix. Numbers carry their unit in their name
(`sad_mm`, `timestamps_s`).

Real time: the WebSocket `/api/v1/sessions/{session_id}/stream` takes fluoroscopy frames one at
a time (a JSON header, then the pixels as little-endian uint16) and answers each with the dome
position, the running excursion, the displacement from the session's reference and the
intrafraction alert of the session's protocol (see `api/routes/stream.py` for the messages).
Clients that cannot hold a WebSocket open a stream with `POST /api/v1/sessions/{session_id}/streams`
and send each frame as `application/octet-stream`; the answers are the same documents. The review
page's live monitor watches a session's streams on the WebSocket
`/api/v1/sessions/{session_id}/monitor`.

The therapist review page is served at `/` (sign-in: `POST /api/v1/web-session`, which sets an
HttpOnly cookie; changes made with the cookie need the `X-CSRF-Token` header).
"""

_TAGS = [
    {"name": "operations", "description": "Health, readiness and metrics."},
    {"name": "patients", "description": "Patients (therapists and physicists create them)."},
    {"name": "sessions", "description": "Simulation days and treatment fractions."},
    {"name": "uploads", "description": "Fluoroscopy files with their geometry."},
    {"name": "volumes", "description": "Planning CT and CBCT files with their geometry."},
    {
        "name": "registrations",
        "description": "CBCT-to-planning-CT registration jobs (202), results, overlays, DICOM REG.",
    },
    {
        "name": "assessments",
        "description": "Breathing-motion assessments: dome track, analysis, decision.",
    },
    {
        "name": "reviews",
        "description": "Therapist review: approve, or override with a reason (immutable).",
    },
    {
        "name": "stream",
        "description": "Real-time dome tracking over plain HTTP, one frame per request (the "
        "WebSocket `/api/v1/sessions/{session_id}/stream` does the same with less overhead).",
    },
    {"name": "worklist", "description": "Sessions to review, and a session's history."},
    {"name": "tokens", "description": "The calling token."},
    {
        "name": "web-session",
        "description": "Sign-in of the review page (cookie and CSRF token; browsers only).",
    },
    {"name": "audit", "description": "The append-only audit trail (physicists)."},
    {"name": "dicom", "description": "What the DICOM receiver stored, and its quarantine."},
]


def _start(service: Service) -> None:
    settings = service.settings
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    service.store.prepare()
    upgrade(service.engine)
    service.pepper = load_pepper(settings)
    seed_first_run(service)
    failed, requeued = service.registrations.recover()
    if failed or requeued:
        log_event("registration jobs recovered", interrupted_failed=failed, requeued=requeued)
    log_event("service started", data_dir=str(settings.data_dir), version=igrt.__version__)


def _openapi_with_examples(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's OpenAPI generation, then an example for enum and multipart-body schemas."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # caches itself in app.openapi_schema
            for name, component in schema.get("components", {}).get("schemas", {}).items():
                if "examples" in component:
                    continue
                if "enum" in component:
                    component["examples"] = list(component["enum"][:2])
                elif name == "Body_upload_fluoroscopy":
                    component["examples"] = [{"format": "dicom", "file": "(the file's bytes)"}]
                elif name == "Body_upload_volume":
                    component["examples"] = [
                        {"kind": "cbct", "format": "mha", "file": "(the file's bytes)"}
                    ]
        return app.openapi_schema or generate()

    return openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    """Create the application with every router mounted.

    Parameters
    ----------
    settings : Settings, optional
        Read from the ``IGRT_*`` environment when omitted.
    """
    settings = settings if settings is not None else Settings()
    service = Service.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level, settings.log_format)
        single_process = SqliteProcessLock.acquire(settings.database_url)
        try:
            try:
                await run_in_threadpool(_start, service)
                await service.live.start()
                yield
            finally:
                await service.live.close()
                await run_in_threadpool(service.stop_dicom_processor)
                await run_in_threadpool(service.registrations.shutdown)
                service.frame_lanes.shutdown()
                service.first_run.cancel()
                service.tokens.dispose()
                service.engine.dispose()
        finally:
            if single_process is not None:
                single_process.release()

    app = FastAPI(
        title="igrt",
        version=igrt.__version__,
        summary="Diaphragm tracking, breathing-motion assessment and registration for liver SBRT.",
        description=_DESCRIPTION,
        openapi_tags=_TAGS,
        lifespan=lifespan,
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
    )
    app.state.service = service
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service)
    app.openapi = _openapi_with_examples(app)  # type: ignore[method-assign]
    app.include_router(health.router)
    app.include_router(metrics.router)
    # Every resource router carries the /api/v1 prefix itself, so that a route's template
    # (used in logs and metrics) is its full path.
    for router in (
        patients.router,
        sessions.router,
        uploads.router,
        volumes.router,
        registrations.router,
        pair_registrations.router,
        assessments.router,
        reviews.router,
        stream.router,
        monitor.router,
        previews.router,
        worklist.router,
        tokens.router,
        web_session.router,
        audit.router,
        dicom.router,
    ):
        app.include_router(router)
    install_web_ui(app)
    return app
