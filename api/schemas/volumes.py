"""Planning CT and CBCT uploads: the form that comes with the file, and the stored upload."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from api.enums import VolumeFormatValues, VolumeKindValues

__all__ = ["VolumeGeometry", "VolumeUploadForm", "VolumeUploadPublic", "VolumeUploadsPublic"]


class VolumeUploadForm(BaseModel):
    """Form fields sent with a volume file (``multipart/form-data``, file part ``file``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"kind": "planning_ct", "format": "dicom_zip"},
                {"kind": "cbct", "format": "mha"},
            ]
        }
    )

    kind: VolumeKindValues = Field(description="Planning CT or CBCT.")
    format: VolumeFormatValues = Field(description="File format of the part named ``file``.")


_GEOMETRY_EXAMPLE: JsonDict = {
    "size_ijk": [512, 512, 120],
    "spacing_mm": [0.977, 0.977, 2.5],
    "origin_lps_mm": [-250.0, -250.0, -150.0],
    "direction": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    "extent_lps_mm": [[-250.0, -250.0, -150.0], [249.0, 249.0, 147.5]],
    "frame_of_reference_uid": "1.2.826.0.1.3680043.8.498.1",
    "patient_position": "HFS",
    "patient_position_source": "file",
    "modality": "CT",
    "series_instance_uid": "1.2.826.0.1.3680043.8.498.2",
    "dtype": "int16",
    "value_range": [-1024.0, 2400.0],
}


class VolumeGeometry(BaseModel):
    """The grid of a stored volume in DICOM patient coordinates (LPS)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_GEOMETRY_EXAMPLE]})

    size_ijk: tuple[int, int, int] = Field(
        description="Voxels along (i, j, k): columns, rows, slices."
    )
    spacing_mm: tuple[float, float, float] = Field(description="Voxel spacing along i, j, k, mm.")
    origin_lps_mm: tuple[float, float, float] = Field(
        description="Centre of the first voxel, LPS mm."
    )
    direction: list[list[float]] = Field(
        description="Direction cosines, 3 x 3; column c is the LPS direction of index axis c."
    )
    extent_lps_mm: list[list[float]] = Field(
        description="Lower and upper corners of the voxel centres' bounding box, LPS mm."
    )
    frame_of_reference_uid: str | None = Field(description="Frame of Reference UID, if stated.")
    patient_position: str = Field(description="DICOM Patient Position, e.g. HFS.")
    patient_position_source: str = Field(
        description="``file`` when the file states it, ``session`` when taken from the session."
    )
    modality: str | None = Field(description="DICOM Modality (DICOM series only).")
    series_instance_uid: str | None = Field(description="Series Instance UID (DICOM only).")
    dtype: str = Field(description="numpy dtype of the voxels as read.")
    value_range: tuple[float, float] = Field(description="Smallest and largest voxel value.")


_UPLOAD_EXAMPLE: JsonDict = {
    "id": "4b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
    "session_id": "7d3c1b2a-9e8f-4a6b-8c5d-1e2f3a4b5c6d",
    "kind": "planning_ct",
    "format": "dicom_zip",
    "content_type": "application/zip",
    "filename": "planning_ct.zip",
    "size_bytes": 48234112,
    "sha256": "7e1d" + "0" * 60,
    "geometry": _GEOMETRY_EXAMPLE,
    "created_at": "2026-11-28T09:10:00Z",
}


class VolumeUploadPublic(BaseModel):
    """A stored planning CT or CBCT: the file exactly as sent, and its geometry."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_UPLOAD_EXAMPLE]}
    )

    id: str
    session_id: str
    kind: VolumeKindValues
    format: VolumeFormatValues
    content_type: str
    filename: str | None
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the file as sent (hex).")
    geometry: VolumeGeometry
    created_at: datetime


class VolumeUploadsPublic(BaseModel):
    """The volume uploads of a session, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [_UPLOAD_EXAMPLE], "count": 1}]}
    )

    data: list[VolumeUploadPublic]
    count: int
