"""The intrafraction action rule: where the dome should be, where it is, and when to alert.

This module judges a stream of trusted dome positions (superior-inferior at the isocentre,
superior positive, mm) against a reference taken from the plan, a therapist or, flagged as
unverified, the stream's first seconds. It holds no image or web code: the service
(:mod:`api.streaming`) tracks the frames and passes each trusted position here. Every threshold
is a field of the protocol (:class:`~igrt.protocol.MotionProtocol`, with its provenance); the
rule reports which ones it applied (:meth:`IntrafractionRule.to_dict`).

The steps, one per frame
------------------------
1. **Window** (:class:`TrailingWindow`): the trusted positions of the trailing ``window_s``.
2. **Level**: in *free breathing* (:func:`exhale_level`) the end-exhale level, the level of a
   still second (``intrafraction_still_window_s``: positions within
   ``intrafraction_still_tolerance_mm`` of a flat line, no steeper than
   ``hold_max_speed_mm_per_s``, or of a parabola turning inside that second) lying above the
   lowest quarter of the window's range: an end-exhale pause. It is held until the next
   pause and expires after ``max_period_s`` without one. In *breath-hold* mode
   (:func:`hold_level`) the level of a still hold judged over ``hold_detection_min_s``; between
   holds (the patient breathing) there is none, and none is needed.
3. **Displacement**: level minus the reference (the anatomy's displacement, superior positive;
   the couch correction that undoes it is its negative).
4. **Action rule** (:class:`ActionRule`): free breathing, ``|displacement| >
   intrafraction_alert_mm`` for longer than ``intrafraction_alert_duration_s`` (KIM: Keall et
   al.; LARK). Breath hold, a still hold outside the gating window (reference ±
   ``intrafraction_gating_window_mm``) for longer than ``intrafraction_gating_duration_s``; the
   per-frame gate (``in``/``out``) is reported at once.

Why a still stretch, and why it makes the latency symmetric
-----------------------------------------------------------
A percentile near the top of a trailing window (the former rule: the 90th percentile of 8 s)
rises as soon as a few shifted exhales enter it but falls only when nearly all the window is
shifted: an inferior shift took about twice as long to alert as a superior one. The level of a
still stretch moves with the most recent exhale pause whichever way the liver went: after a
shift either way it follows one still second into the next pause.

Examples
--------
>>> from igrt.protocol import DEFAULT_PROTOCOL
>>> rule = IntrafractionRule.from_protocol(DEFAULT_PROTOCOL)
>>> reference = MonitorReference.given(0.0, ReferenceSourceValues.PLAN, "planning CT dome apex")
>>> monitor = IntrafractionMonitor(rule, reference, window_s=8.0)
>>> states = [monitor.update(t / 4, 4.0) for t in range(0, 48)]  # 4 mm superior, still
>>> states[-1].displacement_si_mm, states[-1].alert_active
(4.0, True)
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from igrt.errors import InvalidInputError
from igrt.frame_of_reference import PatientPositionValues, iec_support_from_lps_matrix
from igrt.geometry import ProjectionGeometry
from igrt.protocol import MotionProtocol

__all__ = [
    "ActionRule",
    "AlertEvent",
    "IntrafractionMonitor",
    "IntrafractionRule",
    "LevelMethodValues",
    "MonitorModeValues",
    "MonitorReference",
    "MonitorState",
    "ReferenceSourceValues",
    "TrailingWindow",
    "exhale_level",
    "hold_level",
    "pause_level",
    "planned_dome_si_mm",
    "still_level",
]

_MAX_WINDOW_SAMPLES = 10_000
_LOWEST_QUARTER = 0.5
"""A pause in the lowest quarter of the breathing range is an inhale, not an exhale. Not the
lower half: after an inferior shift the new exhale sits nearer the middle of a window that still
holds the old exhales, and must count as soon as a superior one would."""


class MonitorModeValues(enum.Enum):
    """How the patient breathes during delivery."""

    FREE_BREATHING = "free_breathing"
    """The end-exhale level is watched (abdominal compression or no device)."""
    BREATH_HOLD = "breath_hold"
    """ABC / DIBH: the hold level is watched against a gating window; breathing between holds
    is not judged."""


class ReferenceSourceValues(enum.Enum):
    """Where the reference position comes from."""

    PLAN = "plan"
    """The plan: the dome apex of the (exhale or breath-hold) planning CT relative to the
    isocentre, the position the day's couch correction restores."""
    THERAPIST = "therapist"
    """A level a therapist gave or captured (an explicit action, recorded)."""
    STREAM_START = "stream_start"
    """The stream's first seconds: an offset already there at the start is never seen."""


