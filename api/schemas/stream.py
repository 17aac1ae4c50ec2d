"""Messages of the real-time streams: the WebSocket's and the plain-HTTP ones.

WebSocket (``/api/v1/sessions/{id}/stream``) text messages are JSON objects with a ``type``;
frame pixels travel in binary messages. Over HTTP (``/api/v1/sessions/{id}/streams``) the start
message is a JSON body and each frame a raw body. See :mod:`api.routes.stream` and
:mod:`api.routes.stream_http` for the conversations. A frame's answer
(:class:`StreamFrameResult`) and the summary (:class:`StreamSummary`) are the same documents on
both transports; :class:`StreamOpened` is the WebSocket's ``started`` with the limits added.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, TypeAdapter, model_validator

from igrt.intrafraction import LevelMethodValues, MonitorModeValues
from igrt.sequence import IntensityValues
from igrt.tracking import TrackingStatusValues

__all__ = [
    "CLIENT_MESSAGE",
    "StreamAlertState",
    "StreamAuth",
    "StreamDome",
    "StreamFrameHeader",
    "StreamFrameResult",
    "StreamGeometry",
    "StreamOpen",
    "StreamOpened",
    "StreamReference",
    "StreamReferenceState",
    "StreamStart",
    "StreamStop",
    "StreamSummary",
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
    """Where the reference level (end-exhale, or the hold level in breath-hold mode) comes from.

    - ``plan``: the planning CT's dome apex relative to the isocentre, from the session's
      registration (``registration_id``, by default the latest completed one with a dome check),
      projected for the stream's imager: where the day's couch correction puts the dome. An
      offset already present when the stream starts is seen.
    - ``fixed``: ``si_isocentre_mm`` given by the client; ``source`` says whose it is
      (``therapist``, the default, or ``plan``).
    - ``initial`` (the default, for older clients): the level of the first ``window_s``
      seconds. It is not checked against the plan: every answer reports it as source
      ``stream_start``.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"mode": "plan"},
                {"mode": "fixed", "si_isocentre_mm": 4.87, "source": "therapist"},
                {"mode": "initial", "window_s": 10.0},
            ]
        },
    )

    mode: Literal["initial", "fixed", "plan"] = "initial"
    window_s: float = Field(
        default=10.0,
        ge=2.0,
        le=120.0,
        allow_inf_nan=False,
        description="Length of the stream-start window (mode initial), s.",
    )
    si_isocentre_mm: float | None = Field(
        default=None,
        ge=-500,
        le=500,
        allow_inf_nan=False,
        description="The reference level, superior +, mm at the isocentre (mode fixed only).",
    )
    source: Literal["therapist", "plan"] | None = Field(
        default=None,
        description="Whose fixed level it is (mode fixed only; default therapist).",
    )
    registration_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The registration whose planning dome is the reference (mode plan only; "
        "default: the session's latest completed registration with a dome check).",
    )

    @model_validator(mode="after")
    def _fields_of_the_mode(self) -> StreamReference:
        if (self.mode == "fixed") != (self.si_isocentre_mm is not None):
            raise ValueError("si_isocentre_mm is required with mode fixed, and only then")
        if self.source is not None and self.mode != "fixed":
            raise ValueError("source is given with mode fixed only")
        if self.registration_id is not None and self.mode != "plan":
            raise ValueError("registration_id is given with mode plan only")
        return self


class StreamOpen(BaseModel):
    """Start tracking: the imager, the pixel meaning, the reference and the trailing window.

    The body of ``POST /sessions/{id}/streams``; the WebSocket's ``start`` message is the same
    object with ``"type": "start"`` (accepted here too, so one document serves both).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "geometry": {"preset": "xvi", "binning": 4},
                    "intensity": "raw",
                    "reference": {"mode": "plan"},
                    "mode": "free_breathing",
                    "window_s": 8.0,
                },
                {
                    "geometry": {"preset": "xvi", "binning": 4},
                    "reference": {"mode": "fixed", "si_isocentre_mm": -14.2},
                    "mode": "breath_hold",
                },
            ]
        },
    )

    type: Literal["start"] = "start"
    geometry: StreamGeometry
    intensity: IntensityValues = IntensityValues.RAW
    reference: StreamReference = Field(default_factory=StreamReference)
    mode: MonitorModeValues = Field(
        default=MonitorModeValues.FREE_BREATHING,
        description="free_breathing: the end-exhale level against the alert threshold; "
        "breath_hold (ABC, DIBH): the hold level against the protocol's gating window, breathing "
        "between holds not judged.",
    )
    window_s: float = Field(
        default=8.0,
        ge=2.0,
        le=60.0,
        allow_inf_nan=False,
        description="Trailing window of the end-exhale level and the running excursion, s.",
    )


class StreamStart(StreamOpen):
    """The WebSocket's ``start`` message (``type`` required: it selects the message kind)."""

    type: Literal["start"]


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


