"""Real-time intrafraction monitoring of one fluoroscopy stream (no I/O).

The WebSocket (:mod:`api.routes.stream`) and the plain-HTTP streams
(:mod:`api.routes.stream_http`) feed it frames and send what it returns; the helpers below turn
their start and frame messages into the geometry and monitor, so both transports track alike.

One :class:`StreamMonitor` per connection runs one :class:`~igrt.tracking.DomeTracker` and
applies the KIM-style action rule of the session's protocol: an alert is raised when the dome's
displacement from the reference exceeds ``MotionProtocol.intrafraction_alert_mm`` for longer than
``MotionProtocol.intrafraction_alert_duration_s``, and cleared when it comes back within the
threshold.

What is compared with the threshold, and why
--------------------------------------------
The dome moves 5-23 mm with every breath (CLINICAL.md), so its instantaneous position exceeds a
3 mm threshold twice per cycle whatever the baseline does. What the 3 mm rule is about is the
*baseline*: where the liver rests. The monitor therefore tracks the **end-exhale level**, the
dome's rest position and the most reproducible phase of the cycle: the 90th percentile of the
trusted SI positions (superior positive, so exhale is the upper end) over the trailing
``window_s`` (8 s by default, two typical breaths). Unlike a running mean over a window that is
not a whole number of breaths, the level does not ripple with the breathing phase.

- **Reference** (``reference.mode``): ``initial`` (default) takes the end-exhale level of the first
  ``reference.window_s`` seconds (10 s) of the stream: the stream starts after the day's image
  guidance has aligned the patient, so that is the aligned position. ``fixed`` takes a stored
  level (``si_isocentre_mm``), e.g. from an earlier stream of the same fraction.
- **Displacement**: ``displacement_si_mm = end-exhale level - reference`` (the anatomy's
  displacement, superior positive; the couch correction that undoes it is its negative).
- **Asymmetry**: a superior shift lifts the 90th percentile as soon as about a tenth of the
  window holds shifted exhales (about 1 s); an inferior shift must fill about nine tenths of the
  window (about 7 s for the 8 s default) before the level falls. Either is reported well inside
  a fraction, after the persistence time on top.

Only frames the tracker trusts (not ``lost``, confidence at least the protocol's
``min_sample_confidence``) enter the windows. When the trailing window holds no trusted frame the
monitor says ``untrusted`` and reports no level; an active alert stays active (it is never cleared
on frames nobody can trust).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from api.schemas.stream import StreamGeometry, StreamOpen
from igrt.frame_of_reference import PatientPositionValues
from igrt.geometry import ProjectionGeometry, obi_geometry, xvi_geometry
from igrt.protocol import MotionProtocol
from igrt.sequence import IntensityValues
from igrt.tracking import DomeObservation, DomeTracker, TrackerSettings, TrackingStatusValues

__all__ = [
    "EXHALE_PERCENTILE",
    "AlertEvent",
    "KimAlert",
    "StreamMonitor",
    "alert_audit_detail",
    "frame_geometry",
    "open_monitor",
    "projection_geometry",
    "started_document",
]

EXHALE_PERCENTILE = 90.0
"""Percentile of the trailing SI positions taken as the end-exhale level (superior positive)."""

_MIN_REFERENCE_SAMPLES = 5
_MAX_WINDOW_SAMPLES = 10_000


@dataclass(frozen=True)
class AlertEvent:
    """An alert raised or cleared, for the audit trail and the client."""

    kind: str  # "raised" or "cleared"
    time_s: float
    frame_index: int
    displacement_si_mm: float | None
    over_threshold_s: float | None


class KimAlert:
    """The action rule: displacement above ``threshold_mm`` for longer than ``persistence_s``.

    Examples
    --------
    >>> rule = KimAlert(threshold_mm=3.0, persistence_s=5.0)
    >>> [rule.update(t, 4.0, t) for t in (0.0, 5.0)]
    [None, None]
    >>> rule.update(5.5, 4.0, 6).kind, rule.active
    ('raised', True)
    >>> rule.update(6.0, 1.0, 7).kind, rule.active
    ('cleared', False)
    """

    def __init__(self, *, threshold_mm: float, persistence_s: float) -> None:
        self.threshold_mm = threshold_mm
        self.persistence_s = persistence_s
        self.active = False
        self.onset_s: float | None = None

    def over_threshold_s(self, time_s: float) -> float | None:
        """How long the displacement has been over the threshold at ``time_s`` (None: it is not)."""
        return None if self.onset_s is None else time_s - self.onset_s

    def update(
        self, time_s: float, displacement_mm: float | None, frame_index: int
    ) -> AlertEvent | None:
        """Apply one frame's displacement (None: untrusted, changes nothing); the event, if any."""
        if displacement_mm is None:
            return None
        if abs(displacement_mm) > self.threshold_mm:
            if self.onset_s is None:
                self.onset_s = time_s
            over = time_s - self.onset_s
            if not self.active and over > self.persistence_s:
                self.active = True
                return AlertEvent("raised", time_s, frame_index, displacement_mm, over)
            return None
        over_s = self.over_threshold_s(time_s)
        self.onset_s = None
        if self.active:
            self.active = False
            return AlertEvent("cleared", time_s, frame_index, displacement_mm, over_s)
        return None


