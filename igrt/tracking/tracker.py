"""Sub-pixel diaphragm-dome tracking, one frame at a time or a whole sequence.

Method
------
0. **Head up**: a feet-first patient's head is at the bottom of the panel; such frames are
   turned over (a view, no copy) so the lung is always above the liver, and rows are mapped
   back on output. The SI position is superior-positive for every patient position.
1. **Initialisation** (first frame, or after the dome was lost):
   :func:`~igrt.tracking.detection.detect_dome` finds the lung fields, takes the field on the
   requested side (from the geometry and patient position) and the highest point of its
   diaphragm boundary; at a user's hint it takes the dome edge there. Only the polarity the
   frames' stated meaning implies is scored. When anatomy fails, the strongest dome-shaped
   edge is followed but reported NEEDS_CONFIRMATION until it has moved
   ``_CONFIRMING_MOTION_MM`` along the patient's SI axis (a shoulder or a clavicle does not).
   The template is the vertical gradient of the smoothed attenuation image in a small window
   around the apex, and the apex row is the sub-pixel peak of that gradient on the apex column.
2. **Fixed gantry (fluoroscopy)**: each frame, the template is located by normalised
   cross-correlation over a vertical search range sized from the frame interval and a maximum
   dome speed, refined to sub-pixel by a parabola through the correlation peak. Only a window
   of a few thousand pixels is touched per frame, which is what makes the tracker fast. The
   template averages the first frames (less noise), then stays fixed so it cannot drift.
3. **Rotating gantry (CBCT projections)**: the anatomy around the dome changes with the angle,
   so a template would drift; instead the edge itself is followed: per column the rise nearest
   the previous dome curve among the nearly steepest (a static edge close by does not take the
   dome over), a robust parabola through those points, its vertex as the apex
   (see :meth:`DomeTracker._follow_edge`). The share of columns agreeing with the parabola is
   the confidence.
4. **Apex**: the tracked feature is the steepest point of the edge; the reported apex is the
   edge onset fitted by :func:`igrt.tracking.onset.fit_edge_onset` (the projected 3D apex).
5. **Trust**: below ``tracked_confidence`` a frame is low-confidence; below
   ``lost_confidence``, at the edge of the search range, or with the window leaving the panel,
   it is lost and the next frames re-detect the dome (resuming the old template if it still
   matches).

The batch form :func:`track_dome` runs the streaming :class:`DomeTracker` over the sequence, so
both forms give identical positions by construction (the batch form re-labels frames whose edge
was confirmed later).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError, InvalidInputError
from igrt.frame_of_reference import PatientPositionValues, iec_support_from_lps
from igrt.geometry import ProjectionGeometry
from igrt.sequence import FluoroSequence, IntensityValues
from igrt.tracking.detection import (
    DetectionView,
    DomeCandidate,
    DomeDetection,
    HemidiaphragmValues,
    attenuation_image,
    detect_dome,
    find_domes,
)
from igrt.tracking.onset import fit_edge_onset
from igrt.tracking.results import DomeObservation, DomeTrack, TrackingStatusValues

__all__ = ["DomeTracker", "TrackerSettings", "track_dome"]

_GRADIENT_SIGMA_PX = 1.0
_DISPLAY_HALF_WIDTH_PX = 40
_PROFILE_HALF_WIDTH_PX = 6
_ONSET_FRAMES = 8
_REFINE_ROWS = 3
_RECENT_PEAKS = 15
_RELATIVE_TRACKED = 0.9
_EDGE_SIGMA_PX = 1.5
_EDGE_ONSET_SMOOTHING = 0.2  # running-average weight of each frame's onset while turning
# An edge chosen without anatomy is confirmed as the dome once it has moved this far along the
# patient's SI axis (the lung apex, clavicles, shoulders and plate borders barely move).
_CONFIRMING_MOTION_MM = 3.0
_ANATOMY_RETRY_S = 1.0  # while unconfirmed, try anatomy-aware detection again this often
# After a loss, the dome is first looked for where it was: within this long of its last frame,
# within the SI distance it can move meanwhile and this far sideways (the gantry may turn).
_PREDICTION_HORIZON_S = 2.0
_PREDICTION_SIDEWAYS_MM = 40.0
# Where the dome is expected, a fainter edge is enough (at oblique angles it crosses the spine
# and the heart): this fraction of the minimum contrast-to-noise.
_PREDICTED_CONTRAST_FRACTION = 0.5


@dataclass(frozen=True)
class TrackerSettings:
    """How the dome tracker searches and when it trusts a match.

    Parameters
    ----------
    hemidiaphragm : HemidiaphragmValues
        Which dome to follow; the right one (over the liver) by default.
    patient_position : PatientPositionValues or str
        Patient orientation, to know which panel side is the patient's right.
    roi_half_height_mm, roi_half_width_mm : float
        Half size of the template window at the isocentre plane, mm.
    max_speed_mm_per_s : float
        Fastest dome motion to follow (a cough reaches several cm/s), mm/s at the isocentre.
    min_search_mm : float
        Smallest vertical search range per frame, mm.
    tracked_confidence, lost_confidence : float
        Correlation thresholds for TRACKED and for not LOST.
    seed_column_row : tuple of float, optional
        A user's hint: the dome apex is near this panel pixel.
    seed_radius_px : int
        How far from the seed the apex may be, pixels.
    min_contrast_to_noise : float
        A dome must stand this far above the frame's gradient noise to be detected at all.
    reacquire_relative_score : float
        After a loss, a new detection must be at least this fraction as strong as the dome
        first found, so noise or another edge is not taken for it.
    """

    hemidiaphragm: HemidiaphragmValues = HemidiaphragmValues.RIGHT
    patient_position: PatientPositionValues | str = PatientPositionValues.HFS
    roi_half_height_mm: float = 8.0
    roi_half_width_mm: float = 13.0
    max_speed_mm_per_s: float = 60.0
    min_search_mm: float = 3.0
    tracked_confidence: float = 0.8
    lost_confidence: float = 0.5
    seed_column_row: tuple[float, float] | None = None
    seed_radius_px: int = 40
    min_contrast_to_noise: float = 3.0
    reacquire_relative_score: float = 0.5

    def __post_init__(self) -> None:
        for name in (
            "roi_half_height_mm",
            "roi_half_width_mm",
            "max_speed_mm_per_s",
            "min_search_mm",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise InvalidInputError(f"{name} must be finite and positive", field=name)
        if not 0.0 <= self.lost_confidence <= self.tracked_confidence <= 1.0:
            raise InvalidInputError(
                "need 0 <= lost_confidence <= tracked_confidence <= 1",
                field="tracked_confidence",
            )
        object.__setattr__(
            self, "patient_position", PatientPositionValues.parse(self.patient_position)
        )


@dataclass
class _State:
    """Mutable tracking state between frames."""

    template: npt.NDArray[np.float32]
    row: float  # template centre (apex) row in the last frame, sub-pixel
    column: float
    curvature_per_px: float
    polarity: int
    frames_in_template: int
    gantry_deg: float
    apex_offset_rows: float = 0.0  # apex (edge onset) row minus template centre row
    onset_fitted: bool = False  # False: apex_offset_rows is still the steepest rise's
    steepest_offset_rows: float = 0.0  # steepest-rise row minus template centre row
    profile_sum: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    profile_frames: int = 0
    recent_peaks: list[float] = field(default_factory=list)
    confirmed: bool = True
    confirmable_by_motion: bool = True
    si_seen_mm: tuple[float, float] | None = None  # lowest and highest SI while unconfirmed
    # Frames reported NEEDS_CONFIRMATION on this edge, by count of frames seen, with the status
    # they would have had: they are re-labelled if the edge is confirmed later.
    awaiting_confirmation: dict[int, TrackingStatusValues] = field(default_factory=dict)
    detected_at_s: float = 0.0  # time of the last detection attempt on this edge
    seen_at_s: float = 0.0  # time of the last frame the dome was found on


def _gradient(window: npt.NDArray[np.float32], polarity: int) -> npt.NDArray[np.float32]:
    smooth = cv2.GaussianBlur(window, (0, 0), _GRADIENT_SIGMA_PX)
    gradient: npt.NDArray[np.float32] = (smooth[2:] - smooth[:-2]) * (0.5 * polarity)
    return gradient


def _nearest_strong_peaks(
    masked: npt.NDArray[np.float32], expected: npt.NDArray[np.float64]
) -> npt.NDArray[np.intp]:
    """Per column, the edge nearest the expected row among those nearly as strong as the best.

    On a turning gantry a static edge (a rib, the other dome seen laterally) can pass within
    the search range of the dome; the strongest edge there would jump onto it, whereas the
    dome moves continuously from where it was.
    """
    strongest = masked.max(axis=0)
    edge = np.full((1, masked.shape[1]), -np.inf, masked.dtype)
    up = np.vstack([edge, masked[:-1]])
    down = np.vstack([masked[1:], edge])
    local = (masked >= up) & (masked >= down) & np.isfinite(masked)
    strong = local & (masked >= _NEAR_PEAK_RELATIVE * strongest[None, :])
    rows = np.arange(masked.shape[0], dtype=np.float64)[:, None]
    distance = np.where(strong, np.abs(rows - expected[None, :]), np.inf)
    nearest: npt.NDArray[np.intp] = np.argmin(distance, axis=0)
    fallback = ~strong.any(axis=0)
    nearest[fallback] = np.argmax(masked, axis=0)[fallback]
    return nearest


_NEAR_PEAK_RELATIVE = 0.85
"""'Nearly as strong': within 15 % of the strongest edge of the column's search range."""


