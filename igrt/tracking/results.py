"""What the dome tracker reports: one observation per frame, and a whole track."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DomeObservation", "DomeTrack", "TrackingStatusValues"]


class TrackingStatusValues(enum.Enum):
    """How far a frame's dome position can be trusted."""

    TRACKED = "tracked"
    """The dome matched its template well; the position is trustworthy."""

    LOW_CONFIDENCE = "low_confidence"
    """A position was found but the match was weak (noise, overlapping structures)."""

    NEEDS_CONFIRMATION = "needs_confirmation"
    """A position was followed, but the edge was chosen without anatomy or a hint confirming
    it is the dome (it may be a shoulder, a clavicle, a plate border) and it has not yet been
    seen to move with breathing. Not to be used for a decision until a user confirms it."""

    LOST = "lost"
    """No trustworthy position: the dome left the field or nothing matched. Values are NaN."""


@dataclass(frozen=True)
class DomeObservation:
    """The right (or chosen) hemidiaphragm dome on one frame.

    Attributes
    ----------
    frame_index : int
        Index of the frame in its sequence (or the count of frames seen by a streaming tracker).
    time_s : float
        Frame time, s.
    status : TrackingStatusValues
        Trust in this observation.
    confidence : float
        Normalised cross-correlation of the dome edge with its template, clipped to [0, 1].
    apex_column, apex_row : float
        Sub-pixel panel position of the apex (the steepest point of the dome edge on the apex
        column); NaN when lost.
    apex_u_mm, apex_v_mm : float
        The same on the panel in mm from the piercing point (``v`` towards the couch foot).
    si_isocentre_mm : float
        Superior-inferior position at the isocentre plane, superior positive:
        ``-apex_v_mm * SAD / SDD``.
    dome_columns, dome_rows : numpy.ndarray
        Sampled points of the fitted dome curve on the panel, for display.
    gantry_deg : float
        kV source angle of the frame, degrees.
    apex_at_edge_onset : bool
        True when the apex was placed at the fitted edge onset (the projected 3D apex). False
        when that fit has not succeeded yet and the apex is the steepest point of the edge,
        which lies about 1-2 mm inferior: absolute positions are then biased, motion is not.
    """

    frame_index: int
    time_s: float
    status: TrackingStatusValues
    confidence: float
    apex_column: float
    apex_row: float
    apex_u_mm: float
    apex_v_mm: float
    si_isocentre_mm: float
    dome_columns: npt.NDArray[np.float64]
    dome_rows: npt.NDArray[np.float64]
    gantry_deg: float
    apex_at_edge_onset: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN becomes ``None``)."""

        def number(value: float) -> float | None:
            return None if not np.isfinite(value) else float(value)

        return {
            "frame_index": self.frame_index,
            "time_s": self.time_s,
            "status": self.status.value,
            "confidence": self.confidence,
            "apex_column": number(self.apex_column),
            "apex_row": number(self.apex_row),
            "apex_u_mm": number(self.apex_u_mm),
            "apex_v_mm": number(self.apex_v_mm),
            "si_isocentre_mm": number(self.si_isocentre_mm),
            "gantry_deg": self.gantry_deg,
            "apex_at_edge_onset": self.apex_at_edge_onset,
            "dome_curve_px": self.dome_curve_px(),
        }

    def dome_curve_px(self, max_points: int = 17) -> list[list[float]]:
        """At most ``max_points`` ``[column, row]`` points of the dome curve, 0.1 px, for display.

        Empty when the frame is lost or no curve was fitted.
        """
        columns = np.asarray(self.dome_columns, dtype=np.float64)
        rows = np.asarray(self.dome_rows, dtype=np.float64)
        keep = np.isfinite(columns) & np.isfinite(rows)
        columns, rows = columns[keep], rows[keep]
        if columns.size == 0 or self.status is TrackingStatusValues.LOST:
            return []
        picks = np.unique(np.linspace(0, columns.size - 1, min(max_points, columns.size)).round())
        return [[round(float(columns[i]), 1), round(float(rows[i]), 1)] for i in picks.astype(int)]


@dataclass(frozen=True, eq=False)
class DomeTrack:
    """Every frame's observation of a sequence, with array views for analysis."""

    observations: tuple[DomeObservation, ...]

    @property
    def times_s(self) -> npt.NDArray[np.float64]:
        """Frame times, s."""
        return np.array([o.time_s for o in self.observations])

    @property
    def si_isocentre_mm(self) -> npt.NDArray[np.float64]:
        """SI position at the isocentre plane per frame, mm (NaN when lost)."""
        return np.array([o.si_isocentre_mm for o in self.observations])

    @property
    def confidence(self) -> npt.NDArray[np.float64]:
        """Per-frame confidence in [0, 1]."""
        return np.array([o.confidence for o in self.observations])

    @property
    def apex_pixel(self) -> npt.NDArray[np.float64]:
        """Per-frame apex ``(column, row)``, shape ``(n, 2)``."""
        return np.array([[o.apex_column, o.apex_row] for o in self.observations])

    @property
    def statuses(self) -> tuple[TrackingStatusValues, ...]:
        """Per-frame status."""
        return tuple(o.status for o in self.observations)

    @property
    def tracked_fraction(self) -> float:
        """Share of frames with status TRACKED."""
        if not self.observations:
            return 0.0
        tracked = sum(o.status is TrackingStatusValues.TRACKED for o in self.observations)
        return tracked / len(self.observations)
