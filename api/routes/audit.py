"""The audit trail (physicists only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from api.core.config import API_PREFIX
from api.db.models import AuditEvent
from api.deps import DbSession, Physicist
from api.errors import PROBLEM_RESPONSES
from api.schemas.audit import AuditEventPublic, AuditEventsPublic
from api.schemas.common import MAX_OFFSET

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["audit"], responses=PROBLEM_RESPONSES)


@router.get("/audit-events", operation_id="list_audit_events")
def list_audit_events(
    principal: Physicist,
    db: DbSession,
    resource_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> AuditEventsPublic:
    """Audit entries, optionally for one resource."""
    query = select(AuditEvent)
    if resource_id is not None:
        query = query.where(AuditEvent.resource_id == resource_id)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(AuditEvent.id).limit(limit).offset(offset))
    return AuditEventsPublic(
        data=[AuditEventPublic.model_validate(row) for row in rows], count=count
    )
