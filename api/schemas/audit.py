"""Audit-trail entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.config import JsonDict

__all__ = ["AuditEventPublic", "AuditEventsPublic"]

_EXAMPLE: JsonDict = {
    "id": 42,
    "occurred_at": "2026-11-28T09:25:00Z",
    "actor_token_id": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
    "actor_role": "console",
    "action": "upload.create",
    "resource_type": "upload",
    "resource_id": "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "request_id": "6f1c2d0e9a7b4c3d8e5f1a2b3c4d5e6f",
    "detail": {"session_id": "7d3c1b2a-9e8f-4a6b-8c5d-1e2f3a4b5c6d", "format": "dicom"},
}


class AuditEventPublic(BaseModel):
    """One audit entry (actor None: the service itself)."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    id: int
    occurred_at: datetime
    actor_token_id: str | None
    actor_role: str | None
    action: str
    resource_type: str
    resource_id: str
    request_id: str | None
    detail: dict[str, Any]


class AuditEventsPublic(BaseModel):
    """A page of audit entries, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_EXAMPLE], "count": 1}]})

    data: list[AuditEventPublic]
    count: int
