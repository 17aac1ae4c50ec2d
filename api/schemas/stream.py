"""Messages a client sends on the real-time stream (``/api/v1/sessions/{id}/stream``).

Text messages are JSON objects with a ``type``; frame pixels travel in binary messages. See
:mod:`api.routes.stream` for the conversation.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, TypeAdapter, model_validator

from igrt.sequence import IntensityValues

__all__ = [
    "CLIENT_MESSAGE",
    "StreamAuth",
    "StreamFrameHeader",
    "StreamGeometry",
    "StreamReference",
    "StreamStart",
    "StreamStop",
]

_Offset = tuple[FiniteFloat, FiniteFloat]


class StreamAuth(BaseModel):
    """The first message, unless the handshake carried ``Authorization: Bearer``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=200)


class StreamGeometry(BaseModel):
    """The kV imager: ``preset`` (with ``binning``) or ``sad_mm``, ``sdd_mm``, ``pixel_pitch_mm``.

    ``gantry_deg`` and ``detector_offset_mm`` are the defaults of every frame; a frame header may
    give its own (panel offsets and angles come from the acquisition).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"preset": "xvi", "binning": 4, "gantry_deg": 0.0}]},
    )

    preset: Literal["xvi", "obi"] | None = None
    binning: Literal[1, 2, 4] = 1
    sad_mm: float | None = Field(default=None, gt=0, le=5000, allow_inf_nan=False)
    sdd_mm: float | None = Field(default=None, gt=0, le=5000, allow_inf_nan=False)
    pixel_pitch_mm: _Offset | None = None
    rows: int | None = Field(default=None, ge=16, le=4096)
    columns: int | None = Field(default=None, ge=16, le=4096)
    gantry_deg: float = Field(default=0.0, ge=-360, le=360, allow_inf_nan=False)
    detector_offset_mm: _Offset = (0.0, 0.0)

    @model_validator(mode="after")
    def _one_kind(self) -> StreamGeometry:
        explicit = (self.sad_mm, self.sdd_mm, self.pixel_pitch_mm, self.rows, self.columns)
        if self.preset is not None:
            if any(value is not None for value in explicit):
                raise ValueError("give preset or explicit geometry, not both")
        elif any(value is None for value in explicit):
            raise ValueError(
                "give preset (and binning) or all of sad_mm, sdd_mm, pixel_pitch_mm, rows, columns"
            )
        for value in (*(self.pixel_pitch_mm or ()), *self.detector_offset_mm):
            if not (-500.0 <= value <= 500.0):  # also refuses NaN
                raise ValueError("pitches and offsets must be finite and within ±500 mm")
        if self.pixel_pitch_mm is not None and min(self.pixel_pitch_mm) <= 0:
            raise ValueError("pixel_pitch_mm must be positive")
        return self


class StreamReference(BaseModel):
    """Where the reference end-exhale level comes from."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["initial", "fixed"] = "initial"
    window_s: float = Field(default=10.0, ge=2.0, le=120.0, allow_inf_nan=False)
    si_isocentre_mm: float | None = Field(default=None, ge=-500, le=500, allow_inf_nan=False)

    @model_validator(mode="after")
    def _fixed_needs_value(self) -> StreamReference:
        if (self.mode == "fixed") != (self.si_isocentre_mm is not None):
            raise ValueError("si_isocentre_mm is required with mode fixed, and only then")
        return self


class StreamStart(BaseModel):
    """Start tracking: the imager, the pixel meaning, the reference and the trailing window."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["start"]
    geometry: StreamGeometry
    intensity: IntensityValues = IntensityValues.RAW
    reference: StreamReference = Field(default_factory=StreamReference)
    window_s: float = Field(default=8.0, ge=2.0, le=60.0, allow_inf_nan=False)


class StreamFrameHeader(BaseModel):
    """Announces the next binary message: ``rows x columns`` little-endian uint16 pixels."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["frame"]
    time_s: float = Field(ge=0, le=86_400, allow_inf_nan=False)
    rows: int = Field(ge=16, le=4096)
    columns: int = Field(ge=16, le=4096)
    dtype: Literal["<u2"] = "<u2"
    gantry_deg: float | None = Field(default=None, ge=-360, le=360, allow_inf_nan=False)
    detector_offset_mm: _Offset | None = None


class StreamStop(BaseModel):
    """End the stream: the server answers with a summary and closes (1000)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["stop"]


CLIENT_MESSAGE: TypeAdapter[StreamAuth | StreamStart | StreamFrameHeader | StreamStop] = (
    TypeAdapter(
        Annotated[
            StreamAuth | StreamStart | StreamFrameHeader | StreamStop,
            Field(discriminator="type"),
        ]
    )
)
"""Parses any text message of the client."""
