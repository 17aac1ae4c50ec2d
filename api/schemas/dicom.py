"""What the DICOM receiver stored: a session's filed instances and the quarantine."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from api.dicom.objects import (
    ObjectKindValues,
    ProcessingStatusValues,
    QuarantineReasonValues,
    SourceRoleValues,
)

__all__ = [
    "DicomInstancePublic",
    "DicomInstancesPublic",
    "DicomQuarantineItemPublic",
    "DicomQuarantinePublic",
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
_HELD: JsonDict = {
    **_RECEIVED,
    "patient_id_in_file": "MRN-0042",
    "patient_name_in_file": "DOE^JANE",
    "patient_id": None,
    "reason_code": "unknown_patient",
    "reason": "no patient has the instance's Patient ID",
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


class DicomQuarantineItemPublic(_Received):
    """An instance held back from every session, with the reason."""

    model_config = ConfigDict(json_schema_extra={"examples": [_HELD]})

    patient_id_in_file: str = Field(description="The Patient ID the instance carried.")
    patient_name_in_file: str = Field(description="The Patient Name the instance carried.")
    patient_id: str | None = Field(description="The patient that Patient ID named, if any.")
    reason_code: QuarantineReasonValues
    reason: str


class DicomQuarantinePublic(BaseModel):
    """A page of the quarantine, newest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_HELD], "count": 1}]})

    data: list[DicomQuarantineItemPublic]
    count: int
