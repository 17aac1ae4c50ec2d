"""Breathing-motion assessments of a fluoroscopy upload."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from api.enums import AssessmentStatusValues

__all__ = [
    "AssessmentContext",
    "DomeHintCreate",
    "DomeHintPublic",
    "DomeObservationPublic",
    "MotionAssessmentCreate",
    "MotionAssessmentPublic",
    "MotionAssessmentsPublic",
]

AssessmentContext = Literal["free_breathing", "abdominal_compression", "breath_hold_trial"]
"""Under which conditions the fluoroscopy was recorded (``igrt.decision``'s contexts)."""

_OBSERVATION: JsonDict = {
    "frame_index": 0,
    "time_s": 0.0,
    "status": "tracked",
    "confidence": 0.97,
    "apex_column": 101.4,
    "apex_row": 118.2,
    "apex_u_mm": -43.8,
    "apex_v_mm": -15.7,
    "si_isocentre_mm": 10.2,
    "gantry_deg": 0.0,
    "dome_curve_px": [[81.4, 124.9], [101.4, 118.2], [121.4, 124.9]],
}
_EXAMPLE: JsonDict = {
    "id": "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "session_id": "7d3c1b2a-9e8f-4a6b-8c5d-1e2f3a4b5c6d",
    "upload_id": "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "status": "completed",
    "reason": None,
    "context": "free_breathing",
    "protocol_version": "seed-lee2009-liver-sbrt-2026.5",
    "tracked_fraction": 1.0,
    "recommendation": "abdominal_compression",
    "track": [_OBSERVATION],
    "result": {
        "decision": {
            "recommendation": "abdominal_compression",
            "reason": "abc_not_assessed",
            "rationale": ["Median peak-to-peak superior-inferior motion: 11.2 mm ..."],
        },
        "analysis": {"excursion_median_mm": 11.2, "n_cycles": 5},
    },
    "software_version": "0.1.0",
    "created_at": "2026-11-28T09:30:00Z",
    "dome_hint": None,
    "rerun_of": None,
}


class BreathHoldEvidenceIn(BaseModel):
    """Breath holds measured elsewhere: an ABC device session or a spirometer log."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "source": "abc_session",
                    "n_holds": 3,
                    "shortest_hold_s": 22.0,
                    "largest_hold_drift_mm": 1.2,
                    "hold_reproducibility_mm": 1.5,
                }
            ]
        },
    )

    source: Literal["abc_session", "spirometer_log"] = Field(
        description="Where the holds were measured."
    )
    n_holds: int = Field(ge=0, le=100)
    shortest_hold_s: float | None = Field(default=None, ge=0, le=600, allow_inf_nan=False)
    largest_hold_drift_mm: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    hold_reproducibility_mm: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)


class DomeHintCreate(BaseModel):
    """Where a person sees the diaphragm dome's apex on the upload's first frame."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"column_px": 101.0, "row_px": 118.0}]}
    )

    column_px: float = Field(
        ge=0, allow_inf_nan=False, description="Column of the first frame, from 0 at the left."
    )
    row_px: float = Field(
        ge=0, allow_inf_nan=False, description="Row of the first frame, from 0 at the top."
    )


class DomeHintPublic(DomeHintCreate):
    """The hint an assessment's tracking started from, and who gave it."""

    model_config = ConfigDict(extra="ignore")

    given_by: str | None = Field(description="The giver's token name when it was given.")
    given_by_token_id: str | None


class MotionAssessmentCreate(BaseModel):
    """Assess the breathing motion on one of the session's fluoroscopy uploads.

    With ``dome_hint`` (therapists and physicists only: a console cannot give one) the tracker
    starts at that pixel of the first frame instead of at the automatic detection; it must lie
    on the frame. ``rerun_of`` names the assessment of the same upload this one repeats (that one
    stays as it is).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"upload_id": "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "context": "free_breathing"},
                {
                    "upload_id": "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                    "context": "free_breathing",
                    "dome_hint": {"column_px": 101.0, "row_px": 118.0},
                    "rerun_of": "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                },
            ]
        },
    )

    upload_id: str = Field(min_length=1, max_length=64, description="A fluoroscopy upload.")
    context: AssessmentContext = Field(
        default="free_breathing", description="How the fluoroscopy was recorded."
    )
    hold_evidence: BreathHoldEvidenceIn | None = Field(
        default=None,
        description="Breath holds from an ABC device session or a spirometer log; used for the "
        "ABC suitability instead of holds in the fluoroscopy.",
    )
    dome_hint: DomeHintCreate | None = Field(
        default=None, description="Start tracking at this pixel of the first frame."
    )
    rerun_of: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The assessment of the same upload this one repeats.",
    )


class DomeObservationPublic(BaseModel):
    """The diaphragm dome on one frame (panel pixels and mm; SI at the isocentre, superior +).

    Values are null when the frame's status is ``lost``.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [_OBSERVATION]})

    frame_index: int
    time_s: float
    status: Literal["tracked", "low_confidence", "needs_confirmation", "lost"]
    confidence: float = Field(ge=0, le=1)
    apex_column: float | None
    apex_row: float | None
    apex_u_mm: float | None
    apex_v_mm: float | None
    si_isocentre_mm: float | None = Field(
        description="Dome apex superior-inferior position at the isocentre plane, mm."
    )
    gantry_deg: float
    dome_curve_px: list[tuple[float, float]] = Field(
        default_factory=list,
        description="Points `[column, row]` of the tracked dome edge on the panel, for display "
        "(empty when lost; absent from assessments stored before it was kept).",
    )


class MotionAssessmentPublic(BaseModel):
    """A stored assessment.

    ``recommendation`` is set only when ``status`` is ``completed``; ``result`` then holds the
    analysis and the decision documents of ``igrt.breathing_analysis`` and ``igrt.decision``
    (units in every key, rationale in sentences).
    """

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    id: str
    session_id: str
    upload_id: str
    status: AssessmentStatusValues
    reason: str | None = Field(description="Why the assessment stopped short of a decision.")
    context: AssessmentContext
    protocol_version: str
    tracked_fraction: float = Field(ge=0, le=1, description="Share of frames tracked well.")
    recommendation: str | None
    track: list[DomeObservationPublic]
    result: dict[str, Any] | None
    software_version: str = Field(description="igrt version that computed it.")
    created_at: datetime
    dome_hint: DomeHintPublic | None = Field(
        description="The hint tracking started from; null when the dome was found automatically."
    )
    rerun_of: str | None = Field(description="The assessment this one repeats, if any.")


class MotionAssessmentsPublic(BaseModel):
    """A session's assessments, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_EXAMPLE], "count": 1}]})

    data: list[MotionAssessmentPublic]
    count: int
