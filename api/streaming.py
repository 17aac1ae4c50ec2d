"""Real-time intrafraction monitoring of one fluoroscopy stream (no I/O): the wiring.

The WebSocket (:mod:`api.routes.stream`) and the plain-HTTP streams
(:mod:`api.routes.stream_http`) feed it frames and send what it returns; the helpers below turn
their start and frame messages into the geometry and monitor, so both transports track alike.

One :class:`StreamMonitor` per connection runs one :class:`~igrt.tracking.DomeTracker`, keeps
the frames the tracker trusts (not ``lost``, confidence at least the protocol's
``min_sample_confidence``) and hands their positions to the domain's action rule,
:class:`igrt.intrafraction.IntrafractionMonitor`: the reference, the end-exhale or hold level,
the displacement, the breath-hold gate and the alert are decided there, on the thresholds of the
session's protocol (see that module for the rule and why its latency is the same for a shift in
either direction).

Reference (``reference.mode`` of the start message)
---------------------------------------------------
- ``plan``: the planning CT's dome apex relative to the isocentre, from the session's
  registration (its dome check), projected for the stream's imager
  (:func:`igrt.intrafraction.planned_dome_si_mm`): where the day's couch correction puts the
  dome. An offset already there when the stream starts is seen.
- ``fixed``: a level given by the client (``si_isocentre_mm``), by default a therapist's
  (``source``: ``therapist`` or ``plan``).
- ``initial`` (the default, as before): the level of the stream's first ``window_s`` seconds.
  Reported as source ``stream_start`` with the warning that it was not checked against the plan.

Every result and the summary say where the reference came from (``reference``), and the
``started`` answer carries the rule applied with the protocol's provenance (``rule``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from api.schemas.stream import StreamGeometry, StreamOpen
from igrt.frame_of_reference import PatientPositionValues
from igrt.geometry import ProjectionGeometry, obi_geometry, xvi_geometry
from igrt.intrafraction import (
    AlertEvent,
    IntrafractionMonitor,
    IntrafractionRule,
    MonitorModeValues,
    MonitorReference,
    ReferenceSourceValues,
    planned_dome_si_mm,
)
from igrt.protocol import MotionProtocol
from igrt.sequence import IntensityValues
from igrt.tracking import DomeObservation, DomeTracker, TrackerSettings, TrackingStatusValues

__all__ = [
    "AlertEvent",
    "PlannedDome",
    "StreamMonitor",
    "alert_audit_detail",
    "frame_geometry",
    "monitor_reference",
    "open_monitor",
    "projection_geometry",
    "started_document",
]


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


@dataclass(frozen=True)
class PlannedDome:
    """The planned dome position a ``plan`` reference is built from (read from a registration)."""

    registration_id: str
    apex_lps_mm: tuple[float, float, float]
    isocentre_lps_mm: tuple[float, float, float]
    isocentre_source: str


class StreamMonitor:
    """Track the dome frame by frame and apply the intrafraction rule to the trusted positions.

    Parameters
    ----------
    protocol : MotionProtocol
        Supplies every threshold (:class:`~igrt.intrafraction.IntrafractionRule`) and the trust
        threshold.
    tracker_settings : TrackerSettings
        For the stream's tracker (patient position).
    intensity : IntensityValues
        What the frames' values mean.
    window_s : float
        Trailing window of the breathing range and the running excursion, s.
    reference_window_s : float
        Length of the initial window a stream-start reference is built from, s.
    reference_si_mm : float, optional
        A therapist's fixed reference (``fixed`` mode); ignored when ``reference`` is given.
    reference : MonitorReference, optional
        The reference with its source (plan, therapist, stream start).
    mode : MonitorModeValues
        Free breathing (end-exhale level) or breath hold (hold level against the gating window).
    """

    def __init__(
        self,
        protocol: MotionProtocol,
        tracker_settings: TrackerSettings,
        intensity: IntensityValues,
        *,
        window_s: float,
        reference_window_s: float,
        reference_si_mm: float | None = None,
        reference: MonitorReference | None = None,
        mode: MonitorModeValues = MonitorModeValues.FREE_BREATHING,
    ) -> None:
        if reference is None:
            reference = (
                MonitorReference.stream_start(reference_window_s)
                if reference_si_mm is None
                else MonitorReference.given(
                    reference_si_mm, ReferenceSourceValues.THERAPIST, "given when the stream opened"
                )
            )
        self.protocol = protocol
        self.tracker = DomeTracker(tracker_settings, intensity)
        self.rule = IntrafractionRule.from_protocol(protocol)
        self.core = IntrafractionMonitor(self.rule, reference, window_s=window_s, mode=mode)
        self.frames = 0
        self.trusted_frames = 0
        self.alerts_raised = 0
        self._searching = True  # a tracker's first frame looks for the dome on the whole panel

    @property
    def searching(self) -> bool:
        """Whether the next frame makes the tracker search the whole panel for the dome.

        The stream's first frame, and each frame after one that lost the dome (the tracker
        then starts over): tens of ms of CPU where following the dome takes a few
        (:mod:`api.frame_lanes` runs such frames apart).
        """
        return self._searching

    @property
    def reference_mode(self) -> str:
        """The start message's name of the reference's source (``initial``, ``fixed``, ``plan``)."""
        source = self.core.reference.source
        if source is ReferenceSourceValues.STREAM_START:
            return "initial"
        return "plan" if source is ReferenceSourceValues.PLAN else "fixed"

    @property
    def alert_threshold_mm(self) -> float:
        """The threshold the alert is judged by (the gating window in breath-hold mode), mm."""
        return self.core.alert.threshold_mm

    @property
    def alert_persistence_s(self) -> float:
        """How long the threshold must be exceeded before the alert is raised, s."""
        return self.core.alert.persistence_s

    def reference_document(self) -> dict[str, Any]:
        """Where the reference comes from and its value now (None while it is being built)."""
        return {
            **self.core.reference.to_dict(),
            "si_isocentre_mm": _rounded(self.core.reference_si_mm),
        }

    def _trusted(self, observation: DomeObservation) -> bool:
        return (
            observation.status
            in (TrackingStatusValues.TRACKED, TrackingStatusValues.LOW_CONFIDENCE)
            and observation.confidence >= self.protocol.min_sample_confidence
            and math.isfinite(observation.si_isocentre_mm)
        )

    def process(
        self, frame: npt.NDArray[Any], time_s: float, geometry: ProjectionGeometry
    ) -> tuple[dict[str, Any], AlertEvent | None]:
        """Track one frame; the result document and the alert event it caused, if any.

        Raises
        ------
        InvalidInputError, GeometryError
            From the tracker: a bad frame (the stream's state is unchanged but for the tracker's
            own frame counter).
        """
        started = time.perf_counter()
        observation = self.tracker.update(frame, time_s, geometry)
        self._searching = observation.status is TrackingStatusValues.LOST
        self.frames += 1
        trusted = self._trusted(observation)
        si_mm = float(observation.si_isocentre_mm) if trusted else None
        if si_mm is not None:
            self.trusted_frames += 1
        state = self.core.update(time_s, si_mm, observation.frame_index)
        event = state.event
        if event is not None and event.kind == "raised":
            self.alerts_raised += 1
        result = {
            "type": "result",
            "frame_index": observation.frame_index,
            "time_s": time_s,
            "dome": {
                "status": observation.status.value,
                "confidence": _rounded(observation.confidence, 4),
                "trusted": trusted,
                "si_isocentre_mm": _rounded(observation.si_isocentre_mm),
                "apex_column": _rounded(observation.apex_column),
                "apex_row": _rounded(observation.apex_row),
            },
            "window_s": self.core.window.length_s,
            "mode": self.core.mode.value,
            "excursion_mm": _rounded(state.excursion_mm),
            "exhale_si_mm": _rounded(state.level_si_mm),
            "level_method": state.level_method.value,
            "reference_si_mm": _rounded(state.reference_si_mm),
            "reference_mode": self.reference_mode,
            "reference_source": self.core.reference.source.value,
            "displacement_si_mm": _rounded(state.displacement_si_mm),
            "instantaneous_displacement_si_mm": _rounded(state.instantaneous_displacement_si_mm),
            "monitoring": state.monitoring,
            "gate": state.gate,
            "alert": {
                "active": state.alert_active,
                "event": event.kind if event is not None else None,
                "over_threshold_s": _rounded(state.over_threshold_s),
                "threshold_mm": self.alert_threshold_mm,
                "persistence_s": self.alert_persistence_s,
            },
            "processing_ms": round((time.perf_counter() - started) * 1000.0, 3),
        }
        return result, event

    def summary(self) -> dict[str, Any]:
        """Counts for the end of the stream, and where the reference came from."""
        return {
            "type": "summary",
            "frames": self.frames,
            "trusted_frames": self.trusted_frames,
            "alerts_raised": self.alerts_raised,
            "alert_active": self.core.alert.active,
            "reference_si_mm": _rounded(self.core.reference_si_mm),
            "reference_mode": self.reference_mode,
            "reference": self.reference_document(),
            "mode": self.core.mode.value,
        }


# --- what both transports share ---------------------------------------------------------------


def projection_geometry(spec: StreamGeometry) -> ProjectionGeometry:
    """The imager of a start message: a preset (with binning) or the explicit geometry.

    Raises
    ------
    GeometryError
        From :class:`~igrt.geometry.ProjectionGeometry` (e.g. an impossible SAD/SDD pair).
    """
    if spec.preset is not None:
        make = xvi_geometry if spec.preset == "xvi" else obi_geometry
        base = make(binning=spec.binning, gantry_deg=spec.gantry_deg)
        return ProjectionGeometry(
            sad_mm=base.sad_mm,
            sdd_mm=base.sdd_mm,
            pixel_pitch_mm=base.pixel_pitch_mm,
            detector_shape=base.detector_shape,
            detector_offset_mm=spec.detector_offset_mm,
            gantry_deg=spec.gantry_deg,
        )
    # StreamGeometry's validator guarantees the explicit fields when there is no preset.
    assert spec.sad_mm is not None
    assert spec.sdd_mm is not None
    assert spec.pixel_pitch_mm is not None
    assert spec.rows is not None
    assert spec.columns is not None
    return ProjectionGeometry(
        sad_mm=spec.sad_mm,
        sdd_mm=spec.sdd_mm,
        pixel_pitch_mm=spec.pixel_pitch_mm,
        detector_shape=(spec.rows, spec.columns),
        detector_offset_mm=spec.detector_offset_mm,
        gantry_deg=spec.gantry_deg,
    )


def frame_geometry(
    base: ProjectionGeometry,
    gantry_deg: float | None,
    detector_offset_mm: tuple[float, float] | None,
) -> ProjectionGeometry:
    """The stream's geometry with one frame's own gantry angle and panel offset, if it has them.

    Raises
    ------
    GeometryError
        From :class:`~igrt.geometry.ProjectionGeometry`.
    """
    if gantry_deg is None and detector_offset_mm is None:
        return base
    return ProjectionGeometry(
        sad_mm=base.sad_mm,
        sdd_mm=base.sdd_mm,
        pixel_pitch_mm=base.pixel_pitch_mm,
        detector_shape=base.detector_shape,
        detector_offset_mm=detector_offset_mm or base.detector_offset_mm,
        gantry_deg=base.gantry_deg if gantry_deg is None else gantry_deg,
    )


def monitor_reference(
    start: StreamOpen,
    patient_position: PatientPositionValues,
    geometry: ProjectionGeometry,
    planned: PlannedDome | None,
) -> MonitorReference:
    """The reference a start message asks for (``planned`` is needed for mode ``plan``).

    Raises
    ------
    ValueError
        If mode ``plan`` comes without ``planned``.
    InvalidInputError
        From :func:`~igrt.intrafraction.planned_dome_si_mm` (an apex that cannot be projected).
    """
    spec = start.reference
    if spec.mode == "initial":
        return MonitorReference.stream_start(spec.window_s)
    if spec.mode == "fixed":
        assert spec.si_isocentre_mm is not None  # StreamReference's validator
        source = ReferenceSourceValues(spec.source or "therapist")
        return MonitorReference.given(
            spec.si_isocentre_mm, source, f"given by the client as the {source.value}'s level"
        )
    if planned is None:
        raise ValueError("a plan reference needs the planned dome")
    si_mm = planned_dome_si_mm(
        planned.apex_lps_mm, planned.isocentre_lps_mm, patient_position, geometry
    )
    offset_mm = planned.apex_lps_mm[2] - planned.isocentre_lps_mm[2]
    where = "superior" if offset_mm >= 0 else "inferior"
    caveat = (
        ""
        if planned.isocentre_source == "isocentre"
        else f"; no isocentre was given to the registration, the {planned.isocentre_source} "
        "stands in for it: check the reference"
    )
    return MonitorReference.given(
        si_mm,
        ReferenceSourceValues.PLAN,
        f"registration {planned.registration_id}: planning CT dome apex {abs(offset_mm):.1f} mm "
        f"{where} of the isocentre ({planned.isocentre_source}), projected at gantry "
        f"{geometry.gantry_deg:g} deg{caveat}",
    )


def open_monitor(
    start: StreamOpen,
    protocol: MotionProtocol,
    patient_position: PatientPositionValues,
    geometry: ProjectionGeometry | None = None,
    planned: PlannedDome | None = None,
) -> StreamMonitor:
    """A monitor for a validated start message, on the session's protocol and position.

    ``geometry`` (the stream's imager) and ``planned`` are needed for a ``plan`` reference.
    """
    if geometry is None:
        geometry = projection_geometry(start.geometry)
    return StreamMonitor(
        protocol,
        TrackerSettings(patient_position=patient_position),
        start.intensity,
        window_s=start.window_s,
        reference_window_s=start.reference.window_s,
        reference=monitor_reference(start, patient_position, geometry, planned),
        mode=start.mode,
    )


def started_document(
    stream_id: str, start: StreamOpen, geometry: ProjectionGeometry, monitor: StreamMonitor
) -> dict[str, Any]:
    """The ``started`` answer: panel, pixel size at the isocentre, windows, reference and rule."""
    rows, columns = geometry.detector_shape
    return {
        "type": "started",
        "stream_id": stream_id,
        "detector_shape": [rows, columns],
        "pixel_at_isocentre_mm": list(geometry.pixel_at_isocentre_mm),
        "reference_mode": start.reference.mode,
        "reference_window_s": start.reference.window_s,
        "window_s": start.window_s,
        "mode": monitor.core.mode.value,
        "reference": monitor.reference_document(),
        "rule": monitor.rule.to_dict(),
        "protocol_version": monitor.protocol.version,
        "alert_threshold_mm": monitor.alert_threshold_mm,
        "alert_persistence_s": monitor.alert_persistence_s,
    }


def alert_audit_detail(event: AlertEvent, monitor: StreamMonitor) -> dict[str, Any]:
    """The audit detail of an alert raised or cleared (the rule it was judged by included)."""
    return {
        "time_s": event.time_s,
        "frame_index": event.frame_index,
        "displacement_si_mm": _rounded(event.displacement_si_mm),
        "over_threshold_s": _rounded(event.over_threshold_s),
        "threshold_mm": monitor.alert_threshold_mm,
        "persistence_s": monitor.alert_persistence_s,
        "protocol_version": monitor.protocol.version,
        "mode": monitor.core.mode.value,
        "reference": monitor.reference_document(),
    }
