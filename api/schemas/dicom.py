"""What the DICOM receiver stored: a session's filed instances and the quarantine."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from api.dicom.objects import (
    ObjectKindValues,
    ProcessingStatusValues,
    QuarantineActionValues,
    QuarantineReasonValues,
    SourceRoleValues,
)

__all__ = [
    "DicomInstancePublic",
    "DicomInstancesPublic",
    "DicomQuarantineItemPublic",
    "DicomQuarantinePublic",
    "QuarantineDecisionPublic",
    "QuarantineDiscard",
    "QuarantineRelease",
    "QuarantineResolutionPublic",
]

_RECEIVED: JsonDict = {
    "id": "0b8e1f52-6c1d-4d8e-9a57-2f0d7c9b1e34",
    "sop_instance_uid": "1.2.826.0.1.3680043.8.498.1",
    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
    "transfer_syntax_uid": "1.2.840.10008.1.2.4.90",
    "kind": "ct",
    "modality": "CT",
    "study_instance_uid": "1.2.826.0.1.3680043.8.498.2",
    "series_instance_uid": "1.2.826.0.1.3680043.8.498.3",
    "frame_of_reference_uid": "1.2.826.0.1.3680043.8.498.4",
    "calling_ae": "CTSIM",
    "source_role": "planning",
    "size_bytes": 183402,
    "sha256": "9f2c" + "0" * 60,
    "received_at": "2026-12-07T08:15:00Z",
}
_INSTANCE: JsonDict = {
    **_RECEIVED,
    "session_id": "7d3c1b2a-9e8f-4a6b-8c7d-1e2f3a4b5c6d",
    "n_frames": 1,
    "processing_status": "done",
    "processing_reason": None,
    "upload_id": None,
    "volume_upload_id": "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "assessment_id": None,
}
_RESOLUTION: JsonDict = {
    "id": "5e2a9c41-0b7d-4f3e-8a16-9c4d2b7e1f08",
    "quarantine_item_id": "0b8e1f52-6c1d-4d8e-9a57-2f0d7c9b1e34",
    "action": "released",
    "reason": "patient registered after the simulation CT arrived; images checked",
    "session_id": "7d3c1b2a-9e8f-4a6b-8c7d-1e2f3a4b5c6d",
    "instance_id": "2f7c0d93-5a1e-4b6f-9d27-8e3a1c5b0f46",
    "resolved_by": "c61755cf-e37f-48ec-83b5-0c6202992af7",
    "resolved_at": "2026-12-07T08:40:00Z",
}
_HELD: JsonDict = {
    **_RECEIVED,
    "patient_id_in_file": "MRN-0042",
    "patient_name_in_file": "DOE^JANE",
    "patient_id": None,
    "reason_code": "unknown_patient",
    "reason": "no patient has the instance's Patient ID",
    "resolution": None,
}


class _Received(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    kind: ObjectKindValues
    modality: str
    study_instance_uid: str | None
    series_instance_uid: str | None
    frame_of_reference_uid: str | None
    calling_ae: str = Field(description="The sender's AE title.")
    source_role: SourceRoleValues = Field(description="The sender's configured role.")
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the stored Part-10 file.")
    received_at: datetime


class DicomInstancePublic(_Received):
    """An instance filed to a session, and what was made of it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_INSTANCE]})

    session_id: str
    n_frames: int
    processing_status: ProcessingStatusValues
    processing_reason: str | None
    upload_id: str | None = Field(description="The fluoroscopy upload made of it.")
    volume_upload_id: str | None = Field(description="The volume upload its series became.")
    assessment_id: str | None = Field(description="The motion assessment of its upload.")


class DicomInstancesPublic(BaseModel):
    """A session's received instances, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_INSTANCE], "count": 1}]})

    data: list[DicomInstancePublic]
    count: int


class QuarantineResolutionPublic(BaseModel):
    """A physicist's decision on one quarantined instance (immutable)."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_RESOLUTION]})

    id: str
    quarantine_item_id: str
    action: QuarantineActionValues
    reason: str
    session_id: str | None = Field(description="The session a released instance was filed to.")
    instance_id: str | None = Field(description="The filed instance a release made.")
    resolved_by: str = Field(description="The token id of the physicist.")
    resolved_at: datetime


class DicomQuarantineItemPublic(_Received):
    """An instance held back from every session, with the reason."""

    model_config = ConfigDict(json_schema_extra={"examples": [_HELD]})

    patient_id_in_file: str = Field(description="The Patient ID the instance carried.")
    patient_name_in_file: str = Field(description="The Patient Name the instance carried.")
    patient_id: str | None = Field(description="The patient that Patient ID named, if any.")
    reason_code: QuarantineReasonValues
    reason: str
    resolution: QuarantineResolutionPublic | None = Field(
        default=None, description="Released or discarded, and by whom; null while undecided."
    )


class DicomQuarantinePublic(BaseModel):
    """A page of the quarantine, newest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_HELD], "count": 1}]})

    data: list[DicomQuarantineItemPublic]
    count: int


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1, max_length=2000, description="Why (what was checked): kept in the record."
    )

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a reason is required")
        return value.strip()


class QuarantineRelease(_Decision):
    """File a quarantined instance's series to a session of the patient its Patient ID names."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "session_id": "7d3c1b2a-9e8f-4a6b-8c7d-1e2f3a4b5c6d",
                    "reason": "patient registered after the simulation CT arrived",
                }
            ]
        }
    )

    session_id: str = Field(min_length=1, max_length=64, description="The session to file to.")


class QuarantineDiscard(_Decision):
    """Attach a quarantined instance's series to nothing, for good."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "test images from the service engineer"}]}
    )


class QuarantineDecisionPublic(BaseModel):
    """What one decision did: one resolution per instance of the series."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "action": "released",
                    "session_id": "7d3c1b2a-9e8f-4a6b-8c7d-1e2f3a4b5c6d",
                    "data": [_RESOLUTION],
                    "count": 1,
                }
            ]
        }
    )

    action: QuarantineActionValues
    session_id: str | None
    data: list[QuarantineResolutionPublic]
    count: int