def _parabolic_offset(values: npt.NDArray[np.float64], index: int) -> float:
    """Sub-pixel offset of a peak at ``index`` from a parabola through it and its neighbours.

    Bounded to half a pixel: ``index`` may be the best of a restricted range rather than a
    local maximum, and on a plateau (8-bit or compressed frames) the parabola is nearly flat;
    unbounded, its vertex lands tens of pixels away.
    """
    if 0 < index < values.size - 1:
        y0, y1, y2 = values[index - 1], values[index], values[index + 1]
        denominator = y0 - 2.0 * y1 + y2
        if denominator < 0:
            return float(np.clip(0.5 * (y0 - y2) / denominator, -0.5, 0.5))
    return 0.0


class DomeTracker:
    """Streaming dome tracker: feed frames one at a time with :meth:`update`.

    Parameters
    ----------
    settings : TrackerSettings, optional
        Search and trust settings.
    intensity : IntensityValues, optional
        What the frames' values mean (raw panel counts by default). Either way the polarity of
        the dome edge is checked on the frames themselves at initialisation.

    Examples
    --------
    >>> tracker = DomeTracker()                                   # doctest: +SKIP
    >>> for frame, t, g in zip(frames, times_s, geometries):      # doctest: +SKIP
    ...     observation = tracker.update(frame, t, g)
    """

    def __init__(
        self,
        settings: TrackerSettings | None = None,
        intensity: IntensityValues = IntensityValues.RAW,
    ) -> None:
        self.settings = settings if settings is not None else TrackerSettings()
        self.intensity = intensity
        self._state: _State | None = None
        self._reference_score: float | None = None
        self._lost_state: _State | None = None
        self._frame_count = 0
        self._last_time_s: float | None = None
        self.detection_reason = ""
        """Why the current dome was accepted (anatomy, hint) or needs confirmation."""
        self.confirmed_late: dict[int, TrackingStatusValues] = {}
        """Frames (by count of frames seen) reported NEEDS_CONFIRMATION on an edge that was
        confirmed as the dome later, with the status they then deserve. A streaming caller has
        already used them unconfirmed; :func:`track_dome` re-labels them."""

    # --- public ---------------------------------------------------------------------------

    def update(
        self, frame: npt.NDArray[Any], time_s: float, geometry: ProjectionGeometry
    ) -> DomeObservation:
        """Track the dome on the next frame.

        Raises
        ------
        InvalidInputError
            Wrong shape or dtype, NaN pixels, a constant frame, or a time not after the
            previous frame's.
        GeometryError
            A geometry whose panel does not match the frame.
        """
        frame = self._validate(frame, time_s, geometry)
        if self._superior_towards_rows(geometry) > 0:
            # Feet first: the head is at the panel's bottom. Track on the head-up view, so the
            # lung is above the liver as detection expects; rows are mapped back on output.
            frame = frame[::-1]
        index = self._frame_count
        self._frame_count += 1
        dt = time_s - self._last_time_s if self._last_time_s is not None else math.inf
        self._last_time_s = time_s
        if self._state is None:
            return self._initialise(frame, index, time_s, geometry)
        if self._retry_anatomy_due(time_s):
            confirmed = self._initialise_from_anatomy(frame, index, time_s, geometry)
            if confirmed is not None:
                return confirmed
        observation = self._follow(frame, index, time_s, geometry, dt)
        if observation.status is TrackingStatusValues.LOST:
            self._lost_state, self._state = self._state, None
            # Following failed (the edge crossed the spine, or turned flat edge-on): the dome
            # may still be found on this very frame near where it just was.
            image = attenuation_image(frame, self.intensity)
            resumed = self._resume_near_last_seen(frame, image, index, time_s, geometry)
            if resumed is not None:
                return resumed
        return observation

    # --- steps ----------------------------------------------------------------------------

    def _superior_towards_rows(self, geometry: ProjectionGeometry) -> float:
        """Component of the patient's superior direction along the panel rows (-1 head first)."""
        superior = iec_support_from_lps(np.array([0.0, 0.0, 1.0]), self.settings.patient_position)
        return float(np.dot(superior, geometry.v_axis))

    def _window_size_px(self, geometry: ProjectionGeometry) -> tuple[int, int]:
        pixel_u, pixel_v = geometry.pixel_at_isocentre_mm
        half_height = max(4, round(self.settings.roi_half_height_mm / pixel_v))
        half_width = max(4, round(self.settings.roi_half_width_mm / pixel_u))
        return half_height, half_width

    def _initialise(
        self, frame: npt.NDArray[Any], index: int, time_s: float, geometry: ProjectionGeometry
    ) -> DomeObservation:
        image = attenuation_image(frame, self.intensity)
        resumed = self._resume_near_last_seen(frame, image, index, time_s, geometry)
        if resumed is not None:
            return resumed
        detection = self._detect(image, geometry)
        candidate = detection.candidate
        if candidate is None or not self._strong_enough(
            candidate, geometry, detection.required_contrast_to_noise
        ):
            return self._lost(index, time_s, geometry)
        if self._lost_state is not None:
            resumed = self._resume(frame, index, time_s, geometry, candidate)
            if resumed is not None:
                return resumed
        state = self._template_at(image, candidate, geometry)
        if state is None:
            return self._lost(index, time_s, geometry)
        state.confirmed = detection.confirmed
        state.confirmable_by_motion = detection.confirmable_by_motion
        state.detected_at_s = time_s
        self._state = state
        self.detection_reason = detection.reason
        if self._reference_score is None:
            self._reference_score = candidate.score
        return self._observation(index, time_s, geometry, 1.0, TrackingStatusValues.TRACKED)

    def _resume_near_last_seen(
        self,
        frame: npt.NDArray[Any],
        image: npt.NDArray[np.float32],
        index: int,
        time_s: float,
        geometry: ProjectionGeometry,
    ) -> DomeObservation | None:
        """The lost dome picked up near where it was last seen, or None."""
        near = self._near_last_seen(image, time_s, geometry)
        if near is None:
            return None
        # The candidate is where the dome was: search only around it, not a whole after-a-loss
        # range, where a stronger edge nearby would win.
        return self._resume(frame, index, time_s, geometry, near, dt=0.0)

    def _near_last_seen(
        self, image: npt.NDArray[np.float32], time_s: float, geometry: ProjectionGeometry
    ) -> DomeCandidate | None:
        """Just after a loss, the dome edge nearest where the dome was last seen, or None.

        On a turning gantry the dome often fades for a projection or two where it crosses the
        spine or the heart; a search of the whole frame then finds a stronger edge elsewhere
        (the other dome, the stomach) centimetres away. Breathing moves the dome at most
        ``max_speed_mm_per_s`` along the rows, and a few degrees of rotation move it little
        sideways, so the search starts from the last position.
        """
        lost = self._lost_state
        if lost is None or not lost.confirmed:
            return None
        elapsed_s = time_s - lost.seen_at_s
        if elapsed_s > _PREDICTION_HORIZON_S:
            return None
        pixel_u, pixel_v = geometry.pixel_at_isocentre_mm
        reach_mm = self.settings.min_search_mm + self.settings.max_speed_mm_per_s * elapsed_s
        reach_rows = round(reach_mm / pixel_v)
        reach_columns = round(_PREDICTION_SIDEWAYS_MM / pixel_u)
        row, column = round(lost.row), round(lost.column)
        region = (
            slice(max(0, row - reach_rows), row + reach_rows + 1),
            slice(max(0, column - reach_columns), column + reach_columns + 1),
        )
        found = [
            candidate
            for candidate in find_domes(image, region=region, polarity=lost.polarity)
            if candidate.contrast_to_noise
            >= _PREDICTED_CONTRAST_FRACTION * self.settings.min_contrast_to_noise
        ]
        if not found:
            return None
        return min(found, key=lambda c: math.hypot(c.apex_row - row, c.apex_column - column))

    def _retry_anatomy_due(self, time_s: float) -> bool:
        """While following an unconfirmed edge, look for the dome by anatomy again now and then.

        One frame's lung segmentation can fail (noise, compression, a breath at full
        inspiration); the next may not.
        """
        state = self._state
        if state is None or state.confirmed:
            return False
        if time_s - state.detected_at_s < _ANATOMY_RETRY_S:
            return False
        state.detected_at_s = time_s
        return True

    def _initialise_from_anatomy(
        self, frame: npt.NDArray[Any], index: int, time_s: float, geometry: ProjectionGeometry
    ) -> DomeObservation | None:
        """Start over on a dome found by anatomy, or None (keep following the current edge)."""
        image = attenuation_image(frame, self.intensity)
        detection = self._detect(image, geometry)
        candidate = detection.candidate
        if not detection.confirmed or candidate is None:
            return None
        if candidate.contrast_to_noise < self.settings.min_contrast_to_noise:
            return None
        state = self._template_at(image, candidate, geometry)
        if state is None:
            return None
        self._state = state
        self.detection_reason = detection.reason
        self._reference_score = candidate.score
        return self._observation(index, time_s, geometry, 1.0, TrackingStatusValues.TRACKED)

    def _detect(
        self, image: npt.NDArray[np.float32], geometry: ProjectionGeometry
    ) -> DomeDetection:
        """Anatomy-aware detection on the head-up frame, with the user's hint if any."""
        right_iec = iec_support_from_lps(np.array([-1.0, 0.0, 0.0]), self.settings.patient_position)
        view = DetectionView(
            patient_right_towards_column=float(np.dot(right_iec, geometry.u_axis)),
            pixel_at_isocentre_mm=geometry.pixel_at_isocentre_mm[0],
        )
        hint = self.settings.seed_column_row
        if hint is not None and self._superior_towards_rows(geometry) > 0:
            hint = (hint[0], geometry.detector_shape[0] - 1 - hint[1])
        return detect_dome(
            image,
            view,
            self.settings.hemidiaphragm,
            hint_column_row=hint,
            hint_radius_px=self.settings.seed_radius_px,
            min_contrast_to_noise=self.settings.min_contrast_to_noise,
        )

    def _strong_enough(
        self,
        candidate: DomeCandidate,
        geometry: ProjectionGeometry,
        required_contrast_to_noise: float | None,
    ) -> bool:
        """Above the noise, and after a loss as strong as the dome first found in this view."""
        floor = (
            self.settings.min_contrast_to_noise
            if required_contrast_to_noise is None
            else required_contrast_to_noise
        )
        if candidate.contrast_to_noise < floor:
            return False
        # At another gantry angle the dome looks different; only compare like with like.
        same_view = (
            self._lost_state is not None
            and abs(math.remainder(geometry.gantry_deg - self._lost_state.gantry_deg, 360.0)) < 5.0
        )
        if self._reference_score is None or not same_view:
            return True
        return candidate.score >= self.settings.reacquire_relative_score * self._reference_score

    def _resume(
        self,
        frame: npt.NDArray[Any],
        index: int,
        time_s: float,
        geometry: ProjectionGeometry,
        candidate: DomeCandidate,
        dt: float = math.inf,
    ) -> DomeObservation | None:
        """Pick up the dome lost earlier with its old template, keeping its calibrated apex.

        ``dt`` (s) sets the search range around the candidate, as between frames; infinite
        (the widest range) when the candidate is only roughly placed.
        """
        state = self._lost_state
        assert state is not None
        # Same view: the dome moves along the rows, so the template keeps its column and the
        # candidate's curve gives the row there (detection may place the apex a few columns off).
        same_view = abs(math.remainder(geometry.gantry_deg - state.gantry_deg, 360.0)) < 1e-6
        if not same_view:
            state.column = candidate.apex_column
        on_curve = candidate.curvature_per_px * (state.column - candidate.apex_column) ** 2
        state.row = candidate.apex_row + on_curve - state.steepest_offset_rows
        self._state = state
        observation = self._follow(frame, index, time_s, geometry, dt)
        if observation.status is TrackingStatusValues.TRACKED:
            self._lost_state = None
            return observation
        self._state = None
        return None

    def _template_at(
        self, image: npt.NDArray[np.float32], candidate: DomeCandidate, geometry: ProjectionGeometry
    ) -> _State | None:
        half_height, half_width = self._window_size_px(geometry)
        rows, cols = image.shape
        column = round(candidate.apex_column)
        # Refine the apex row to the sub-pixel gradient peak on the apex column.
        top = round(candidate.apex_row) - half_height - 1
        if top < 0 or top + 2 * half_height + 3 > rows:
            return None
        if column - half_width < 0 or column + half_width + 1 > cols:
            return None
        window = image[
            top : top + 2 * half_height + 3, column - half_width : column + half_width + 1
        ]
        gradient = _gradient(window, candidate.polarity)
        centre_columns = gradient[:, half_width - 2 : half_width + 3].mean(axis=1).astype(float)
        # Refine the detection, do not re-select: on a noisy frame the broad edge can have two
        # near-equal gradient peaks, and the detector's wider parabola already chose between.
        low = half_height - _REFINE_ROWS
        peak = int(np.argmax(centre_columns[low : half_height + _REFINE_ROWS + 1])) + low
        apex_row = top + 1 + peak + _parabolic_offset(centre_columns, peak)
        centre = round(apex_row)
        top = centre - half_height - 1
        if top < 0 or top + 2 * half_height + 3 > rows:
            return None
        window = image[
            top : top + 2 * half_height + 3, column - half_width : column + half_width + 1
        ]
        state = _State(
            template=_gradient(window, candidate.polarity),
            row=float(centre),
            column=float(column),
            curvature_per_px=candidate.curvature_per_px,
            polarity=candidate.polarity,
            frames_in_template=1,
            gantry_deg=geometry.gantry_deg,
            apex_offset_rows=apex_row - centre,
            steepest_offset_rows=apex_row - centre,
        )
        self._accumulate_profile(state, window, 0.0)
        return state

    @staticmethod
    def _profile(window: npt.NDArray[np.float32], polarity: int) -> npt.NDArray[np.float64]:
        """Attenuation down the central columns of a template-sized window."""
        middle = window.shape[1] // 2
        band = window[:, middle - _PROFILE_HALF_WIDTH_PX : middle + _PROFILE_HALF_WIDTH_PX + 1]
        smooth = cv2.GaussianBlur(band, (0, 0), _GRADIENT_SIGMA_PX)
        profile: npt.NDArray[np.float64] = polarity * smooth.mean(axis=1).astype(np.float64)
        return profile

    def _accumulate_profile(
        self, state: _State, window: npt.NDArray[np.float32], row_offset: float
    ) -> None:
        """Average aligned apex-column profiles, then place the apex at the edge onset.

        The onset fit needs a low-noise profile: it is refitted on the mean of the first frames
        and then frozen, so relative motion is never disturbed afterwards.
        """
        if state.profile_frames >= _ONSET_FRAMES:
            return
        profile = self._profile(window, state.polarity)
        if row_offset:
            rows = np.arange(profile.size, dtype=np.float64)
            profile = np.interp(rows + row_offset, rows, profile)
        state.profile_sum = profile if state.profile_frames == 0 else state.profile_sum + profile
        state.profile_frames += 1
        if state.profile_frames not in (1, _ONSET_FRAMES):
            return  # a fit per frame would cost latency; fit the first frame, then the mean
        # Window row 0 sits one row above gradient row 0, i.e. template centre - half - 1.
        half_height = (state.template.shape[0] - 1) // 2
        steepest = half_height + 1 + state.steepest_offset_rows
        fit = fit_edge_onset(state.profile_sum / state.profile_frames, steepest)
        if fit is not None:
            state.apex_offset_rows = fit[0] - (half_height + 1)
            state.onset_fitted = True

    def _follow(
        self,
        frame: npt.NDArray[Any],
        index: int,
        time_s: float,
        geometry: ProjectionGeometry,
        dt: float,
    ) -> DomeObservation:
        state = self._state
        assert state is not None
        template = state.template
        half_height = (template.shape[0] - 1) // 2
        half_width = (template.shape[1] - 1) // 2
        pixel_v = geometry.pixel_at_isocentre_mm[1]
        search_mm = max(self.settings.min_search_mm, self.settings.max_speed_mm_per_s * dt)
        search = round(min(search_mm / pixel_v, 4.0 * half_height))
        turning = abs(math.remainder(geometry.gantry_deg - state.gantry_deg, 360.0)) > 1e-6
        if turning:
            return self._follow_edge(frame, index, time_s, geometry, search)
        sideways = 0
        rows, cols = frame.shape
        centre_row, centre_col = round(state.row), round(state.column)
        top = centre_row - half_height - search - 1
        left = centre_col - half_width - sideways
        bottom = centre_row + half_height + search + 2
        right = centre_col + half_width + sideways + 1
        if top < 0 or bottom > rows or left < 0 or right > cols:
            return self._lost(index, time_s, geometry)
        window = attenuation_image(frame[top:bottom, left:right], self.intensity)
        gradient = _gradient(window, state.polarity)
        scores = self._ncc(gradient, template)
        flat = int(np.argmax(scores))
        k_row, k_col = (int(k) for k in np.unravel_index(flat, scores.shape))
        peak = float(scores[k_row, k_col])
        at_edge = k_row in (0, scores.shape[0] - 1)
        row_offset = _parabolic_offset(scores[:, k_col].astype(float), int(k_row))
        col_offset = (
            _parabolic_offset(scores[k_row, :].astype(float), int(k_col)) if sideways else 0.0
        )
        new_row = top + 1 + k_row + half_height + row_offset
        new_col = left + k_col + half_width + col_offset
        if peak < self.settings.lost_confidence or at_edge:
            return self._lost(index, time_s, geometry, confidence=max(peak, 0.0))
        # At low dose even a perfect match correlates weakly with a noisy template: a frame is
        # also trusted when it matches as well as the recent frames did.
        recent = state.recent_peaks
        typical = float(np.median(recent)) if len(recent) >= 5 else 1.0
        trusted = peak >= min(self.settings.tracked_confidence, _RELATIVE_TRACKED * typical)
        status = TrackingStatusValues.TRACKED if trusted else TrackingStatusValues.LOW_CONFIDENCE
        recent.append(peak)
        del recent[:-_RECENT_PEAKS]
        height, width = template.shape
        state.row, state.column = float(new_row), float(new_col)
        if status is TrackingStatusValues.TRACKED or state.frames_in_template < _ONSET_FRAMES:
            self._remember(gradient[k_row : k_row + height, k_col : k_col + width])
            self._accumulate_profile(
                state, window[k_row : k_row + height + 2, k_col : k_col + width], row_offset
            )
        state.gantry_deg = geometry.gantry_deg
        return self._observation(index, time_s, geometry, min(peak, 1.0), status)

    def _follow_edge(
        self,
        frame: npt.NDArray[Any],
        index: int,
        time_s: float,
        geometry: ProjectionGeometry,
        search: int,
    ) -> DomeObservation:
        """Follow the dome edge itself while the gantry turns (no template to drift).

        Per column, the rise nearest the previous dome curve among those within ``search``
        rows of it and nearly as steep as the steepest there (:func:`_nearest_strong_peaks`); a
        parabola fitted to those points with outliers (ribs, heart, spine crossing the edge)
        rejected; its vertex is the apex of this projection. The apex is then moved to the edge
        onset with a running average of per-frame onset fits, since the edge's profile changes
        with the angle.
        """
        state = self._state
        assert state is not None
        half_width = 2 * ((state.template.shape[1] - 1) // 2)
        rows, cols = frame.shape
        centre_row, centre_col = round(state.row), round(state.column)
        margin = search + 2 + round(state.curvature_per_px * half_width**2)
        top, bottom = centre_row - margin - 1, centre_row + margin + 2
        left, right = centre_col - half_width, centre_col + half_width + 1
        if top < 0 or bottom > rows or left < 0 or right > cols:
            return self._lost(index, time_s, geometry)
        window = attenuation_image(frame[top:bottom, left:right], self.intensity)
        smooth = cv2.GaussianBlur(window, (0, 0), _EDGE_SIGMA_PX)
        gradient = (smooth[2:] - smooth[:-2]) * (0.5 * state.polarity)
        offsets = np.arange(-half_width, half_width + 1, dtype=np.float64)
        offsets_from_apex = offsets + centre_col - state.column
        expected = state.row + state.curvature_per_px * offsets_from_apex**2 - (top + 1)
        row_index = np.arange(gradient.shape[0], dtype=np.float64)[:, None]
        allowed = np.abs(row_index - expected[None, :]) <= search
        masked = np.where(allowed, gradient, -np.inf)
        peaks = _nearest_strong_peaks(masked, expected)
        columns = np.arange(gradient.shape[1])
        strength = gradient[peaks, columns]
        above = gradient[np.clip(peaks - 1, 0, None), columns]
        below = gradient[np.clip(peaks + 1, None, gradient.shape[0] - 1), columns]
        curvature = above - 2.0 * strength + below
        interior = (peaks > 0) & (peaks < gradient.shape[0] - 1) & (curvature < 0)
        sub_pixel = np.where(interior, 0.5 * (above - below) / np.where(interior, curvature, -1), 0)
        edge_rows = peaks + sub_pixel
        usable = strength > 0.3 * max(float(strength.max()), 1e-12)
        fit = None
        for _ in range(3):
            if np.count_nonzero(usable) < 6:
                break
            fit = np.polyfit(offsets[usable], edge_rows[usable], 2, w=np.sqrt(strength[usable]))
            residual = edge_rows - np.polyval(fit, offsets)
            spread = float(np.std(residual[usable]))
            usable &= np.abs(residual) < max(1.5, 2.5 * spread)
        inliers = float(np.count_nonzero(usable)) / offsets.size
        if fit is None or fit[0] <= 1e-4 or inliers < self.settings.lost_confidence:
            return self._lost(index, time_s, geometry, confidence=inliers)
        vertex = float(np.clip(-fit[1] / (2.0 * fit[0]), -half_width / 2, half_width / 2))
        state.row = float(np.polyval(fit, vertex)) + top + 1
        state.column = centre_col + vertex
        state.curvature_per_px = float(fit[0])
        state.gantry_deg = geometry.gantry_deg
        profile = self._profile(
            window[:, round(vertex) + half_width - _PROFILE_HALF_WIDTH_PX - 1 :][
                :, : 2 * _PROFILE_HALF_WIDTH_PX + 3
            ],
            state.polarity,
        )
        onset = fit_edge_onset(profile, state.row - top)
        if onset is not None:
            measured = onset[0] + top - state.row
            state.apex_offset_rows += _EDGE_ONSET_SMOOTHING * (measured - state.apex_offset_rows)
            state.onset_fitted = True
        status = (
            TrackingStatusValues.TRACKED
            if inliers >= self.settings.tracked_confidence
            else TrackingStatusValues.LOW_CONFIDENCE
        )
        return self._observation(index, time_s, geometry, inliers, status)

    def _remember(self, aligned: npt.NDArray[np.float32]) -> None:
        """Average the first matched windows into the template, then keep it (less noise)."""
        state = self._state
        assert state is not None
        if state.frames_in_template >= _ONSET_FRAMES:
            return
        state.frames_in_template += 1
        weight = 1.0 / state.frames_in_template
        state.template = ((1.0 - weight) * state.template + weight * aligned).astype(np.float32)

    @staticmethod
    def _ncc(
        image: npt.NDArray[np.float32], template: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float64]:
        """Normalised cross-correlation of ``template`` at every offset inside ``image``."""
        scores = cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED)
        return np.asarray(scores, dtype=np.float64)

    # --- observations ---------------------------------------------------------------------

    def _observation(
        self,
        index: int,
        time_s: float,
        geometry: ProjectionGeometry,
        confidence: float,
        status: TrackingStatusValues,
    ) -> DomeObservation:
        state = self._state
        assert state is not None
        state.seen_at_s = time_s
        apex_row = state.row + state.apex_offset_rows
        apex_column = state.column
        columns = apex_column + np.arange(
            -_DISPLAY_HALF_WIDTH_PX, _DISPLAY_HALF_WIDTH_PX + 1.0, 4.0
        )
        curve_rows = apex_row + state.curvature_per_px * (columns - apex_column) ** 2
        superior_along_rows = self._superior_towards_rows(geometry)
        if superior_along_rows > 0:
            last_row = geometry.detector_shape[0] - 1
            apex_row, curve_rows = last_row - apex_row, last_row - curve_rows
        u_mm, v_mm = geometry.detector_mm_from_pixel(apex_column, apex_row)
        si_mm = float(superior_along_rows * v_mm / geometry.magnification)
        status = self._confirmation_status(state, si_mm, status)
        return DomeObservation(
            frame_index=index,
            time_s=float(time_s),
            status=status,
            confidence=float(np.clip(confidence, 0.0, 1.0)),
            apex_column=float(apex_column),
            apex_row=float(apex_row),
            apex_u_mm=float(u_mm),
            apex_v_mm=float(v_mm),
            si_isocentre_mm=si_mm,
            dome_columns=columns,
            dome_rows=curve_rows,
            gantry_deg=geometry.gantry_deg,
            apex_at_edge_onset=state.onset_fitted,
        )

    def _confirmation_status(
        self, state: _State, si_mm: float, status: TrackingStatusValues
    ) -> TrackingStatusValues:
        """An unconfirmed edge stays NEEDS_CONFIRMATION until it moves like a dome.

        Never by motion when detection found the image contradicting its anatomy
        (:attr:`~igrt.tracking.detection.DomeDetection.confirmable_by_motion`).
        """
        if state.confirmed:
            return status
        low, high = state.si_seen_mm if state.si_seen_mm is not None else (si_mm, si_mm)
        state.si_seen_mm = (min(low, si_mm), max(high, si_mm))
        moved_mm = state.si_seen_mm[1] - state.si_seen_mm[0]
        if state.confirmable_by_motion and moved_mm >= _CONFIRMING_MOTION_MM:
            state.confirmed = True
            self.confirmed_late.update(state.awaiting_confirmation)
            state.awaiting_confirmation.clear()
            self.detection_reason = (
                f"edge confirmed as the dome: it moved {_CONFIRMING_MOTION_MM:g} mm or more "
                "along the patient's superior-inferior axis"
            )
            return status
        state.awaiting_confirmation[self._frame_count - 1] = status
        return TrackingStatusValues.NEEDS_CONFIRMATION

    def _lost(
        self, index: int, time_s: float, geometry: ProjectionGeometry, confidence: float = 0.0
    ) -> DomeObservation:
        nan = math.nan
        empty = np.empty(0)
        return DomeObservation(
            frame_index=index,
            time_s=float(time_s),
            status=TrackingStatusValues.LOST,
            confidence=float(np.clip(confidence, 0.0, 1.0)),
            apex_column=nan,
            apex_row=nan,
            apex_u_mm=nan,
            apex_v_mm=nan,
            si_isocentre_mm=nan,
            dome_columns=empty,
            dome_rows=empty,
            gantry_deg=geometry.gantry_deg,
            apex_at_edge_onset=False,
        )

    # --- validation -----------------------------------------------------------------------

    def _validate(
        self, frame: npt.NDArray[Any], time_s: float, geometry: ProjectionGeometry
    ) -> npt.NDArray[Any]:
        array = np.asarray(frame)
        if array.ndim != 2:
            raise InvalidInputError(
                f"a frame must be a 2D image, got shape {array.shape}", field="frame"
            )
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise InvalidInputError(f"unsupported frame dtype {array.dtype}", field="frame")
        if not isinstance(geometry, ProjectionGeometry):
            raise GeometryError("every frame needs its ProjectionGeometry", field="geometry")
        if array.shape != geometry.detector_shape:
            raise GeometryError(
                f"frame is {array.shape} but the geometry describes {geometry.detector_shape}",
                field="geometry",
            )
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise InvalidInputError("the frame holds NaN or infinite pixels", field="frame")
        if not math.isfinite(time_s):
            raise InvalidInputError("time_s must be finite", field="time_s")
        if self._last_time_s is not None and time_s <= self._last_time_s:
            raise InvalidInputError(
                f"frame time {time_s} s is not after the previous {self._last_time_s} s",
                field="time_s",
            )
        return array