# --- answers (the same documents on the WebSocket and over HTTP) -----------------------------

_STREAM_ID = "9f0c2b7e4d1a4c3e8b6a5d4c3b2a1f0e"
_STREAMS_URL = "/api/v1/sessions/3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a0f9/streams"
_OPENED_EXAMPLE: dict[str, Any] = {
    "type": "started",
    "stream_id": _STREAM_ID,
    "session_id": "3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a0f9",
    "detector_shape": [256, 256],
    "pixel_at_isocentre_mm": [1.0417, 1.0417],
    "reference_mode": "plan",
    "reference_window_s": 10.0,
    "window_s": 8.0,
    "mode": "free_breathing",
    "reference": {
        "source": "plan",
        "si_isocentre_mm": 4.87,
        "detail": "registration 5d1e...: planning CT dome apex 4.7 mm superior of the isocentre, "
        "projected at gantry 0 deg",
        "window_s": None,
    },
    "rule": {
        "protocol_version": "seed-lee2009-liver-sbrt-2026.5",
        "fields": {
            "intrafraction_alert_mm": {
                "value": 3.0,
                "kind": "literature",
                "source": "KIM action rule (Keall et al.; LARK): > 3 mm",
            }
        },
    },
    "protocol_version": "seed-lee2009-liver-sbrt-2026.5",
    "alert_threshold_mm": 3.0,
    "alert_persistence_s": 5.0,
    "max_frame_bytes": 8388608,
    "idle_timeout_s": 60.0,
    "frames_url": f"{_STREAMS_URL}/{_STREAM_ID}/frames",
    "stop_url": f"{_STREAMS_URL}/{_STREAM_ID}/stop",
}
_RESULT_EXAMPLE: dict[str, Any] = {
    "type": "result",
    "frame_index": 52,
    "time_s": 10.4,
    "dome": {
        "status": "tracked",
        "confidence": 0.91,
        "trusted": True,
        "si_isocentre_mm": 4.213,
        "apex_column": 131.5,
        "apex_row": 97.25,
    },
    "window_s": 8.0,
    "excursion_mm": 11.8,
    "mode": "free_breathing",
    "exhale_si_mm": 5.02,
    "level_method": "exhale_pause",
    "reference_si_mm": 4.87,
    "reference_mode": "plan",
    "reference_source": "plan",
    "displacement_si_mm": 0.15,
    "instantaneous_displacement_si_mm": -0.657,
    "monitoring": "monitoring",
    "gate": None,
    "alert": {
        "active": False,
        "event": None,
        "over_threshold_s": None,
        "threshold_mm": 3.0,
        "persistence_s": 5.0,
    },
    "processing_ms": 0.8,
    "latency_ms": 1.1,
}
_SUMMARY_EXAMPLE: dict[str, Any] = {
    "type": "summary",
    "frames": 150,
    "trusted_frames": 148,
    "alerts_raised": 0,
    "alert_active": False,
    "reference_si_mm": 4.87,
    "reference_mode": "plan",
    "reference": {
        "source": "plan",
        "si_isocentre_mm": 4.87,
        "detail": "registration 5d1e...: planning CT dome apex 4.7 mm superior of the isocentre, "
        "projected at gantry 0 deg",
        "window_s": None,
    },
    "mode": "free_breathing",
}