class LevelMethodValues(enum.Enum):
    """How the current level was obtained."""

    EXHALE_PAUSE = "exhale_pause"
    """The latest still second above the lowest quarter of the breathing range (a pause)."""
    HOLD = "hold"
    """A still breath hold: the fitted hold level at the latest frame."""
    NONE = "none"
    """No level: no exhale pause within ``max_period_s``, or breathing between holds."""


@dataclass(frozen=True)
class IntrafractionRule:
    """The protocol's intrafraction thresholds, and where each comes from.

    Build it with :meth:`from_protocol`; the fields are the protocol's of the same meaning.
    """

    protocol_version: str
    threshold_mm: float
    persistence_s: float
    gating_window_mm: float
    gating_persistence_s: float
    still_window_s: float
    still_tolerance_mm: float
    max_speed_mm_per_s: float
    hold_window_s: float
    level_expiry_s: float
    provenance: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    _FIELDS = (
        ("threshold_mm", "intrafraction_alert_mm"),
        ("persistence_s", "intrafraction_alert_duration_s"),
        ("gating_window_mm", "intrafraction_gating_window_mm"),
        ("gating_persistence_s", "intrafraction_gating_duration_s"),
        ("still_window_s", "intrafraction_still_window_s"),
        ("still_tolerance_mm", "intrafraction_still_tolerance_mm"),
        ("max_speed_mm_per_s", "hold_max_speed_mm_per_s"),
        ("hold_window_s", "hold_detection_min_s"),
        ("level_expiry_s", "max_period_s"),
    )

    @classmethod
    def from_protocol(cls, protocol: MotionProtocol) -> IntrafractionRule:
        """The rule of ``protocol``, with the provenance of each value it takes."""
        values = {name: getattr(protocol, field) for name, field in cls._FIELDS}
        provenance = {
            field: protocol.provenance[field].to_dict()
            for _, field in cls._FIELDS
            if field in protocol.provenance
        }
        return cls(protocol_version=protocol.version, provenance=provenance, **values)

    def to_dict(self) -> dict[str, Any]:
        """Each threshold under its protocol field name, with its provenance and the version."""
        return {
            "protocol_version": self.protocol_version,
            "fields": {
                field: {"value": getattr(self, name), **self.provenance.get(field, {})}
                for name, field in self._FIELDS
            },
        }


