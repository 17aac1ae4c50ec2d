"""Registration jobs: the request, the job resource and the result summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from api.enums import RegistrationStatusValues

__all__ = [
    "CLIP_BOX_MAX_SIDE_MM",
    "ClipBoxLps",
    "PlanFocusRequest",
    "RegistrationCreate",
    "RegistrationInterruption",
    "RegistrationPublic",
    "RegistrationResultPublic",
    "RegistrationsPublic",
]

_Vector = tuple[float, float, float]

CLIP_BOX_MAX_SIDE_MM = 600.0
"""Longest side of a clip box, mm. A CBCT's reconstructed field of view is at most about
500 mm across (a large-FOV, half-fan scan) and a planning CT's about 600 mm, so a longer box
can only be a mistake (a unit error: metres or cm typed as mm) that would spend minutes
registering outside any image."""


class ClipBoxLps(BaseModel):
    """An axis-aligned box in DICOM patient coordinates (LPS), mm.

    Finite corners within 5 m of the origin; every side longer than 0 and at most
    :data:`CLIP_BOX_MAX_SIDE_MM` (600 mm).
    """

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {"lower_lps_mm": [-120.0, -60.0, -20.0], "upper_lps_mm": [-20.0, 40.0, 60.0]}
            ]
        },
    )

    lower_lps_mm: _Vector = Field(description="Lower corner (x, y, z), LPS mm.")
    upper_lps_mm: _Vector = Field(description="Upper corner (x, y, z), LPS mm.")

    @model_validator(mode="after")
    def _ordered(self) -> ClipBoxLps:
        for axis, (low, high) in enumerate(zip(self.lower_lps_mm, self.upper_lps_mm, strict=True)):
            if not low < high:
                raise ValueError(f"lower_lps_mm[{axis}] must be less than upper_lps_mm[{axis}]")
            if high - low > CLIP_BOX_MAX_SIDE_MM:
                raise ValueError(
                    f"side {axis} of the clip box is {high - low:g} mm; at most "
                    f"{CLIP_BOX_MAX_SIDE_MM:g} mm (a CBCT is at most about 500 mm across)"
                )
            if abs(low) > 5000 or abs(high) > 5000:
                raise ValueError("clip box corners must lie within 5 m of the origin")
        return self


class PlanFocusRequest(BaseModel):
    """Take the isocentre from a received RT Plan and the clip box from an RT Structure Set ROI.

    As ``igrt register --plan --structures --roi``: the planning CT, the plan and the ROI must
    share one Frame of Reference (422 otherwise), several distinct isocentres need ``beam``,
    and the ROI's box (plus ``roi_margin_mm``) must contain the isocentre. Without ``roi`` the
    clip box is the automatic one around the dome, which must then contain the isocentre. The
    ids are those of ``GET /sessions/{id}/dicom-instances`` (any session of the patient).
    """

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "rt_plan_instance_id": "0b8e1f52-6c1d-4d8e-9a57-2f0d7c9b1e34",
                    "rt_struct_instance_id": "1c9f2a63-7d2e-4e9f-8b68-3a1e8d0c2f45",
                    "roi": "Liver",
                    "roi_margin_mm": 0.0,
                }
            ]
        },
    )

    rt_plan_instance_id: str = Field(
        min_length=1, max_length=64, description="A received RT Plan instance of the patient."
    )
    rt_struct_instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="A received RT Structure Set instance of the patient (needed for `roi`).",
    )
    roi: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="ROI whose extent is the clip box (e.g. Liver, or GTV with a margin).",
    )
    roi_margin_mm: float = Field(
        default=0.0, ge=0.0, le=100.0, description="Margin around the ROI's extent, mm."
    )
    beam: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Beam number or name whose isocentre to use when the plan has several.",
    )

    @model_validator(mode="after")
    def _roi_with_structures(self) -> PlanFocusRequest:
        if (self.roi is None) != (self.rt_struct_instance_id is None):
            raise ValueError("roi and rt_struct_instance_id go together")
        if self.roi is None and self.roi_margin_mm:
            raise ValueError("roi_margin_mm needs an roi")
        return self


class RegistrationCreate(BaseModel):
    """Register a CBCT of this session to a planning CT of the same patient."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "planning_ct_upload_id": "4b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
                    "cbct_upload_id": "5c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
                    "degrees_of_freedom": 3,
                },
                {
                    "planning_ct_upload_id": "4b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
                    "cbct_upload_id": "5c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
                    "degrees_of_freedom": 6,
                    "clip_box_lps_mm": {
                        "lower_lps_mm": [-120.0, -60.0, -20.0],
                        "upper_lps_mm": [-20.0, 40.0, 60.0],
                    },
                    "isocentre_lps_mm": [-70.0, -10.0, 10.0],
                },
                {
                    "planning_ct_upload_id": "4b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
                    "cbct_upload_id": "5c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
                    "plan": {
                        "rt_plan_instance_id": "0b8e1f52-6c1d-4d8e-9a57-2f0d7c9b1e34",
                        "rt_struct_instance_id": "1c9f2a63-7d2e-4e9f-8b68-3a1e8d0c2f45",
                        "roi": "Liver",
                    },
                },
            ]
        },
    )

    planning_ct_upload_id: str = Field(
        min_length=1, max_length=64, description="A planning CT volume upload of the patient."
    )
    cbct_upload_id: str = Field(
        min_length=1, max_length=64, description="A CBCT volume upload of this session."
    )
    degrees_of_freedom: Literal[3, 6] = Field(
        default=6,
        description=(
            "What the couch corrects: 6 (translations and rotations) or 3 (translations only). "
            "The fit is always 6 DOF; with 3 the translation is the one right at the isocentre "
            "and a rotation beyond the protocol's tolerance makes the result QUESTIONABLE."
        ),
    )
    clip_box_lps_mm: ClipBoxLps | None = Field(
        default=None, description="Region aligned, LPS mm; automatic around the right dome."
    )
    isocentre_lps_mm: _Vector | None = Field(
        default=None,
        description="Treatment isocentre (reference point), planning-CT LPS mm; the CBCT centre "
        "by default for a CBCT in the planning CT's Frame of Reference. A CBCT in another frame "
        "(a linac's room frame) is placed on the planning CT by it, so it (or `plan`) is then "
        "required (422 otherwise).",
    )
    cbct_isocentre_lps_mm: _Vector | None = Field(
        default=None,
        description="The machine isocentre in the CBCT's own LPS mm, for a CBCT in another "
        "Frame of Reference than the planning CT; (0, 0, 0), the origin of a reconstruction "
        "centred on the isocentre, by default. The result's `frames` records what was used.",
    )

    plan: PlanFocusRequest | None = Field(
        default=None,
        description="Isocentre and clip box from the treatment plan (not with "
        "`clip_box_lps_mm` or `isocentre_lps_mm`).",
    )

    @model_validator(mode="after")
    def _isocentre_bounded(self) -> RegistrationCreate:
        if self.isocentre_lps_mm is not None and any(abs(v) > 5000 for v in self.isocentre_lps_mm):
            raise ValueError("isocentre_lps_mm must lie within 5 m of the origin")
        if self.cbct_isocentre_lps_mm is not None and any(
            abs(v) > 5000 for v in self.cbct_isocentre_lps_mm
        ):
            raise ValueError("cbct_isocentre_lps_mm must lie within 5 m of the origin")
        if self.plan is not None and (
            self.clip_box_lps_mm is not None or self.isocentre_lps_mm is not None
        ):
            raise ValueError(
                "give the isocentre and clip box either from the plan or typed, not both"
            )
        return self


