"""The review worklist and a session's history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.enums import SessionKindValues, WorklistStatusValues
from api.schemas.reviews import ReviewPublic

__all__ = ["AlertAcknowledgement", "HistoryEntry", "SessionHistory", "Worklist", "WorklistItem"]

_ITEM: dict[str, Any] = {
    "session_id": "7d3c1b2a-9e8f-4a6b-8c5d-1e2f3a4b5c6d",
    "patient_id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    "patient_external_id": "MRN-0042",
    "patient_name": "Doe^Jane",
    "kind": "fraction",
    "fraction_number": 3,
    "patient_position": "HFS",
    "created_at": "2026-11-28T08:10:00Z",
    "status": "flagged_for_repositioning",
    "alert_during_monitoring": False,
    "flagged_for_repositioning": True,
    "results": 2,
    "awaiting_review": 1,
    "latest_recommendation": "abdominal_compression",
}


class WorklistItem(BaseModel):
    """One session on the worklist with what needs a reviewer's attention."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ITEM]})

    session_id: str
    patient_id: str
    patient_external_id: str
    patient_name: str | None
    kind: SessionKindValues
    fraction_number: int | None
    patient_position: str
    created_at: datetime
    status: WorklistStatusValues = Field(description="The most urgent of the flags below.")
    alert_during_monitoring: bool = Field(
        description="The intrafraction alert fired on a stream of this session."
    )
    flagged_for_repositioning: bool = Field(
        description="An unreviewed registration exceeds the repositioning threshold."
    )
    results: int = Field(description="Motion assessments and finished registrations.")
    awaiting_review: int = Field(description="Results without a review.")
    latest_recommendation: str | None = Field(
        description="The newest motion assessment's recommendation, if any."
    )


class Worklist(BaseModel):
    """Sessions, newest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_ITEM], "count": 1}]})

    data: list[WorklistItem]
    count: int


class HistoryEntry(BaseModel):
    """Something that happened to a session: a review, or an alert on its stream."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "occurred_at": "2026-11-28T09:40:00Z",
                    "kind": "stream.alert_raised",
                    "summary": "alert raised: 3.4 mm from the reference for 5.2 s",
                    "review": None,
                }
            ]
        }
    )

    occurred_at: datetime
    kind: str = Field(description="`review`, or the audit action (`stream.alert_raised`, ...).")
    summary: str
    review: ReviewPublic | None = None


class SessionHistory(BaseModel):
    """A session's reviews and stream alerts, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [], "count": 0}]})

    data: list[HistoryEntry]
    count: int


class AlertAcknowledgement(BaseModel):
    """What was done about a session's intrafraction alerts."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"note": "Beam held; CBCT repeated, couch moved 3.2 mm superior."}]
        },
    )

    note: str = Field(
        min_length=1, max_length=500, pattern=r"\S", description="What was done (required)."
    )
