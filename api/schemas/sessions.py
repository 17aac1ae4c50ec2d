"""Treatment sessions: a simulation day or a treatment fraction."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.config import JsonDict

from api.enums import SessionKindValues
from igrt.frame_of_reference import PatientPositionValues

__all__ = ["DEFAULT_PROTOCOL_VERSION", "SessionCreate", "SessionPublic", "SessionsPublic"]

DEFAULT_PROTOCOL_VERSION = "seed-lee2009-liver-sbrt-2026.5"
"""The default motion protocol's version (``igrt.protocol.DEFAULT_PROTOCOL_VERSION``)."""

_EXAMPLE: JsonDict = {
    "id": "7d3c1b2a-9e8f-4a6b-8c5d-1e2f3a4b5c6d",
    "patient_id": "0b9f5e0a-3c1d-4f8e-9a57-2f1d6c0e8b41",
    "kind": "simulation",
    "fraction_number": None,
    "patient_position": "HFS",
    "protocol_version": DEFAULT_PROTOCOL_VERSION,
    "created_at": "2026-11-28T09:20:00Z",
}


class SessionCreate(BaseModel):
    """A new session of a patient."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "simulation", "patient_position": "HFS"},
                {
                    "kind": "fraction",
                    "fraction_number": 1,
                    "patient_position": "HFS",
                    "protocol_version": DEFAULT_PROTOCOL_VERSION,
                },
            ]
        },
    )

    kind: SessionKindValues = Field(description="Simulation day or treatment fraction.")
    fraction_number: int | None = Field(
        default=None,
        ge=1,
        le=50,
        validate_default=True,
        description="Required for a fraction (1 = first); absent for a simulation day.",
    )
    patient_position: PatientPositionValues = Field(
        default=PatientPositionValues.HFS, description="DICOM Patient Position on the couch."
    )
    protocol_version: str = Field(
        default=DEFAULT_PROTOCOL_VERSION,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Version of the motion protocol the session follows.",
    )

    @field_validator("fraction_number")
    @classmethod
    def _fraction_number_matches_kind(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if kind is SessionKindValues.FRACTION and value is None:
            raise ValueError("a fraction needs its fraction_number (1 or more)")
        if kind is SessionKindValues.SIMULATION and value is not None:
            raise ValueError("a simulation day has no fraction_number")
        return value


class SessionPublic(BaseModel):
    """A session as the API returns it."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    id: str
    patient_id: str
    kind: SessionKindValues
    fraction_number: int | None
    patient_position: PatientPositionValues
    protocol_version: str
    created_at: datetime


class SessionsPublic(BaseModel):
    """A page of sessions."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_EXAMPLE], "count": 1}]})

    data: list[SessionPublic]
    count: int
