"""Patients."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

__all__ = ["PatientCreate", "PatientPublic", "PatientsPublic"]

_EXAMPLE: JsonDict = {
    "id": "0b9f5e0a-3c1d-4f8e-9a57-2f1d6c0e8b41",
    "external_id": "MRN-0012345",
    "name": "Doe^Jane",
    "is_demo": False,
    "created_at": "2026-11-28T09:15:00Z",
}


class PatientCreate(BaseModel):
    """A new patient. ``external_id`` is the hospital's patient id (never logged)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"external_id": "MRN-0012345", "name": "Doe^Jane"}]},
    )

    external_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._^-]*$",
        description="The hospital's patient id (DICOM Patient ID); unique.",
    )
    name: str | None = Field(
        default=None, min_length=1, max_length=200, description="DICOM-style name, optional."
    )


class PatientPublic(BaseModel):
    """A patient as the API returns it."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    id: str
    external_id: str
    name: str | None
    is_demo: bool = Field(description="Made by the service's demo data on first start.")
    created_at: datetime


class PatientsPublic(BaseModel):
    """A page of patients."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_EXAMPLE], "count": 1}]})

    data: list[PatientPublic]
    count: int = Field(description="Total number of patients (all pages).")
