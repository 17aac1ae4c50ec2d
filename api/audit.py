"""Append entries to the audit trail, inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.core.logging import REQUEST_ID
from api.db.models import AuditEvent
from api.security import Principal

__all__ = ["record_audit"]


def record_audit(
    db: Session,
    principal: Principal | None,
    action: str,
    resource_type: str,
    resource_id: str,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event (committed with the change it records; no patient identifiers).

    ``principal`` None means the service itself (demo data, migrations).
    """
    event = AuditEvent(
        actor_token_id=principal.token_id if principal else None,
        actor_role=principal.role.value if principal else None,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        request_id=REQUEST_ID.get(),
        detail=detail or {},
    )
    db.add(event)
    return event
