"""Liveness (``/healthz``) and readiness (``/readyz``); both unauthenticated.

Neither waits behind the request thread pool, which uploads, registrations and streams fill:
liveness answers on the event loop, and readiness runs its database and disk checks on a thread
of its own (:data:`_HEALTH_THREAD`), so a busy service is not restarted for being busy.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Response
from sqlalchemy import text

import igrt
from api.db.migrate import current_revision, head_revision
from api.deps import ServiceDep
from api.schemas.health import Health, Readiness, ReadinessCheck
from api.service import Service

__all__ = ["router"]

router = APIRouter(tags=["operations"])

_HEALTH_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health")


@router.get("/healthz", operation_id="health")
async def health() -> Health:
    """Liveness: the process is up and answering."""
    return Health(status="ok", version=igrt.__version__)


def _checks(service: Service) -> list[ReadinessCheck]:
    writable = service.store.writable()
    return [
        _database_check(service),
        ReadinessCheck(
            name="data_dir", ok=writable, detail="writable" if writable else "not writable"
        ),
    ]


def _database_check(service: Service) -> ReadinessCheck:
    try:
        with service.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(service.engine)
    except Exception as exc:  # any driver error means "not ready", never a 500
        return ReadinessCheck(
            name="database", ok=False, detail=f"unreachable: {type(exc).__name__}"
        )
    head = head_revision()
    if current != head:
        return ReadinessCheck(
            name="database", ok=False, detail=f"at revision {current}, expected {head}"
        )
    return ReadinessCheck(name="database", ok=True, detail=f"migrations at head {head}")


@router.get(
    "/readyz",
    operation_id="ready",
    responses={503: {"model": Readiness, "description": "A check failed."}},
)
async def ready(service: ServiceDep, response: Response) -> Readiness:
    """Readiness: the database answers at the expected revision and the data dir is writable."""
    checks = await asyncio.get_running_loop().run_in_executor(_HEALTH_THREAD, _checks, service)
    ok = all(check.ok for check in checks)
    if not ok:
        response.status_code = 503
    return Readiness(status="ready" if ok else "not_ready", checks=checks)
