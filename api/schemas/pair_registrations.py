"""kV/MV pair registrations (2D/2D to DRRs): the request and the stored result."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

__all__ = [
    "PairPlanIn",
    "PairRegistrationCreate",
    "PairRegistrationPublic",
    "PairRegistrationsPublic",
    "PairViewIn",
]

_Vector = tuple[float, float, float]
_RT_VIEW: JsonDict = {
    "rt_image_instance_id": "0b8e1f52-6c1d-4d8e-9a57-2f0d7c9b1e34",
    "modality": "kv",
    "intensity": "raw",
    "kv_source_deg": 270.0,
}
_FRAME_VIEW: JsonDict = {
    "upload_id": "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "frame_index": 0,
    "modality": "kv",
}


class PairViewIn(BaseModel):
    """One view: a received RT Image, or a frame of a fluoroscopy upload of this session."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [_RT_VIEW]}
    )

    rt_image_instance_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="A received RT Image instance."
    )
    upload_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="A fluoroscopy upload of this session (its frame carries its geometry).",
    )
    frame_index: int = Field(default=0, ge=0, le=100_000, description="The upload's frame.")
    modality: Literal["kv", "mv"] = Field(
        default="kv", description="The beam that made the image (a portal image is mv)."
    )
    intensity: Literal["raw", "line_integral"] = Field(
        default="raw", description="What an RT Image's pixels mean (RT Images do not say)."
    )
    kv_source_deg: float | None = Field(
        default=None,
        ge=-360.0,
        le=360.0,
        description="kV source angle of an RT Image, degrees IEC 61217 (the file states only "
        "the treatment gantry angle); the file's when absent.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> PairViewIn:
        if (self.rt_image_instance_id is None) == (self.upload_id is None):
            raise ValueError("give exactly one of rt_image_instance_id and upload_id")
        if self.upload_id is not None and self.kv_source_deg is not None:
            raise ValueError("kv_source_deg is for RT Images (an upload's frame has its angle)")
        return self


class PairPlanIn(BaseModel):
    """The isocentre from a received RT Plan (``beam`` chooses among several)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"rt_plan_instance_id": "1c9f2a63-7d2e-4e9f-8b68-3a1e8d0c2f45"}]
        },
    )

    rt_plan_instance_id: str = Field(min_length=1, max_length=64)
    rt_struct_instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The RT Structure Set the plan references, when the plan states no Frame "
        "of Reference of its own.",
    )
    beam: str | None = Field(default=None, min_length=1, max_length=64)


class PairRegistrationCreate(BaseModel):
    """Register two (to four) projection images to DRRs of a planning CT of the patient."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "planning_ct_upload_id": "4b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
                    "views": [_RT_VIEW, {**_RT_VIEW, "kv_source_deg": 0.0}],
                    "isocentre_lps_mm": [-70.0, -10.0, 10.0],
                },
                {
                    "planning_ct_upload_id": "4b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
                    "views": [_FRAME_VIEW, {**_FRAME_VIEW, "frame_index": 90}],
                    "plan": {"rt_plan_instance_id": "1c9f2a63-7d2e-4e9f-8b68-3a1e8d0c2f45"},
                },
            ]
        },
    )

    planning_ct_upload_id: str = Field(
        min_length=1, max_length=64, description="A planning CT volume upload of the patient."
    )
    views: list[PairViewIn] = Field(min_length=2, max_length=4)
    isocentre_lps_mm: _Vector | None = Field(
        default=None, description="Treatment isocentre, LPS mm (or `plan`)."
    )
    plan: PairPlanIn | None = Field(default=None, description="Isocentre from the RT Plan.")

    @model_validator(mode="after")
    def _isocentre(self) -> PairRegistrationCreate:
        if (self.isocentre_lps_mm is None) == (self.plan is None):
            raise ValueError("give the isocentre with isocentre_lps_mm or plan (one of them)")
        if self.isocentre_lps_mm is not None and any(abs(v) > 5000 for v in self.isocentre_lps_mm):
            raise ValueError("isocentre_lps_mm must lie within 5 m of the origin")
        return self


_PAIR: JsonDict = {
    "id": "8f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2918",
    "session_id": "7d3c1b2a-9e8f-4a6b-8c7d-1e2f3a4b5c6d",
    "planning_ct_upload_id": "4b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
    "request": {"views": [_RT_VIEW, {**_RT_VIEW, "kv_source_deg": 0.0}], "plan": None},
    "quality": "good",
    "repositioning_required": True,
    "result": {
        "kind": "pair_2d",
        "isocentre_source": "given",
        "quality": "good",
        "couch_correction_iec_support_mm": [3.2, -7.9, -4.7],
    },
    "software_version": "0.1.0",
    "created_at": "2026-12-07T09:30:00Z",
}


class PairRegistrationPublic(BaseModel):
    """A pair registration and its result: the same document as ``igrt register-pair``.

    ``result`` holds the quality and reasons, anatomy displacement and couch correction in LPS
    and IEC 61217 patient-support axes, the repositioning flag, the uncertainty, the per-view
    matches and where the isocentre came from.
    """

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_PAIR]})

    id: str
    session_id: str
    planning_ct_upload_id: str
    request: dict[str, Any]
    quality: str = Field(description="good, questionable or failed.")
    repositioning_required: bool | None
    result: dict[str, Any]
    software_version: str
    created_at: datetime


class PairRegistrationsPublic(BaseModel):
    """A session's pair registrations, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_PAIR], "count": 1}]})

    data: list[PairRegistrationPublic]
    count: int
