"""Reviews of results: approve, or override with a reason."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from api.enums import ReviewOutcomeValues, ReviewSubjectValues, RoleValues

__all__ = ["ReviewCreate", "ReviewPublic", "ReviewsPublic"]

# A couch correction beyond 10 cm is a typo or a wrong patient, not an IGRT shift.
CorrectionMm = Annotated[float, Field(ge=-100.0, le=100.0, allow_inf_nan=False)]

_EXAMPLE: JsonDict = {
    "id": "c4d5e6f7-a8b9-4c0d-8e1f-2a3b4c5d6e7f",
    "subject_type": "motion_assessment",
    "subject_id": "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "session_id": "7d3c1b2a-9e8f-4a6b-8c5d-1e2f3a4b5c6d",
    "outcome": "overridden",
    "reason": "Patient cannot tolerate compression (hiatus hernia); ABC trial instead.",
    "decision": "active_breathing_control",
    "supersedes_id": None,
    "couch_correction_iec_support_mm": None,
    "standing": True,
    "reviewer_role": "therapist",
    "created_by": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
    "created_at": "2026-11-28T09:40:00Z",
}


class ReviewCreate(BaseModel):
    """A reviewer's verdict.

    ``approved`` accepts the computed decision as it is. ``overridden`` needs a ``reason`` and
    the ``decision`` taken instead. A correction of an earlier review names it in
    ``supersedes_id`` (reviews are never changed).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"outcome": "approved"},
                {
                    "outcome": "overridden",
                    "reason": "Patient cannot tolerate compression; ABC trial instead.",
                    "decision": "active_breathing_control",
                },
            ]
        },
    )

    outcome: ReviewOutcomeValues
    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Why (required to override; optional to approve).",
    )
    decision: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Override only: the decision taken instead (a motion-management value for "
        "an assessment; reposition, no_repositioning or repeat_cbct for a registration).",
    )
    supersedes_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The standing review this one corrects.",
    )
    couch_correction_iec_support_mm: tuple[CorrectionMm, CorrectionMm, CorrectionMm] | None = Field(
        default=None,
        description="Registration override with decision `reposition` only: the couch "
        "correction applied instead of the computed one, IEC 61217 patient-support axes "
        "(x lateral, y longitudinal, z vertical), mm.",
    )


class ReviewPublic(BaseModel):
    """A stored review. ``standing`` is false once a later review supersedes it."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    id: str
    subject_type: ReviewSubjectValues
    subject_id: str
    session_id: str
    outcome: ReviewOutcomeValues
    reason: str | None
    decision: str | None = Field(description="The decision that stands after this review.")
    supersedes_id: str | None
    couch_correction_iec_support_mm: list[float] | None = Field(
        default=None, description="The reviewer's couch correction, if they edited it, mm."
    )
    standing: bool = True
    reviewer_role: RoleValues
    created_by: str
    created_at: datetime


class ReviewsPublic(BaseModel):
    """The reviews of one result, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_EXAMPLE], "count": 1}]})

    data: list[ReviewPublic]
    count: int