_JOB_EXAMPLE: JsonDict = {
    "id": "6d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a",
    "session_id": "7d3c1b2a-9e8f-4a6b-8c5d-1e2f3a4b5c6d",
    "planning_ct_upload_id": "4b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
    "cbct_upload_id": "5c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
    "degrees_of_freedom": 3,
    "clip_box_lps_mm": None,
    "isocentre_lps_mm": None,
    "cbct_isocentre_lps_mm": None,
    "plan_request": None,
    "status": "completed",
    "reason": None,
    "quality": "good",
    "repositioning_required": True,
    "software_version": "0.1.0",
    "created_at": "2026-11-28T09:30:00Z",
    "started_at": "2026-11-28T09:30:00Z",
    "finished_at": "2026-11-28T09:30:01Z",
    "attempts": 1,
    "interruptions": [],
    "links": {
        "self": "/api/v1/registrations/6d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a",
        "result": "/api/v1/registrations/6d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a/result",
    },
}


class RegistrationInterruption(BaseModel):
    """One run of a registration job that ended because its worker died under it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "attempt": 1,
                    "at": "2026-11-28T09:30:31Z",
                    "reason": "its worker process ended while it ran",
                }
            ]
        }
    )

    attempt: int = Field(description="Which run (1: the first).")
    at: datetime = Field(description="When the interruption was noticed.")
    reason: str = Field(description="How it was seen: the process ended, or its lease expired.")


class RegistrationPublic(BaseModel):
    """A registration job: ``queued``, ``running``, ``completed`` (with a result) or ``failed``.

    ``links`` names the result, overlay and DICOM REG addresses once they exist.
    """

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_JOB_EXAMPLE]})

    id: str
    session_id: str
    planning_ct_upload_id: str
    cbct_upload_id: str
    degrees_of_freedom: int
    clip_box_lps_mm: ClipBoxLps | None
    isocentre_lps_mm: _Vector | None
    cbct_isocentre_lps_mm: _Vector | None = None
    plan_request: dict[str, Any] | None = Field(
        default=None,
        description="The plan request (`plan` of the creation) with the focus it gave when "
        "checked (`checked_focus`: isocentre and sources); the result's `plan_focus` is final.",
    )
    status: RegistrationStatusValues
    reason: str | None = Field(description="Why it failed, or the quality's reasons.")
    quality: str | None = Field(description="good, questionable or failed (when completed).")
    repositioning_required: bool | None = Field(
        description="Whether the displacement exceeds the protocol's threshold on an IEC axis."
    )
    software_version: str
    created_at: datetime
    started_at: datetime | None = Field(description="When its latest run started.")
    finished_at: datetime | None
    attempts: int = Field(
        default=0,
        description="Runs started (a run handed back by a stopping worker does not count). A "
        "run whose worker died is retried up to the service's limit "
        "(IGRT_REGISTRATION_MAX_ATTEMPTS runs in all), then the job fails; a run past the time "
        "limit is not retried.",
    )
    interruptions: list[RegistrationInterruption] = Field(
        default_factory=list, description="The runs whose worker died under them, oldest first."
    )
    links: dict[str, str] = Field(default_factory=dict)


class RegistrationsPublic(BaseModel):
    """The registration jobs of a session, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [_JOB_EXAMPLE], "count": 1}]}
    )

    data: list[RegistrationPublic]
    count: int


