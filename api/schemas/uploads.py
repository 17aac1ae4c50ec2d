"""Fluoroscopy uploads: the form that comes with the file, and the stored upload."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from api.enums import GeometrySourceValues, UploadFormatValues, UploadKindValues
from igrt.sequence import IntensityValues

__all__ = ["FluoroscopyGeometry", "FluoroscopyUploadForm", "UploadPublic", "UploadsPublic"]


_GEOMETRY_EXAMPLE: JsonDict = {
    "sad_mm": 1000.0,
    "sdd_mm": 1536.0,
    "pixel_pitch_mm": [0.8, 0.8],
    "detector_shape": [512, 512],
    "pixel_at_isocentre_mm": [0.5208, 0.5208],
    "timestamps_s": [0.0, 0.2, 0.4],
    "gantry_deg": [0.0, 0.0, 0.0],
    "detector_offset_mm": [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
}


class FluoroscopyUploadForm(BaseModel):
    """Form fields sent with a fluoroscopy file (``multipart/form-data``, file part ``file``).

    Geometry and timing are needed only when the file lacks them: always for ``raw`` and ``zip``,
    and for DICOM/MHA files from other systems. Give either ``geometry_preset`` (with
    ``binning``) or all of ``sad_mm``, ``sdd_mm``, ``pixel_pitch_u_mm`` and
    ``pixel_pitch_v_mm``; the panel size always comes from the frames. Every number must be
    finite.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"format": "dicom"},
                {
                    "format": "raw",
                    "n_frames": 30,
                    "rows": 512,
                    "columns": 512,
                    "geometry_preset": "xvi",
                    "binning": 2,
                    "fps": 5.0,
                    "intensity": "raw",
                },
                {
                    "format": "zip",
                    "sad_mm": 1000.0,
                    "sdd_mm": 1536.0,
                    "pixel_pitch_u_mm": 0.8,
                    "pixel_pitch_v_mm": 0.8,
                    "gantry_deg": 0.0,
                    "fps": 7.5,
                },
            ]
        }
    )

    format: UploadFormatValues = Field(description="File format of the part named ``file``.")
    geometry_preset: Literal["xvi", "obi"] | None = Field(
        default=None, description="Elekta XVI or Varian OBI kV imager geometry."
    )
    binning: int = Field(default=1, description="Panel binning of the preset: 1, 2 or 4.")
    sad_mm: float | None = Field(default=None, gt=0, le=5000, allow_inf_nan=False)
    sdd_mm: float | None = Field(default=None, gt=0, le=5000, allow_inf_nan=False)
    pixel_pitch_u_mm: float | None = Field(default=None, gt=0, le=10, allow_inf_nan=False)
    pixel_pitch_v_mm: float | None = Field(default=None, gt=0, le=10, allow_inf_nan=False)
    detector_offset_u_mm: float = Field(default=0.0, ge=-500, le=500, allow_inf_nan=False)
    detector_offset_v_mm: float = Field(default=0.0, ge=-500, le=500, allow_inf_nan=False)
    gantry_deg: float = Field(default=0.0, ge=-360, le=360, allow_inf_nan=False)
    fps: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        allow_inf_nan=False,
        description="Frame rate when the file has no frame times.",
    )
    intensity: IntensityValues | None = Field(
        default=None,
        description="Pixel meaning when the file does not state it (raw: default raw).",
    )
    n_frames: int | None = Field(default=None, ge=1, description="raw: number of frames.")
    rows: int | None = Field(default=None, ge=1, description="raw: frame height, pixels.")
    columns: int | None = Field(default=None, ge=1, description="raw: frame width, pixels.")

    @field_validator("binning")
    @classmethod
    def _binning_factor(cls, value: int) -> int:
        if value not in (1, 2, 4):
            raise ValueError("binning must be 1, 2 or 4")
        return value


class FluoroscopyGeometry(BaseModel):
    """Projection geometry and timing of a stored frame sequence (IEC 61217 gantry angles)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_GEOMETRY_EXAMPLE]})

    sad_mm: float = Field(description="Source-axis distance, mm.")
    sdd_mm: float = Field(description="Source-detector distance, mm.")
    pixel_pitch_mm: tuple[float, float] = Field(description="Panel pixel pitch (u, v), mm.")
    detector_shape: tuple[int, int] = Field(description="Panel size (rows, columns), pixels.")
    pixel_at_isocentre_mm: tuple[float, float] = Field(
        description="Pixel pitch scaled to the isocentre plane (pitch × SAD / SDD), mm."
    )
    timestamps_s: list[float] = Field(description="Time of every frame, s.")
    gantry_deg: list[float] = Field(description="kV source angle of every frame, degrees.")
    detector_offset_mm: list[tuple[float, float]] = Field(
        description="Panel centre offset (u, v) from the piercing point per frame, mm."
    )


_UPLOAD_EXAMPLE: JsonDict = {
    "id": "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "session_id": "7d3c1b2a-9e8f-4a6b-8c5d-1e2f3a4b5c6d",
    "kind": "fluoroscopy",
    "format": "dicom",
    "content_type": "application/dicom",
    "filename": "fluoro.dcm",
    "size_bytes": 15731404,
    "sha256": "9f2c" + "0" * 60,
    "n_frames": 30,
    "rows": 512,
    "columns": 512,
    "dtype": "uint16",
    "intensity": "raw",
    "geometry_source": "file",
    "geometry": _GEOMETRY_EXAMPLE,
    "created_at": "2026-11-28T09:25:00Z",
}


class UploadPublic(BaseModel):
    """A stored upload: the file exactly as sent, and what was read from it."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_UPLOAD_EXAMPLE]}
    )

    id: str
    session_id: str
    kind: UploadKindValues
    format: UploadFormatValues
    content_type: str
    filename: str | None
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the file as sent (hex).")
    n_frames: int
    rows: int
    columns: int
    dtype: str = Field(description="numpy dtype of the frames as read.")
    intensity: IntensityValues
    geometry_source: GeometrySourceValues
    geometry: FluoroscopyGeometry
    created_at: datetime


class UploadsPublic(BaseModel):
    """The uploads of a session, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [_UPLOAD_EXAMPLE], "count": 1}]}
    )

    data: list[UploadPublic]
    count: int