def track_dome(sequence: FluoroSequence, settings: TrackerSettings | None = None) -> DomeTrack:
    """Track the dome on every frame of a sequence (the batch form of :class:`DomeTracker`).

    Positions are those of the streaming tracker frame for frame. Statuses differ in one way:
    frames reported NEEDS_CONFIRMATION on an edge that later moved like a dome (see
    :attr:`DomeTracker.confirmed_late`) get the status they would have had.

    Raises
    ------
    InvalidInputError
        A sequence of a single frame (motion needs a sequence), or a constant first frame.
    """
    if sequence.n_frames < 2:
        raise InvalidInputError("tracking needs a sequence of at least two frames", field="frames")
    tracker = DomeTracker(settings, sequence.intensity)
    observations = [
        tracker.update(sequence.frames[i], float(sequence.timestamps_s[i]), sequence.geometries[i])
        for i in range(sequence.n_frames)
    ]
    # The whole sequence is known: frames of an edge confirmed later by its breathing motion
    # are re-labelled, so a recording is not penalised for the seconds confirmation took.
    for index, status in tracker.confirmed_late.items():
        observations[index] = dataclasses.replace(observations[index], status=status)
    _track_back_from_first_confirmed(sequence, settings, observations)
    return DomeTrack(tuple(observations))