@dataclass
class _Window:
    """Trusted (time_s, si_mm) samples of the trailing ``length_s`` seconds."""

    length_s: float
    times_s: deque[float] = dataclasses.field(default_factory=deque)
    si_mm: deque[float] = dataclasses.field(default_factory=deque)

    def add(self, time_s: float, si_mm: float) -> None:
        self.times_s.append(time_s)
        self.si_mm.append(si_mm)
        while len(self.times_s) > _MAX_WINDOW_SAMPLES:
            self.times_s.popleft()
            self.si_mm.popleft()

    def prune(self, now_s: float) -> None:
        while self.times_s and self.times_s[0] < now_s - self.length_s:
            self.times_s.popleft()
            self.si_mm.popleft()

    def values(self) -> npt.NDArray[np.float64]:
        return np.fromiter(self.si_mm, dtype=np.float64, count=len(self.si_mm))


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


class StreamMonitor:
    """Track the dome frame by frame and watch its end-exhale level against a reference.

    Parameters
    ----------
    protocol : MotionProtocol
        Supplies the alert threshold, its persistence time and the trust threshold.
    tracker_settings : TrackerSettings
        For the stream's tracker (patient position).
    intensity : IntensityValues
        What the frames' values mean.
    window_s : float
        Trailing window of the end-exhale level and the running excursion, s.
    reference_window_s : float
        Length of the initial window the reference is taken from (``initial`` mode), s.
    reference_si_mm : float, optional
        A fixed reference (``fixed`` mode); the initial window is then not used.
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
    ) -> None:
        self.protocol = protocol
        self.tracker = DomeTracker(tracker_settings, intensity)
        self.window = _Window(window_s)
        self.reference_window_s = reference_window_s
        self.reference_si_mm = reference_si_mm
        self.reference_mode = "initial" if reference_si_mm is None else "fixed"
        self.alert = KimAlert(
            threshold_mm=protocol.intrafraction_alert_mm,
            persistence_s=protocol.intrafraction_alert_duration_s,
        )
        self._reference_samples: list[float] = []
        self._first_time_s: float | None = None
        self.frames = 0
        self.trusted_frames = 0
        self.alerts_raised = 0

    def _trusted(self, observation: DomeObservation) -> bool:
        return (
            observation.status
            in (TrackingStatusValues.TRACKED, TrackingStatusValues.LOW_CONFIDENCE)
            and observation.confidence >= self.protocol.min_sample_confidence
            and math.isfinite(observation.si_isocentre_mm)
        )

    def _update_reference(self, time_s: float, si_mm: float | None) -> None:
        if self.reference_si_mm is not None or self._first_time_s is None:
            return
        if time_s - self._first_time_s <= self.reference_window_s:
            if si_mm is not None:
                self._reference_samples.append(si_mm)
            return
        if len(self._reference_samples) >= _MIN_REFERENCE_SAMPLES:
            self.reference_si_mm = float(np.percentile(self._reference_samples, EXHALE_PERCENTILE))
            self._reference_samples = []
        elif si_mm is not None:  # too few trusted frames so far: keep collecting
            self._reference_samples.append(si_mm)

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
        self.frames += 1
        if self._first_time_s is None:
            self._first_time_s = time_s
        trusted = self._trusted(observation)
        si_mm = float(observation.si_isocentre_mm) if trusted else None
        if si_mm is not None:
            self.trusted_frames += 1
            self.window.add(time_s, si_mm)
        self.window.prune(time_s)
        self._update_reference(time_s, si_mm)
        values = self.window.values()
        exhale = float(np.percentile(values, EXHALE_PERCENTILE)) if values.size else None
        excursion = float(values.max() - values.min()) if values.size >= 2 else None
        displacement = (
            exhale - self.reference_si_mm
            if exhale is not None and self.reference_si_mm is not None
            else None
        )
        if self.reference_si_mm is None:
            monitoring = "building_reference"
        elif displacement is None:
            monitoring = "untrusted"
        else:
            monitoring = "monitoring"
        event = self.alert.update(time_s, displacement, observation.frame_index)
        if event is not None and event.kind == "raised":
            self.alerts_raised += 1
        over = self.alert.over_threshold_s(time_s)
        instantaneous = (
            si_mm - self.reference_si_mm
            if si_mm is not None and self.reference_si_mm is not None
            else None
        )
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
            "window_s": self.window.length_s,
            "excursion_mm": _rounded(excursion),
            "exhale_si_mm": _rounded(exhale),
            "reference_si_mm": _rounded(self.reference_si_mm),
            "reference_mode": self.reference_mode,
            "displacement_si_mm": _rounded(displacement),
            "instantaneous_displacement_si_mm": _rounded(instantaneous),
            "monitoring": monitoring,
            "alert": {
                "active": self.alert.active,
                "event": event.kind if event is not None else None,
                "over_threshold_s": _rounded(over),
                "threshold_mm": self.alert.threshold_mm,
                "persistence_s": self.alert.persistence_s,
            },
            "processing_ms": round((time.perf_counter() - started) * 1000.0, 3),
        }
        return result, event

    def summary(self) -> dict[str, Any]:
        """Counts for the end of the stream."""
        return {
            "type": "summary",
            "frames": self.frames,
            "trusted_frames": self.trusted_frames,
            "alerts_raised": self.alerts_raised,
            "alert_active": self.alert.active,
            "reference_si_mm": _rounded(self.reference_si_mm),
            "reference_mode": self.reference_mode,
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


def open_monitor(
    start: StreamOpen, protocol: MotionProtocol, patient_position: PatientPositionValues
) -> StreamMonitor:
    """A monitor for a validated start message, on the session's protocol and position."""
    return StreamMonitor(
        protocol,
        TrackerSettings(patient_position=patient_position),
        start.intensity,
        window_s=start.window_s,
        reference_window_s=start.reference.window_s,
        reference_si_mm=start.reference.si_isocentre_mm,
    )


def started_document(
    stream_id: str, start: StreamOpen, geometry: ProjectionGeometry
) -> dict[str, Any]:
    """The ``started`` answer: the panel, its pixel size at the isocentre and the windows."""
    rows, columns = geometry.detector_shape
    return {
        "type": "started",
        "stream_id": stream_id,
        "detector_shape": [rows, columns],
        "pixel_at_isocentre_mm": list(geometry.pixel_at_isocentre_mm),
        "reference_mode": start.reference.mode,
        "reference_window_s": start.reference.window_s,
        "window_s": start.window_s,
    }


def alert_audit_detail(event: AlertEvent, monitor: StreamMonitor) -> dict[str, Any]:
    """The audit detail of an alert raised or cleared (the rule it was judged by included)."""
    return {
        "time_s": event.time_s,
        "frame_index": event.frame_index,
        "displacement_si_mm": _rounded(event.displacement_si_mm),
        "over_threshold_s": _rounded(event.over_threshold_s),
        "threshold_mm": monitor.alert.threshold_mm,
        "persistence_s": monitor.alert.persistence_s,
        "protocol_version": monitor.protocol.version,
    }