_RESULT_EXAMPLE: JsonDict = {
    "registration_id": "6d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a",
    "quality": "good",
    "patient_position": "HFS",
    "anatomy_displacement_lps_mm": [3.2, -4.7, 7.9],
    "anatomy_displacement_iec_support_mm": [-3.2, 7.9, 4.7],
    "couch_correction_lps_mm": [-3.2, 4.7, -7.9],
    "couch_correction_iec_support_mm": [3.2, -7.9, -4.7],
    "repositioning": {
        "required": True,
        "threshold_mm": 3.0,
        "exceeding_axes": ["lateral", "longitudinal", "vertical"],
        "per_axis": {"lateral": True, "longitudinal": True, "vertical": True},
    },
    "uncertainty_mm": 0.4,
    "dome_check": {"status": "agrees"},
    "document": {"quality": "good", "reasons": []},
}


class RegistrationResultPublic(BaseModel):
    """The result of a completed registration.

    Displacements are of the anatomy relative to the plan; the couch correction is its inverse
    (move the couch by it). ``*_lps_mm`` are DICOM patient axes; ``*_iec_support_mm`` are IEC
    61217 patient-support axes (X lateral, Y longitudinal, Z vertical) for the session's patient
    position. ``document`` is the engine's full result (``RigidRegistrationResult.to_dict``).
    """

    model_config = ConfigDict(json_schema_extra={"examples": [_RESULT_EXAMPLE]})

    registration_id: str
    quality: str
    patient_position: str
    anatomy_displacement_lps_mm: list[float] | None
    anatomy_displacement_iec_support_mm: list[float] | None
    couch_correction_lps_mm: list[float] | None
    couch_correction_iec_support_mm: list[float] | None
    repositioning: dict[str, Any] | None
    uncertainty_mm: float | None
    dome_check: dict[str, Any]
    document: dict[str, Any]