def _track_back_from_first_confirmed(
    sequence: FluoroSequence,
    settings: TrackerSettings | None,
    observations: list[DomeObservation],
) -> None:
    """Fill the frames before the dome was first found by anatomy, tracking backwards in time.

    When the first frames could only be followed unconfirmed (or not at all), the first frame
    with a confirmed dome seeds a tracker run over the earlier frames in reverse order; its
    trusted observations replace the unconfirmed or lost ones, moved by the difference between
    the two trackers' apices on the seed frame (the same frame: the backward run places its
    apex on the same edge, but its edge-onset calibration can differ by a constant).
    """
    usable = (TrackingStatusValues.TRACKED, TrackingStatusValues.LOW_CONFIDENCE)
    first = next((i for i, o in enumerate(observations) if o.status in usable), None)
    if first is None or first == 0:
        return
    seed = observations[first]
    base = settings if settings is not None else TrackerSettings()
    backward = DomeTracker(
        dataclasses.replace(base, seed_column_row=(seed.apex_column, seed.apex_row)),
        sequence.intensity,
    )
    offset: dict[str, float] = {}
    for i in range(first, -1, -1):
        observation = backward.update(
            sequence.frames[i], -float(sequence.timestamps_s[i]), sequence.geometries[i]
        )
        if i == first:
            if observation.status not in usable:
                return
            offset = {
                name: getattr(seed, name) - getattr(observation, name)
                for name in ("apex_column", "apex_row", "apex_u_mm", "apex_v_mm", "si_isocentre_mm")
            }
            continue
        if observation.status in usable:
            observations[i] = dataclasses.replace(
                observation,
                frame_index=i,
                time_s=float(sequence.timestamps_s[i]),
                dome_columns=observation.dome_columns + offset["apex_column"],
                dome_rows=observation.dome_rows + offset["apex_row"],
                **{name: getattr(observation, name) + value for name, value in offset.items()},
            )
