"""Liveness (``/healthz``) and readiness (``/readyz``); both unauthenticated."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text

import igrt
from api.db.migrate import current_revision, head_revision
from api.deps import ServiceDep
from api.schemas.health import Health, Readiness, ReadinessCheck
from api.service import Service

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="health")
def health() -> Health:
    """Liveness: the process is up and answering."""
    return Health(status="ok", version=igrt.__version__)


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
def ready(service: ServiceDep, response: Response) -> Readiness:
    """Readiness: the database answers at the expected revision and the data dir is writable."""
    writable = service.store.writable()
    checks = [
        _database_check(service),
        ReadinessCheck(
            name="data_dir", ok=writable, detail="writable" if writable else "not writable"
        ),
    ]
    ok = all(check.ok for check in checks)
    if not ok:
        response.status_code = 503
    return Readiness(status="ready" if ok else "not_ready", checks=checks)