@dataclass(frozen=True)
class MonitorReference:
    """The reference level (superior positive, mm at the isocentre) and where it comes from.

    ``si_isocentre_mm`` is None only for :attr:`ReferenceSourceValues.STREAM_START` until the
    monitor has built it from the first ``window_s`` seconds.
    """

    source: ReferenceSourceValues
    si_isocentre_mm: float | None
    detail: str
    window_s: float | None = None

    def __post_init__(self) -> None:
        if self.source is ReferenceSourceValues.STREAM_START:
            if self.window_s is None or not self.window_s > 0:
                raise InvalidInputError(
                    "a stream-start reference needs a positive window_s", field="window_s"
                )
        elif self.si_isocentre_mm is None or not math.isfinite(self.si_isocentre_mm):
            raise InvalidInputError(
                f"a {self.source.value} reference needs a finite si_isocentre_mm",
                field="si_isocentre_mm",
            )

    @classmethod
    def given(
        cls, si_isocentre_mm: float, source: ReferenceSourceValues, detail: str
    ) -> MonitorReference:
        """A reference known before the stream (the plan's, or a therapist's)."""
        return cls(source, float(si_isocentre_mm), detail)

    @classmethod
    def stream_start(cls, window_s: float) -> MonitorReference:
        """The level of the first ``window_s`` seconds (unverified against the plan)."""
        return cls(
            ReferenceSourceValues.STREAM_START,
            None,
            f"level of the stream's first {window_s:g} s: not checked against the plan, an "
            "offset present at the start is not seen",
            window_s,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: source, level, detail and (stream start) window."""
        return {
            "source": self.source.value,
            "si_isocentre_mm": self.si_isocentre_mm,
            "detail": self.detail,
            "window_s": self.window_s,
        }


@dataclass(frozen=True)
class AlertEvent:
    """An alert raised or cleared, for the audit trail and the client."""

    kind: str  # "raised" or "cleared"
    time_s: float
    frame_index: int
    displacement_si_mm: float | None
    over_threshold_s: float | None


class ActionRule:
    """Displacement above ``threshold_mm`` for longer than ``persistence_s`` raises an alert.

    The alert clears when a displacement within the threshold arrives. ``None`` (no level: an
    untrusted frame, or breathing between holds) changes nothing; :meth:`restart` forgets how
    long the displacement has been over the threshold (a new hold starts its own count) but
    keeps an active alert active.

    Examples
    --------
    >>> rule = ActionRule(threshold_mm=3.0, persistence_s=5.0)
    >>> [rule.update(t, 4.0, t) for t in (0.0, 5.0)]
    [None, None]
    >>> rule.update(5.5, 4.0, 6).kind, rule.active
    ('raised', True)
    >>> rule.update(6.0, -1.0, 7).kind, rule.active
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

    def restart(self) -> None:
        """Forget the onset (an active alert stays active)."""
        self.onset_s = None

    def update(
        self, time_s: float, displacement_mm: float | None, frame_index: int
    ) -> AlertEvent | None:
        """Apply one frame's displacement (None changes nothing); the event, if any."""
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
class TrailingWindow:
    """Trusted ``(time_s, si_mm)`` samples of the trailing ``length_s`` seconds."""

    length_s: float
    times_s: deque[float] = dataclasses.field(default_factory=deque)
    si_mm: deque[float] = dataclasses.field(default_factory=deque)

    def add(self, time_s: float, si_mm: float) -> None:
        """Append one sample (the oldest beyond a hard cap are dropped)."""
        self.times_s.append(time_s)
        self.si_mm.append(si_mm)
        while len(self.times_s) > _MAX_WINDOW_SAMPLES:
            self.times_s.popleft()
            self.si_mm.popleft()

    def prune(self, now_s: float) -> None:
        """Drop the samples older than ``length_s`` before ``now_s``."""
        while self.times_s and self.times_s[0] < now_s - self.length_s:
            self.times_s.popleft()
            self.si_mm.popleft()

    def arrays(
        self, since_s: float | None = None
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Times and positions (of the samples at or after ``since_s``, if given)."""
        times = np.fromiter(self.times_s, dtype=np.float64, count=len(self.times_s))
        values = np.fromiter(self.si_mm, dtype=np.float64, count=len(self.si_mm))
        if since_s is None:
            return times, values
        keep = times >= since_s
        return times[keep], values[keep]

    def excursion_mm(self) -> float | None:
        """Peak-to-peak of the window (None with fewer than two samples)."""
        if len(self.si_mm) < 2:
            return None
        return float(max(self.si_mm) - min(self.si_mm))


def still_level(
    times_s: npt.NDArray[np.float64],
    si_mm: npt.NDArray[np.float64],
    *,
    span_s: float,
    tolerance_mm: float,
    max_speed_mm_per_s: float,
) -> float | None:
    """The level of a still stretch, or None if the samples are not one.

    Still: the samples cover at least three quarters of ``span_s`` (three or more of them), lie
    within ``tolerance_mm`` (peak-to-peak of the residuals) of their least-squares line, and
    that line is no steeper than ``max_speed_mm_per_s``. The level is the line at the latest
    sample (a creeping hold is judged where it is now, not where it was on average).

    Examples
    --------
    >>> t = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    >>> still_level(t, 2.0 + 0.1 * t, span_s=1.0, tolerance_mm=2.0, max_speed_mm_per_s=1.0)
    2.1
    >>> still_level(t, 5.0 * t, span_s=1.0, tolerance_mm=2.0, max_speed_mm_per_s=1.0) is None
    True
    """
    if times_s.size < 3 or times_s[-1] - times_s[0] < 0.75 * span_s:
        return None
    centred = times_s - times_s.mean()
    spread = float(centred @ centred)
    slope = float(centred @ (si_mm - si_mm.mean())) / spread if spread > 0 else 0.0
    fitted = si_mm.mean() + slope * centred
    residual = si_mm - fitted
    if abs(slope) > max_speed_mm_per_s or float(residual.max() - residual.min()) > tolerance_mm:
        return None
    return round(float(fitted[-1]), 6)


def pause_level(
    times_s: npt.NDArray[np.float64],
    si_mm: npt.NDArray[np.float64],
    *,
    span_s: float,
    tolerance_mm: float,
    max_speed_mm_per_s: float,
) -> float | None:
    """The level of a plateau or a turning point of the breathing, or None.

    A quadratic is fitted to the samples (they must cover three quarters of ``span_s``, four or
    more, no two consecutive ones more than ``tolerance_mm`` apart: a step up followed by the
    start of an inhale fits a parabola too, and counting it would see a superior shift sooner
    than an inferior one): they must lie within ``tolerance_mm`` of it (peak-to-peak of the
    residuals), and it
    must be either flat, no steeper than ``max_speed_mm_per_s`` (a pause; the level is the fit's
    mean), or turning in the middle half of the span (a rounded exhale, or the bottom of a
    trough; the level is the turning point).

    Examples
    --------
    >>> t = np.linspace(-0.5, 0.5, 5)
    >>> round(pause_level(t, 3.0 - 2.0 * t**2, span_s=1.0, tolerance_mm=2.0,
    ...                   max_speed_mm_per_s=1.0), 6)
    3.0
    >>> pause_level(t, 8.0 * t, span_s=1.0, tolerance_mm=2.0, max_speed_mm_per_s=1.0) is None
    True
    """
    if times_s.size < 4 or times_s[-1] - times_s[0] < 0.75 * span_s:
        return None
    if float(np.max(np.abs(np.diff(si_mm)))) > tolerance_mm:
        return None  # a jump between two frames: a step (a shift under way), not a pause
    centre_s = float(times_s.mean())
    x = times_s - centre_s
    a, b, c = np.polyfit(x, si_mm, 2)
    residual = si_mm - (a * x * x + b * x + c)
    if float(residual.max() - residual.min()) > tolerance_mm:
        return None
    span = float(x[-1] - x[0])
    flat = abs(b) * span <= tolerance_mm and abs(a) * span**2 <= tolerance_mm
    if flat and abs(b) <= max_speed_mm_per_s:
        return round(float(np.mean(a * x * x + b * x + c)), 6)
    # A rounded apex: the turning point in the middle half of the span (at its edge the fit
    # would describe the shoulder of a slope).
    if a < 0 and abs(-b / (2.0 * a)) <= 0.25 * span:
        turn = -b / (2.0 * a)
        return round(float(a * turn * turn + b * turn + c), 6)
    return None


def exhale_level(window: TrailingWindow, now_s: float, rule: IntrafractionRule) -> float | None:
    """The end-exhale level of the latest second, if it is a pause above the lowest quarter.

    A pause (:func:`pause_level`) whose level lies above the lowest quarter of the trailing
    window's range (exhale is the superior end; inhales turn in the lowest quarter). None when
    the latest second is inhaling, exhaling or turning at end-inhale.
    """
    times, values = window.arrays(now_s - rule.still_window_s)
    level = pause_level(
        times,
        values,
        span_s=rule.still_window_s,
        tolerance_mm=rule.still_tolerance_mm,
        max_speed_mm_per_s=rule.max_speed_mm_per_s,
    )
    if level is None:
        return None
    _, everything = window.arrays()
    lowest, highest = float(everything.min()), float(everything.max())
    return level if level >= lowest + _LOWEST_QUARTER * (highest - lowest) else None


def hold_level(window: TrailingWindow, now_s: float, rule: IntrafractionRule) -> float | None:
    """The level of a breath hold under way (still over ``hold_window_s``), else None."""
    times, values = window.arrays(now_s - rule.hold_window_s)
    return still_level(
        times,
        values,
        span_s=rule.hold_window_s,
        tolerance_mm=rule.still_tolerance_mm,
        max_speed_mm_per_s=rule.max_speed_mm_per_s,
    )


@dataclass(frozen=True)
class MonitorState:
    """What the monitor concluded after one frame.

    ``monitoring`` is ``building_reference`` (stream-start reference not built yet),
    ``untrusted`` (no trusted frame in the window), ``no_level`` (free breathing: no exhale
    pause within ``max_period_s``; nothing is judged, which is said), ``between_holds``
    (breath hold: the patient breathes; nothing to judge) or ``monitoring``. ``gate`` is the
    breath-hold gate (``in``/``out``, None in free breathing or without a trusted frame).
    """

    level_si_mm: float | None
    level_method: LevelMethodValues
    level_age_s: float | None
    reference_si_mm: float | None
    displacement_si_mm: float | None
    instantaneous_displacement_si_mm: float | None
    excursion_mm: float | None
    monitoring: str
    gate: str | None
    alert_active: bool
    over_threshold_s: float | None
    event: AlertEvent | None


class IntrafractionMonitor:
    """Apply the rule to one stream of trusted positions (see the module docstring).

    Parameters
    ----------
    rule : IntrafractionRule
        The protocol's thresholds.
    reference : MonitorReference
        Where the dome should be (a stream-start reference is built from the first seconds).
    window_s : float
        Trailing window of the breathing range and the running excursion, s.
    mode : MonitorModeValues
        Free breathing (end-exhale level, KIM rule) or breath hold (hold level, gating window).
    """

    def __init__(
        self,
        rule: IntrafractionRule,
        reference: MonitorReference,
        *,
        window_s: float,
        mode: MonitorModeValues = MonitorModeValues.FREE_BREATHING,
    ) -> None:
        if not window_s > 0:
            raise InvalidInputError("window_s must be positive", field="window_s")
        self.rule = rule
        self.mode = mode
        self.reference = reference
        self.reference_si_mm = reference.si_isocentre_mm
        self.window = TrailingWindow(window_s)
        breath_hold = mode is MonitorModeValues.BREATH_HOLD
        self.alert = ActionRule(
            threshold_mm=rule.gating_window_mm if breath_hold else rule.threshold_mm,
            persistence_s=rule.gating_persistence_s if breath_hold else rule.persistence_s,
        )
        self._level: tuple[float, float] | None = None  # (time_s, si_mm) of the latest level
        self._first_time_s: float | None = None
        self._reference_levels: list[float] = []
        self._holding = False
        self._frames = 0

    # --- the steps ---------------------------------------------------------------------

    def _measure_level(self, now_s: float) -> float | None:
        if not self.window.times_s:
            return None
        if self.mode is MonitorModeValues.BREATH_HOLD:
            return hold_level(self.window, now_s, self.rule)
        return exhale_level(self.window, now_s, self.rule)

    def _current_level(self, now_s: float, measured: float | None) -> float | None:
        """Free breathing holds the latest pause's level until it expires; holds do not."""
        if measured is not None:
            self._level = (now_s, measured)
        if self.mode is MonitorModeValues.BREATH_HOLD:
            return measured
        if self._level is None or now_s - self._level[0] > self.rule.level_expiry_s:
            return None
        return self._level[1]

    def _build_reference(self, now_s: float, measured: float | None) -> None:
        """Stream-start reference: median of the levels of the first ``window_s`` seconds."""
        if self.reference_si_mm is not None or self._first_time_s is None:
            return
        assert self.reference.window_s is not None
        if measured is not None:
            self._reference_levels.append(measured)
        if now_s - self._first_time_s > self.reference.window_s and self._reference_levels:
            self.reference_si_mm = float(np.median(self._reference_levels))
            self._reference_levels = []

    def _gate(self, si_mm: float | None) -> str | None:
        if self.mode is not MonitorModeValues.BREATH_HOLD:
            return None
        if si_mm is None or self.reference_si_mm is None:
            return None
        inside = abs(si_mm - self.reference_si_mm) <= self.rule.gating_window_mm
        return "in" if inside else "out"

    def _judge(
        self, now_s: float, level: float | None, frame_index: int, trusted: bool
    ) -> tuple[float | None, str, AlertEvent | None]:
        if self.reference_si_mm is None:
            return None, "building_reference", None
        if not self.window.times_s:
            return None, "untrusted", None
        displacement = None if level is None else level - self.reference_si_mm
        if self.mode is MonitorModeValues.BREATH_HOLD:
            if trusted:
                holding = level is not None
                if self._holding and not holding:
                    self.alert.restart()  # each hold is judged on its own
                self._holding = holding
            monitoring = "monitoring" if self._holding else "between_holds"
        else:
            monitoring = "monitoring" if level is not None else "no_level"
        event = self.alert.update(now_s, displacement, frame_index)
        return displacement, monitoring, event

    # --- one frame ---------------------------------------------------------------------

    def update(
        self, time_s: float, si_mm: float | None, frame_index: int | None = None
    ) -> MonitorState:
        """Apply one frame: ``si_mm`` is its trusted position (None: not trusted)."""
        if self._first_time_s is None:
            self._first_time_s = time_s
        if si_mm is not None:
            self.window.add(time_s, si_mm)
        self.window.prune(time_s)
        measured = self._measure_level(time_s) if si_mm is not None else None
        self._build_reference(time_s, measured)
        level = self._current_level(time_s, measured)
        self._frames += 1
        index = frame_index if frame_index is not None else self._frames - 1
        displacement, monitoring, event = self._judge(time_s, level, index, si_mm is not None)
        instantaneous = (
            None if si_mm is None or self.reference_si_mm is None else si_mm - self.reference_si_mm
        )
        if level is None:
            method, age = LevelMethodValues.NONE, None
        else:
            hold = self.mode is MonitorModeValues.BREATH_HOLD
            method = LevelMethodValues.HOLD if hold else LevelMethodValues.EXHALE_PAUSE
            age = 0.0 if self._level is None else time_s - self._level[0]
        return MonitorState(
            level_si_mm=level,
            level_method=method,
            level_age_s=age,
            reference_si_mm=self.reference_si_mm,
            displacement_si_mm=displacement,
            instantaneous_displacement_si_mm=instantaneous,
            excursion_mm=self.window.excursion_mm(),
            monitoring=monitoring,
            gate=self._gate(si_mm),
            alert_active=self.alert.active,
            over_threshold_s=self.alert.over_threshold_s(time_s),
            event=event,
        )


def planned_dome_si_mm(
    apex_lps_mm: npt.ArrayLike,
    isocentre_lps_mm: npt.ArrayLike,
    patient_position: PatientPositionValues | str,
    geometry: ProjectionGeometry,
) -> float:
    """Where the planned dome apex appears on the imager, SI at the isocentre (superior +), mm.

    The apex of the planning CT (an exhale or breath-hold CT) relative to the isocentre: its
    superior-inferior offset (LPS z) is what the tracker measures, magnified as the tracker's
    isocentre scaling does not undo: the apex lies off the isocentre plane by its depth towards
    the source, so it projects ``SAD / (SAD - depth)`` times its offset. After the day's couch
    correction the dome should sit here.

    Raises
    ------
    InvalidInputError
        If a point is not three finite numbers, or the apex lies at or behind the source.

    Examples
    --------
    >>> from igrt.geometry import xvi_geometry
    >>> planned_dome_si_mm([0, 0, 40.0], [0, 0, 0], "HFS", xvi_geometry())
    40.0
    >>> round(planned_dome_si_mm([0, -50.0, 40.0], [0, 0, 0], "HFS", xvi_geometry()), 3)
    42.105
    """
    apex = np.asarray(apex_lps_mm, dtype=np.float64)
    isocentre = np.asarray(isocentre_lps_mm, dtype=np.float64)
    for name, point in (("apex_lps_mm", apex), ("isocentre_lps_mm", isocentre)):
        if point.shape != (3,) or not np.all(np.isfinite(point)):
            raise InvalidInputError(f"{name} must be three finite numbers", field=name)
    offset_lps = apex - isocentre
    offset_iec = iec_support_from_lps_matrix(patient_position) @ offset_lps
    depth_mm = float(offset_iec @ geometry.source_direction)
    if depth_mm >= geometry.sad_mm:
        raise InvalidInputError("the apex lies at or behind the source", field="apex_lps_mm")
    return float(offset_lps[2]) * geometry.sad_mm / (geometry.sad_mm - depth_mm)