class StreamReferenceState(BaseModel):
    """Where the monitor's reference came from, and its value (None while it is being built)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SUMMARY_EXAMPLE["reference"]]})

    source: Literal["plan", "therapist", "stream_start"]
    si_isocentre_mm: float | None = Field(description="Reference level, superior +, mm.")
    detail: str = Field(description="What the value is, in words (and what it cannot see).")
    window_s: float | None = Field(description="Stream-start window, s (source stream_start).")


class StreamOpened(BaseModel):
    """A stream was started: its id, the panel, the windows, the alert rule and the limits."""

    model_config = ConfigDict(json_schema_extra={"examples": [_OPENED_EXAMPLE]})

    type: Literal["started"] = "started"
    stream_id: str
    session_id: str
    detector_shape: tuple[int, int] = Field(description="Panel rows and columns, pixels.")
    pixel_at_isocentre_mm: tuple[float, float] = Field(
        description="Pixel size projected to the isocentre (u, v), mm."
    )
    reference_mode: Literal["initial", "fixed", "plan"]
    reference_window_s: float
    window_s: float
    mode: MonitorModeValues = Field(description="free_breathing or breath_hold.")
    reference: StreamReferenceState
    rule: dict[str, Any] = Field(
        description="The protocol fields the alert rule applies: value, kind and source of each."
    )
    protocol_version: str
    alert_threshold_mm: float = Field(
        description="The alert's threshold: intrafraction_alert_mm, or the gating window in "
        "breath-hold mode, mm."
    )
    alert_persistence_s: float
    max_frame_bytes: int = Field(description="Largest frame body accepted, bytes.")
    idle_timeout_s: float = Field(
        description="The stream is closed after this long without a frame, s."
    )
    frames_url: str = Field(description="Where to POST the frames.")
    stop_url: str = Field(description="Where to POST to stop the stream.")


class StreamDome(BaseModel):
    """The dome on one frame (positions are None when the tracker lost it)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RESULT_EXAMPLE["dome"]]})

    status: TrackingStatusValues
    confidence: float | None
    trusted: bool = Field(description="Whether the frame entered the windows.")
    si_isocentre_mm: float | None = Field(
        description="Dome apex superior-inferior at the isocentre (superior +), mm."
    )
    apex_column: float | None = Field(description="Apex column on the panel, pixels.")
    apex_row: float | None = Field(description="Apex row on the panel, pixels.")


class StreamAlertState(BaseModel):
    """The KIM-style alert after this frame."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RESULT_EXAMPLE["alert"]]})

    active: bool
    event: Literal["raised", "cleared"] | None = Field(
        description="What this frame changed, if anything."
    )
    over_threshold_s: float | None = Field(
        description="How long the displacement has been over the threshold, s."
    )
    threshold_mm: float
    persistence_s: float


class StreamFrameResult(BaseModel):
    """The answer to one frame (see :meth:`api.streaming.StreamMonitor.process`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RESULT_EXAMPLE]})

    type: Literal["result"] = "result"
    frame_index: int
    time_s: float
    dome: StreamDome
    window_s: float
    mode: MonitorModeValues
    excursion_mm: float | None = Field(description="Running peak-to-peak SI excursion, mm.")
    exhale_si_mm: float | None = Field(
        description="The level judged: the latest end-exhale pause (free breathing) or the "
        "hold under way (breath hold), superior +, mm."
    )
    level_method: LevelMethodValues
    reference_si_mm: float | None
    reference_mode: Literal["initial", "fixed", "plan"]
    reference_source: Literal["plan", "therapist", "stream_start"]
    displacement_si_mm: float | None = Field(
        description="The level minus the reference (superior +), mm."
    )
    instantaneous_displacement_si_mm: float | None
    monitoring: Literal[
        "building_reference", "untrusted", "monitoring", "no_level", "between_holds"
    ] = Field(
        description="no_level: no end-exhale pause within the protocol's max_period_s, nothing "
        "judged; between_holds: breath-hold mode while the patient breathes."
    )
    gate: Literal["in", "out"] | None = Field(
        description="Breath-hold mode: this frame's dome within the gating window or not."
    )
    alert: StreamAlertState
    processing_ms: float = Field(description="Tracking and alert rule, server time, ms.")
    latency_ms: float = Field(description="From the pixels received to the answer sent, ms.")


class StreamSummary(BaseModel):
    """Counts at the end of a stream."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})

    type: Literal["summary"] = "summary"
    frames: int
    trusted_frames: int
    alerts_raised: int
    alert_active: bool
    reference_si_mm: float | None
    reference_mode: Literal["initial", "fixed", "plan"]
    reference: StreamReferenceState
    mode: MonitorModeValues
