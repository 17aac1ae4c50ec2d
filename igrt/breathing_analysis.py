"""Breathing-motion analysis of a superior-inferior trace: cycles, excursion, drift, holds.

:func:`analyse_breathing` turns a :class:`~igrt.trace.BreathingTrace` (SI position in mm over
time in s, positive = superior, so end-inhale is a minimum) into a :class:`BreathingAnalysis`.
Every setting comes from a :class:`~igrt.protocol.MotionProtocol`.

Method
------
1. **Valid samples.** Lost frames and samples with confidence below
   ``protocol.min_sample_confidence`` are dropped. Gaps between the remaining samples longer
   than ``protocol.max_gap_s`` are recorded; the samples are put on a uniform grid (the median
   sample interval) by linear interpolation when the sampling is not already uniform.
2. **Noise.** The white-noise SD of the positions is estimated from third differences of
   consecutive valid samples (``1.4826·MAD / √20``), which cancel any smooth breathing curve.
3. **Dominant period** from the periodogram (Hann window, linear detrend) in the band
   ``protocol.min_period_s``-``protocol.max_period_s``. It sets everything that must adapt to
   the signal: the Savitzky-Golay smoothing window (quartic, a third of the period: long enough
   to average tracking noise, short enough to keep a sharp end-inhale), the minimum distance
   between extremes of the same kind (``min_cycle_distance_fraction`` × period) and, through a
   first pass, the minimum prominence.
4. **Extremes** with :func:`scipy.signal.find_peaks` on the smoothed signal: maxima are
   end-exhale, minima end-inhale. The prominence threshold is ``min_prominence_fraction`` times
   the 75th percentile of the prominences found in a first pass, and at least three noise SDs.
   Extremes are forced to alternate (of two neighbours of one kind the more extreme is kept).
5. **Breath holds** are runs of at least ``hold_detection_min_s`` where the smoothed SI speed
   (2 s Savitzky-Golay derivative) stays below ``hold_max_speed_mm_per_s`` (lowered to a quarter
   of the typical breathing speed ``2·excursion/period`` for slow, shallow breathers) and whose
   level lies at least ``hold_min_depth_fraction`` of the median excursion inferior to the
   end-exhale baseline (an end-exhale pause is not a hold; holds at end-exhale are therefore not
   reported). Each hold's ends are refined on the unsmoothed samples: from the hold core
   outwards, as long as the samples stay within ``max(3·noise SD, 0.005 mm)`` of the straight
   line fitted to the core (two consecutive samples outside end the hold). ``level_mm`` is the
   line refitted over the refined hold at its start, ``drift_mm_per_s`` its slope. Without
   noise the ends are found to within one sample; with noise the dome must leave the line by
   three noise SDs, so a hold is measured longer by about ``2·sqrt(3·SD/c)`` (``c`` the
   curvature of the approach; about 0.5 s for 0.3 mm noise around a 10 mm deep hold).
6. **Cycles** are end-exhale → end-inhale → end-exhale triplets inside segments free of holds
   and long gaps. A cycle's ``amplitude_mm`` is the mean of its two end-exhale positions minus
   its end-inhale position (so a linear baseline drift does not bias it); its ``period_s`` is the
   time between its two end-exhale extremes.
7. **Outliers** (coughs, sighs, tracker spikes). A cycle is an outlier when its amplitude, or
   one of its end-exhale positions relative to the running median of 5 neighbouring end-exhale
   positions, deviates by more than ``outlier_z`` robust SDs (1.4826·MAD, floored at
   ``outlier_min_scale_fraction`` times the median excursion), or when a *transient* falls
   inside it: a sample further than ``outlier_z`` robust SDs from the smoothed signal (a 0.4 s
   cough is too brief for the smoothing to follow). A cough pushes the dome superior, so it
   inflates an end-exhale extreme (or cuts an inhale short) and corrupts the cycles around it;
   those cycles are excluded rather than allowed to become a 10 mm "breath". Outlier cycles are
   kept in ``cycles`` (``is_outlier=True``), counted in a quality flag, and excluded from
   **every** summary: the median, the 95th percentile, the CVs, the period, the drift and the
   "range without outliers" (highest inlier end-exhale minus lowest inlier end-inhale position,
   which also contains any baseline drift over the recording). When more than
   ``max_outlier_fraction`` of the cycles are outliers there is no typical breath left to
   summarise and the analysis is degraded.
8. **Drift** is the Theil-Sen slope of the inlier end-exhale positions against time
   (mm/min, positive = superior); ``end_exhale_sd_mm`` (end-exhale reproducibility) is their SD
   about that line. ``hold_reproducibility_mm`` is the range of the hold levels.

Excursion uncertainty
---------------------
``excursion_uncertainty_mm`` is the standard (1 SD) uncertainty of the median excursion::

    u = sqrt(u_tracking² + u_cycles²)
    u_tracking = √2 · σ_track
    u_cycles   = 1.2533 · SD(inlier amplitudes) / √n

``σ_track`` is the larger of the tracker's declared ``tracking_sd_mm`` and the noise SD
estimated from the trace. An amplitude is the difference of two tracked positions, hence √2.
``u_tracking`` is deliberately *not* divided by √n: tracker errors come from the same edge in
the same images and are correlated from frame to frame and cycle to cycle, so averaging over
cycles cannot be assumed to remove them. ``u_cycles`` is the standard error of a median
(``√(π/2)·SD/√n`` for near-normal data) and measures how well the recording pins down the
typical breath. The same combination with a seeded bootstrap standard error of the 95th
percentile gives ``excursion_p95_uncertainty_mm``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal as sps
from scipy import stats

from igrt.errors import InvalidInputError
from igrt.protocol import DEFAULT_PROTOCOL, ExcursionStatisticValues, MotionProtocol
from igrt.trace import BreathingTrace
from igrt.validation import real_number as _finite

__all__ = [
    "BreathingAnalysis",
    "BreathingCycle",
    "DetectedBreathHold",
    "QualityFlagValues",
    "QualityIssue",
    "analyse_breathing",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2.0)
"""Standard error of a median / (SD / √n) for near-normal data."""
_MAD_TO_SD = 1.4826
_SMOOTHING_PERIOD_FRACTION = 1.0 / 3.0
"""Savitzky-Golay window for locating extremes, as a fraction of the dominant period."""
_SMOOTHING_POLYORDER = 4
_HOLD_SMOOTHING_S = 2.0
"""Window of the Savitzky-Golay derivative used to find still intervals, s."""
_HOLD_SPEED_FRACTION = 0.25
"""Hold speed limit as a fraction of the typical breathing speed (2 · excursion / period)."""
_HOLD_MIN_TOLERANCE_MM = 0.005
_RUNNING_MEDIAN_EXHALES = 5
_BOOTSTRAP_RESAMPLES = 2000
_BOOTSTRAP_SEED = 20260101


class QualityFlagValues(enum.Enum):
    """Data-quality problems an analysis can report.

    ``degrades_result`` tells whether the problem makes the analysis untrustworthy as a whole
    (a decision built on it must be "re-assess"); the others are information.
    """

    TOO_FEW_CYCLES = "too_few_cycles"
    """Fewer non-outlier breathing cycles than ``protocol.min_cycles``."""
    NO_DOMINANT_PERIOD = "no_dominant_period"
    """No breathing period could be found (too short, flat, or no valid samples)."""
    LOST_FRAMES = "lost_frames"
    """More lost or low-confidence samples than ``protocol.max_lost_fraction``."""
    GAPS = "gaps"
    """Gaps longer than ``protocol.max_gap_s``; cycles overlapping them were discarded."""
    OUTLIER_CYCLES = "outlier_cycles"
    """Some cycles (coughs, sighs, spikes) were excluded from the summaries."""
    TOO_MANY_OUTLIERS = "too_many_outliers"
    """More outlier cycles than ``protocol.max_outlier_fraction``: no typical breath."""
    IRREGULAR = "irregular"
    """Amplitude or period coefficient of variation above ``protocol.max_irregularity_cv``."""

    @property
    def degrades_result(self) -> bool:
        """Whether this problem makes the analysis untrustworthy as a whole."""
        return self in _DEGRADING


_DEGRADING = frozenset(
    {
        QualityFlagValues.TOO_FEW_CYCLES,
        QualityFlagValues.NO_DOMINANT_PERIOD,
        QualityFlagValues.LOST_FRAMES,
        QualityFlagValues.TOO_MANY_OUTLIERS,
    }
)


@dataclass(frozen=True)
class QualityIssue:
    """One data-quality flag with the plain-language message explaining it."""

    flag: QualityFlagValues
    message: str

    def __post_init__(self) -> None:
        if not isinstance(self.flag, QualityFlagValues):
            raise InvalidInputError("flag must be a QualityFlagValues member", field="flag")
        if not isinstance(self.message, str) or not self.message:
            raise InvalidInputError("message must be a non-empty string", field="message")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "flag": self.flag.value,
            "degrades_result": self.flag.degrades_result,
            "message": self.message,
        }


def _optional_finite(value: object, name: str) -> float | None:
    return None if value is None else _finite(value, name)


def _optional_non_negative(value: object, name: str) -> float | None:
    number = _optional_finite(value, name)
    if number is not None and number < 0:
        raise InvalidInputError(f"{name} must not be negative, got {value!r}", field=name)
    return number


@dataclass(frozen=True)
class BreathingCycle:
    """One breathing cycle: end-exhale, end-inhale, end-exhale (times s, SI positions mm).

    Positions are those of the smoothed trace at the extremes (positive = superior).
    ``amplitude_mm`` is ``(exhale_start_mm + exhale_end_mm) / 2 - inhale_mm`` and
    ``period_s`` is ``exhale_end_s - exhale_start_s``.
    """

    exhale_start_s: float
    exhale_start_mm: float
    inhale_s: float
    inhale_mm: float
    exhale_end_s: float
    exhale_end_mm: float
    is_outlier: bool = False

    def __post_init__(self) -> None:
        for name in (
            "exhale_start_s",
            "exhale_start_mm",
            "inhale_s",
            "inhale_mm",
            "exhale_end_s",
            "exhale_end_mm",
        ):
            object.__setattr__(self, name, _finite(getattr(self, name), name))
        if not self.exhale_start_s < self.inhale_s < self.exhale_end_s:
            raise InvalidInputError(
                "a cycle needs exhale_start_s < inhale_s < exhale_end_s", field="inhale_s"
            )
        object.__setattr__(self, "is_outlier", bool(self.is_outlier))

    @property
    def amplitude_mm(self) -> float:
        """Peak-to-peak amplitude: mean end-exhale position minus end-inhale position, mm."""
        return 0.5 * (self.exhale_start_mm + self.exhale_end_mm) - self.inhale_mm

    @property
    def period_s(self) -> float:
        """Time from the starting to the ending end-exhale extreme, s."""
        return self.exhale_end_s - self.exhale_start_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping with units in the keys."""
        return {
            "exhale_start_s": self.exhale_start_s,
            "exhale_start_mm": self.exhale_start_mm,
            "inhale_s": self.inhale_s,
            "inhale_mm": self.inhale_mm,
            "exhale_end_s": self.exhale_end_s,
            "exhale_end_mm": self.exhale_end_mm,
            "amplitude_mm": self.amplitude_mm,
            "period_s": self.period_s,
            "is_outlier": self.is_outlier,
        }


@dataclass(frozen=True)
class DetectedBreathHold:
    """A breath hold found in a trace.

    Parameters
    ----------
    start_s, end_s : float
        First and last sample time of the hold, s.
    level_mm : float
        SI position at ``start_s`` of the line fitted to the hold, mm (positive = superior).
    drift_mm_per_s : float
        Slope of that line, mm/s (positive = the dome creeps superior during the hold).
    """

    start_s: float
    end_s: float
    level_mm: float
    drift_mm_per_s: float

    def __post_init__(self) -> None:
        for name in ("start_s", "end_s", "level_mm", "drift_mm_per_s"):
            object.__setattr__(self, name, _finite(getattr(self, name), name))
        if self.end_s <= self.start_s:
            raise InvalidInputError("a hold must end after it starts", field="end_s")

    @property
    def duration_s(self) -> float:
        """Length of the hold, s."""
        return self.end_s - self.start_s

    @property
    def drift_mm(self) -> float:
        """SI movement of the dome over the whole hold (slope × duration), mm."""
        return self.drift_mm_per_s * self.duration_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping with units in the keys."""
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "duration_s": self.duration_s,
            "level_mm": self.level_mm,
            "drift_mm_per_s": self.drift_mm_per_s,
            "drift_mm": self.drift_mm,
        }


@dataclass(frozen=True)
class BreathingAnalysis:
    """Result of :func:`analyse_breathing`. Lengths in mm, times in s.

    A summary that cannot be computed (for example with no cycle at all) is ``None``, never a
    made-up number; :attr:`quality` says why. Summaries use the non-outlier cycles only.

    Parameters
    ----------
    protocol_version : str
        Version of the protocol whose settings were used.
    n_samples : int
        Samples in the trace, lost frames included.
    duration_s : float
        Length of the trace, s.
    sample_rate_hz : float
        Median sampling rate, Hz.
    lost_fraction : float
        Fraction of samples lost or below the confidence limit.
    noise_sd_mm : float
        White-noise SD of the positions estimated from the trace, mm.
    tracking_sd_mm : float
        Position SD used in the uncertainty: the larger of the declared tracker error and
        ``noise_sd_mm``, mm.
    dominant_period_s : float or None
        Dominant breathing period from the periodogram, s.
    cycles : tuple of BreathingCycle
        Every measured cycle in time order, outliers included (flagged).
    excursion_median_mm, excursion_p95_mm : float or None
        Median and 95th percentile of the inlier cycle amplitudes, mm.
    range_without_outliers_mm : float or None
        Highest inlier end-exhale minus lowest inlier end-inhale position, mm.
    period_median_s : float or None
        Median inlier cycle period, s.
    rate_per_min : float or None
        Breathing rate, ``60 / period_median_s``, breaths per minute.
    amplitude_cv, period_cv : float or None
        Coefficients of variation (SD / mean, ddof 1) of inlier amplitudes and periods.
    drift_mm_per_min : float or None
        Theil-Sen slope of the inlier end-exhale positions, mm/min, positive = superior.
    end_exhale_sd_mm : float or None
        SD of the inlier end-exhale positions about the drift line, mm.
    holds : tuple of DetectedBreathHold
        Breath holds in time order.
    hold_reproducibility_mm : float or None
        Range (max - min) of the hold levels when there are at least two holds, mm.
    excursion_uncertainty_mm : float or None
        Standard uncertainty of ``excursion_median_mm`` (module docstring), mm.
    excursion_p95_uncertainty_mm : float or None
        Same for ``excursion_p95_mm`` (bootstrap standard error of the percentile), mm.
    uncertainty_tracking_mm, uncertainty_cycles_mm : float or None
        The two components of ``excursion_uncertainty_mm``, mm.
    quality : tuple of QualityIssue
        Data-quality flags with messages.

    Raises
    ------
    InvalidInputError
        If a value is of the wrong type, not finite, or negative where it cannot be.
    """

    protocol_version: str
    n_samples: int
    duration_s: float
    sample_rate_hz: float
    lost_fraction: float
    noise_sd_mm: float
    tracking_sd_mm: float
    dominant_period_s: float | None
    cycles: tuple[BreathingCycle, ...]
    excursion_median_mm: float | None
    excursion_p95_mm: float | None
    range_without_outliers_mm: float | None
    period_median_s: float | None
    rate_per_min: float | None
    amplitude_cv: float | None
    period_cv: float | None
    drift_mm_per_min: float | None
    end_exhale_sd_mm: float | None
    holds: tuple[DetectedBreathHold, ...]
    hold_reproducibility_mm: float | None
    excursion_uncertainty_mm: float | None
    excursion_p95_uncertainty_mm: float | None
    uncertainty_tracking_mm: float | None
    uncertainty_cycles_mm: float | None
    quality: tuple[QualityIssue, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.protocol_version, str):
            raise InvalidInputError("protocol_version must be a string", field="protocol_version")
        for name in ("duration_s", "sample_rate_hz", "lost_fraction", "noise_sd_mm"):
            value = _finite(getattr(self, name), name)
            if value < 0:
                raise InvalidInputError(f"{name} must not be negative", field=name)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "tracking_sd_mm", _finite(self.tracking_sd_mm, "tracking_sd_mm"))
        for name in ("drift_mm_per_min",):
            object.__setattr__(self, name, _optional_finite(getattr(self, name), name))
        for name in (
            "dominant_period_s",
            "excursion_median_mm",
            "excursion_p95_mm",
            "range_without_outliers_mm",
            "period_median_s",
            "rate_per_min",
            "amplitude_cv",
            "period_cv",
            "end_exhale_sd_mm",
            "hold_reproducibility_mm",
            "excursion_uncertainty_mm",
            "excursion_p95_uncertainty_mm",
            "uncertainty_tracking_mm",
            "uncertainty_cycles_mm",
        ):
            object.__setattr__(self, name, _optional_non_negative(getattr(self, name), name))
        for name, kind in (
            ("cycles", BreathingCycle),
            ("holds", DetectedBreathHold),
            ("quality", QualityIssue),
        ):
            items = tuple(getattr(self, name))
            if not all(isinstance(item, kind) for item in items):
                raise InvalidInputError(f"{name} must hold {kind.__name__} objects", field=name)
            object.__setattr__(self, name, items)

    # --- derived values ---------------------------------------------------------------------

    @property
    def inlier_cycles(self) -> tuple[BreathingCycle, ...]:
        """The cycles used by the summaries (outliers removed)."""
        return tuple(cycle for cycle in self.cycles if not cycle.is_outlier)

    @property
    def n_cycles(self) -> int:
        """Number of inlier (non-outlier) cycles."""
        return len(self.inlier_cycles)

    @property
    def n_outlier_cycles(self) -> int:
        """Number of cycles excluded as outliers."""
        return len(self.cycles) - self.n_cycles

    @property
    def quality_flags(self) -> frozenset[QualityFlagValues]:
        """The set of quality flags raised."""
        return frozenset(issue.flag for issue in self.quality)

    @property
    def degrading_issues(self) -> tuple[QualityIssue, ...]:
        """Quality issues that make the analysis untrustworthy as a whole."""
        return tuple(issue for issue in self.quality if issue.flag.degrades_result)

    @property
    def is_trustworthy(self) -> bool:
        """``True`` when no degrading quality issue was raised."""
        return not self.degrading_issues

    def excursion_mm(
        self, statistic: ExcursionStatisticValues = ExcursionStatisticValues.MEDIAN
    ) -> tuple[float | None, float | None]:
        """The excursion summary ``statistic`` and its standard uncertainty, mm."""
        if statistic is ExcursionStatisticValues.P95:
            return self.excursion_p95_mm, self.excursion_p95_uncertainty_mm
        return self.excursion_median_mm, self.excursion_uncertainty_mm

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping with units in the keys (``None`` for values not computed)."""
        return {
            "protocol_version": self.protocol_version,
            "n_samples": self.n_samples,
            "duration_s": self.duration_s,
            "sample_rate_hz": self.sample_rate_hz,
            "lost_fraction": self.lost_fraction,
            "noise_sd_mm": self.noise_sd_mm,
            "tracking_sd_mm": self.tracking_sd_mm,
            "dominant_period_s": self.dominant_period_s,
            "n_cycles": self.n_cycles,
            "n_outlier_cycles": self.n_outlier_cycles,
            "excursion_median_mm": self.excursion_median_mm,
            "excursion_p95_mm": self.excursion_p95_mm,
            "range_without_outliers_mm": self.range_without_outliers_mm,
            "excursion_uncertainty_mm": self.excursion_uncertainty_mm,
            "excursion_p95_uncertainty_mm": self.excursion_p95_uncertainty_mm,
            "uncertainty_tracking_mm": self.uncertainty_tracking_mm,
            "uncertainty_cycles_mm": self.uncertainty_cycles_mm,
            "period_median_s": self.period_median_s,
            "rate_per_min": self.rate_per_min,
            "amplitude_cv": self.amplitude_cv,
            "period_cv": self.period_cv,
            "drift_mm_per_min": self.drift_mm_per_min,
            "end_exhale_sd_mm": self.end_exhale_sd_mm,
            "hold_reproducibility_mm": self.hold_reproducibility_mm,
            "holds": [hold.to_dict() for hold in self.holds],
            "cycles": [cycle.to_dict() for cycle in self.cycles],
            "quality": [issue.to_dict() for issue in self.quality],
            "trustworthy": self.is_trustworthy,
        }


# --- signal helpers --------------------------------------------------------------------------


def _runs(mask: BoolArray) -> list[tuple[int, int]]:
    """``(first, stop)`` index pairs (stop exclusive) of the runs of True in ``mask``."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _noise_sd_mm(times_s: FloatArray, si_mm: FloatArray, max_step_s: float) -> float:
    """White-noise SD from third differences of consecutive, closely spaced samples."""
    if si_mm.size < 4:
        return 0.0
    step_ok = np.diff(times_s) <= max_step_s
    usable = step_ok[:-2] & step_ok[1:-1] & step_ok[2:]
    third = np.diff(si_mm, n=3)[usable]
    if third.size < 3:
        return 0.0
    mad = float(np.median(np.abs(third - np.median(third))))
    return _MAD_TO_SD * mad / math.sqrt(20.0)


def _odd_window(length_samples: float, minimum: int, n_samples: int) -> int:
    window = max(minimum, round(length_samples))
    if window % 2 == 0:
        window += 1
    largest = n_samples if n_samples % 2 == 1 else n_samples - 1
    return min(window, largest)


def _dominant_period_s(values: FloatArray, step_s: float, protocol: MotionProtocol) -> float | None:
    """Period of the largest periodogram peak in the breathing band, or None."""
    if values.size < 8 or values.size * step_s < protocol.min_period_s * 2:
        return None
    frequency, power = sps.periodogram(values, fs=1.0 / step_s, window="hann", detrend="linear")
    band = (frequency >= 1.0 / protocol.max_period_s) & (frequency <= 1.0 / protocol.min_period_s)
    if not np.any(band) or not np.any(power[band] > 0):
        return None
    peak = int(np.argmax(np.where(band, power, -np.inf)))
    return float(1.0 / frequency[peak])


def _extremes(
    smooth: FloatArray, distance: int, floor_mm: float, fraction: float
) -> tuple[IntArray, IntArray]:
    """Indices of end-exhale maxima and end-inhale minima with adaptive prominence."""

    def find(values: FloatArray) -> IntArray:
        first, props = sps.find_peaks(values, distance=distance, prominence=floor_mm)
        if first.size == 0:
            return np.asarray(first, dtype=np.intp)
        reference = float(np.percentile(props["prominences"], 75))
        threshold = max(floor_mm, fraction * reference)
        peaks, _ = sps.find_peaks(values, distance=distance, prominence=threshold)
        return np.asarray(peaks, dtype=np.intp)

    return find(smooth), find(-smooth)


def _alternate(exhales: IntArray, inhales: IntArray, smooth: FloatArray) -> list[tuple[int, int]]:
    """Merge extremes in time order, keeping the more extreme of two neighbours of one kind.

    Returns ``(kind, index)`` pairs with kind +1 for end-exhale and -1 for end-inhale.
    """
    merged = sorted([(int(i), 1) for i in exhales] + [(int(i), -1) for i in inhales])
    result: list[tuple[int, int]] = []
    for index, kind in merged:
        if result and result[-1][0] == kind:
            previous = result[-1][1]
            if kind * smooth[index] > kind * smooth[previous]:
                result[-1] = (kind, index)
            continue
        result.append((kind, index))
    return result


def _theil_sen(times_s: FloatArray, values: FloatArray) -> tuple[float, float]:
    """Slope and intercept of the Theil-Sen line."""
    slope, intercept, _, _ = stats.theilslopes(values, times_s)
    return float(slope), float(intercept)


def _running_median(values: FloatArray, width: int) -> FloatArray:
    half = width // 2
    out = np.empty_like(values)
    for i in range(values.size):
        out[i] = np.median(values[max(0, i - half) : i + half + 1])
    return out


@dataclass(frozen=True)
class _Grid:
    """Valid samples on a uniform time grid."""

    times_s: FloatArray
    si_mm: FloatArray
    step_s: float
    gaps_s: tuple[tuple[float, float], ...]


def _uniform_grid(times_s: FloatArray, si_mm: FloatArray, max_gap_s: float) -> _Grid:
    steps = np.diff(times_s)
    step_s = float(np.median(steps))
    gap_index = np.flatnonzero(steps > max_gap_s)
    gaps = tuple((float(times_s[i]), float(times_s[i + 1])) for i in gap_index)
    if np.all(np.abs(steps - step_s) <= 1e-3 * step_s):
        return _Grid(times_s, si_mm, step_s, gaps)
    n = math.floor((times_s[-1] - times_s[0]) / step_s + 1e-9) + 1
    grid = times_s[0] + step_s * np.arange(n, dtype=np.float64)
    return _Grid(grid, np.interp(grid, times_s, si_mm), step_s, gaps)


# --- breath holds ------------------------------------------------------------------------------


def _line(times_s: FloatArray, values: FloatArray) -> tuple[float, float]:
    """Least-squares slope and intercept (slope 0 for a single sample)."""
    if times_s.size < 2:
        return 0.0, float(values[0])
    slope, intercept = np.polyfit(times_s, values, 1)
    return float(slope), float(intercept)


def _extend(outside: BoolArray, index: int, direction: int) -> int:
    """Walk from ``index`` in ``direction`` until two consecutive samples are ``outside``."""
    while 0 <= index + direction < outside.size:
        following = index + 2 * direction
        next_out = bool(outside[index + direction])
        if next_out and (not 0 <= following < outside.size or bool(outside[following])):
            break
        index += direction
    return index


def _detect_holds(
    grid: _Grid,
    noise_sd_mm: float,
    typical_excursion_mm: float,
    typical_period_s: float,
    exhale_baseline: tuple[float, float],
    protocol: MotionProtocol,
) -> list[tuple[int, int]]:
    """Index ranges ``(first, last)`` (inclusive) of the breath holds on the grid."""
    t, si, step = grid.times_s, grid.si_mm, grid.step_s
    window = _odd_window(_HOLD_SMOOTHING_S / step, 5, si.size)
    if window < 5:
        return []
    speed = np.abs(sps.savgol_filter(si, window, 2, deriv=1, delta=step))
    typical_speed = 2.0 * typical_excursion_mm / typical_period_s
    speed_limit = min(protocol.hold_max_speed_mm_per_s, _HOLD_SPEED_FRACTION * typical_speed)
    still = speed <= speed_limit
    half = window // 2
    min_depth_mm = protocol.hold_min_depth_fraction * typical_excursion_mm
    slope, intercept = exhale_baseline
    holds: list[tuple[int, int]] = []
    for first, stop in _runs(still):
        if t[stop - 1] - t[first] < protocol.hold_detection_min_s:
            continue
        core_first, core_last = first + half, stop - 1 - half
        if core_last - core_first < 2:
            continue
        core_t, core_si = t[core_first : core_last + 1], si[core_first : core_last + 1]
        centre_s = float(np.mean(core_t))
        depth_mm = slope * centre_s + intercept - float(np.mean(core_si))
        if depth_mm < min_depth_mm:
            continue  # an end-exhale pause, not a hold
        line_slope, line_intercept = _line(core_t, core_si)
        residual = core_si - (line_slope * core_t + line_intercept)
        spread = _MAD_TO_SD * float(np.median(np.abs(residual - np.median(residual))))
        tolerance = max(3.0 * max(noise_sd_mm, spread), _HOLD_MIN_TOLERANCE_MM)
        outside = np.abs(si - (line_slope * t + line_intercept)) > tolerance
        start = _extend(outside, core_first, -1)
        end = _extend(outside, core_last, +1)
        if t[end] - t[start] >= protocol.hold_detection_min_s:
            if holds and start <= holds[-1][1]:
                holds[-1] = (holds[-1][0], max(end, holds[-1][1]))
            else:
                holds.append((start, end))
    return holds


# --- the analysis ------------------------------------------------------------------------------


def _empty_analysis(
    trace: BreathingTrace,
    protocol: MotionProtocol,
    lost_fraction: float,
    noise_sd_mm: float,
    tracking_sd_mm: float,
    issues: list[QualityIssue],
) -> BreathingAnalysis:
    flags = {issue.flag for issue in issues}
    if QualityFlagValues.NO_DOMINANT_PERIOD not in flags:
        issues.append(
            QualityIssue(
                QualityFlagValues.NO_DOMINANT_PERIOD,
                "no breathing period could be found in the valid samples",
            )
        )
    issues.append(
        QualityIssue(
            QualityFlagValues.TOO_FEW_CYCLES,
            f"no breathing cycle could be measured (need at least {protocol.min_cycles})",
        )
    )
    return BreathingAnalysis(
        protocol_version=protocol.version,
        n_samples=trace.n_samples,
        duration_s=trace.duration_s,
        sample_rate_hz=trace.sample_rate_hz,
        lost_fraction=lost_fraction,
        noise_sd_mm=noise_sd_mm,
        tracking_sd_mm=tracking_sd_mm,
        dominant_period_s=None,
        cycles=(),
        excursion_median_mm=None,
        excursion_p95_mm=None,
        range_without_outliers_mm=None,
        period_median_s=None,
        rate_per_min=None,
        amplitude_cv=None,
        period_cv=None,
        drift_mm_per_min=None,
        end_exhale_sd_mm=None,
        holds=(),
        hold_reproducibility_mm=None,
        excursion_uncertainty_mm=None,
        excursion_p95_uncertainty_mm=None,
        uncertainty_tracking_mm=None,
        uncertainty_cycles_mm=None,
        quality=tuple(issues),
    )


def _extreme_times_s(
    extremes: Sequence[tuple[int, int]], smooth: FloatArray, times_s: FloatArray, noise_sd_mm: float
) -> list[float]:
    """Time of each extreme: the middle of its plateau.

    The Lujan end-exhale is a long, nearly flat rest where the exact maximum is set by noise;
    its time is taken as the middle of the samples within ``max(2 noise SD, 2 % of the swing to
    the neighbouring extremes)`` of the extreme value.
    """
    result: list[float] = []
    for j, (kind, index) in enumerate(extremes):
        low = extremes[j - 1][1] if j > 0 else 0
        high = extremes[j + 1][1] if j + 1 < len(extremes) else smooth.size - 1
        swings = [abs(float(smooth[index] - smooth[n])) for n in (low, high) if n != index]
        swing = min(swings) if swings else 0.0
        tolerance = max(2.0 * noise_sd_mm, 0.02 * swing)
        near = kind * (smooth - smooth[index]) >= -tolerance
        first = index
        while first - 1 > low and near[first - 1]:
            first -= 1
        last = index
        while last + 1 < high and near[last + 1]:
            last += 1
        result.append(0.5 * float(times_s[first] + times_s[last]))
    return result


def _cycles_in_segments(
    extremes: Sequence[tuple[int, int]],
    smooth: FloatArray,
    times_s: FloatArray,
    blocked: Sequence[tuple[float, float]],
    noise_sd_mm: float,
) -> list[BreathingCycle]:
    """Exhale-inhale-exhale triplets that do not overlap a blocked interval (hold, gap)."""

    def clear(start_s: float, end_s: float) -> bool:
        return all(end_s < low or start_s > high for low, high in blocked)

    when = _extreme_times_s(extremes, smooth, times_s, noise_sd_mm)
    cycles: list[BreathingCycle] = []
    for j in range(len(extremes) - 2):
        (k0, i0), (k1, i1), (k2, i2) = extremes[j : j + 3]
        if (k0, k1, k2) != (1, -1, 1):
            continue
        if not clear(float(times_s[i0]), float(times_s[i2])):
            continue
        if 0.5 * (smooth[i0] + smooth[i2]) <= smooth[i1]:
            continue  # not a breath (possible only with extreme drift)
        cycles.append(
            BreathingCycle(
                exhale_start_s=when[j],
                exhale_start_mm=float(smooth[i0]),
                inhale_s=when[j + 1],
                inhale_mm=float(smooth[i1]),
                exhale_end_s=when[j + 2],
                exhale_end_mm=float(smooth[i2]),
            )
        )
    return cycles


def _transients_s(
    grid: _Grid, smooth: FloatArray, typical_excursion_mm: float, protocol: MotionProtocol
) -> list[float]:
    """Times of brief excursions (coughs, tracking spikes) that the smoothing cuts off.

    A transient is a run of samples whose distance from the smoothed signal exceeds
    ``outlier_z`` robust SDs of that distance (floored like the cycle outliers); its time is
    that of the largest distance in the run.
    """
    residual = grid.si_mm - smooth
    mad = float(np.median(np.abs(residual - np.median(residual))))
    scale = max(_MAD_TO_SD * mad, protocol.outlier_min_scale_fraction * typical_excursion_mm)
    if scale <= 0:
        return []
    far = np.abs(residual) > protocol.outlier_z * scale
    return [
        float(grid.times_s[first + int(np.argmax(np.abs(residual[first:stop])))])
        for first, stop in _runs(far)
    ]


def _mark_outliers(
    cycles: list[BreathingCycle], transients_s: Sequence[float], protocol: MotionProtocol
) -> list[BreathingCycle]:
    """Flag cycles with an outlying amplitude or end-exhale position, or a transient inside."""
    if len(cycles) < 3:
        return cycles
    amplitude = np.array([c.amplitude_mm for c in cycles])
    median = float(np.median(amplitude))
    floor = protocol.outlier_min_scale_fraction * abs(median)

    def robust_scale(values: FloatArray) -> float:
        mad = float(np.median(np.abs(values - np.median(values))))
        return max(_MAD_TO_SD * mad, floor, 1e-9)

    amplitude_z = np.abs(amplitude - median) / robust_scale(amplitude)
    # end-exhale positions, one per distinct extreme, against their running median
    exhale_times = sorted({c.exhale_start_s for c in cycles} | {c.exhale_end_s for c in cycles})
    position = {c.exhale_start_s: c.exhale_start_mm for c in cycles}
    position.update({c.exhale_end_s: c.exhale_end_mm for c in cycles})
    exhale = np.array([position[s] for s in exhale_times])
    residual = exhale - _running_median(exhale, _RUNNING_MEDIAN_EXHALES)
    exhale_z = np.abs(residual - np.median(residual)) / robust_scale(residual)
    bad_exhale = {s for s, z in zip(exhale_times, exhale_z, strict=True) if z > protocol.outlier_z}
    marked: list[BreathingCycle] = []
    for cycle, z in zip(cycles, amplitude_z, strict=True):
        outlier = bool(
            z > protocol.outlier_z
            or cycle.exhale_start_s in bad_exhale
            or cycle.exhale_end_s in bad_exhale
            or any(cycle.exhale_start_s <= s <= cycle.exhale_end_s for s in transients_s)
        )
        marked.append(
            BreathingCycle(
                exhale_start_s=cycle.exhale_start_s,
                exhale_start_mm=cycle.exhale_start_mm,
                inhale_s=cycle.inhale_s,
                inhale_mm=cycle.inhale_mm,
                exhale_end_s=cycle.exhale_end_s,
                exhale_end_mm=cycle.exhale_end_mm,
                is_outlier=outlier,
            )
        )
    return marked


def _bootstrap_p95_se(amplitude: FloatArray) -> float:
    rng = np.random.default_rng(_BOOTSTRAP_SEED)
    samples = rng.choice(amplitude, size=(_BOOTSTRAP_RESAMPLES, amplitude.size), replace=True)
    return float(np.std(np.percentile(samples, 95, axis=1), ddof=1))


def analyse_breathing(
    trace: BreathingTrace, *, protocol: MotionProtocol | None = None
) -> BreathingAnalysis:
    """Measure cycles, excursion, period, irregularity, drift and breath holds of a trace.

    The method, the outlier handling and the uncertainty model are described in the module
    docstring.

    Parameters
    ----------
    trace : BreathingTrace
        SI positions of the dome, mm (positive = superior), with times, confidence and
        lost-frame status.
    protocol : MotionProtocol or None, optional
        Analysis settings; ``None`` uses :data:`~igrt.protocol.DEFAULT_PROTOCOL`.

    Returns
    -------
    BreathingAnalysis
        Always returned; when the trace cannot be trusted the summaries that could not be
        computed are ``None`` and :attr:`BreathingAnalysis.quality` holds degrading issues.

    Raises
    ------
    InvalidInputError
        If ``trace`` is not a :class:`~igrt.trace.BreathingTrace` or ``protocol`` not a
        :class:`~igrt.protocol.MotionProtocol`.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(0.0, 60.0, 0.1)
    >>> si = -8.0 * np.sin(np.pi * t / 4.0) ** 6  # 8 mm peak to peak, 4 s period
    >>> result = analyse_breathing(BreathingTrace(t, si))
    >>> round(result.excursion_median_mm, 1), round(result.period_median_s, 1)
    (8.0, 4.0)
    >>> result.is_trustworthy
    True
    """
    if not isinstance(trace, BreathingTrace):
        raise InvalidInputError("trace must be a BreathingTrace", field="trace")
    protocol = DEFAULT_PROTOCOL if protocol is None else protocol
    if not isinstance(protocol, MotionProtocol):
        raise InvalidInputError("protocol must be a MotionProtocol", field="protocol")
    assert trace.valid is not None  # both set by BreathingTrace
    assert trace.confidence is not None

    usable = trace.valid & (trace.confidence >= protocol.min_sample_confidence)
    lost_fraction = 1.0 - float(np.count_nonzero(usable)) / trace.n_samples
    issues: list[QualityIssue] = []
    if lost_fraction > protocol.max_lost_fraction:
        issues.append(
            QualityIssue(
                QualityFlagValues.LOST_FRAMES,
                f"{lost_fraction:.0%} of the frames are lost or below confidence "
                f"{protocol.min_sample_confidence:g} (limit {protocol.max_lost_fraction:.0%}): "
                "the tracking cannot be trusted as a whole",
            )
        )
    times = trace.times_s[usable]
    si = trace.si_mm[usable]
    declared_sd = trace.tracking_sd_mm or 0.0
    noise_sd = _noise_sd_mm(times, si, 2.0 * trace.sample_interval_s) if si.size else 0.0
    tracking_sd = max(declared_sd, noise_sd)
    if si.size < 8:
        return _empty_analysis(trace, protocol, lost_fraction, noise_sd, tracking_sd, issues)

    grid = _uniform_grid(times, si, protocol.max_gap_s)
    if grid.gaps_s:
        longest = max(high - low for low, high in grid.gaps_s)
        issues.append(
            QualityIssue(
                QualityFlagValues.GAPS,
                f"{len(grid.gaps_s)} gap(s) in the tracking longer than {protocol.max_gap_s:g} s "
                f"(longest {longest:.1f} s); cycles overlapping them were not measured",
            )
        )
    period = _dominant_period_s(grid.si_mm, grid.step_s, protocol)
    if period is None:
        issues.append(
            QualityIssue(
                QualityFlagValues.NO_DOMINANT_PERIOD,
                f"no breathing period between {protocol.min_period_s:g} and "
                f"{protocol.max_period_s:g} s found",
            )
        )
        return _empty_analysis(trace, protocol, lost_fraction, noise_sd, tracking_sd, issues)

    window = _odd_window(
        _SMOOTHING_PERIOD_FRACTION * period / grid.step_s, _SMOOTHING_POLYORDER + 2, grid.si_mm.size
    )
    smooth = (
        sps.savgol_filter(grid.si_mm, window, _SMOOTHING_POLYORDER)
        if window > _SMOOTHING_POLYORDER + 1
        else grid.si_mm.copy()
    ).astype(np.float64)
    distance = max(1, int(protocol.min_cycle_distance_fraction * period / grid.step_s))
    exhales, inhales = _extremes(smooth, distance, 3.0 * noise_sd, protocol.min_prominence_fraction)

    # preliminary cycles give the typical excursion, period and end-exhale baseline for holds
    preliminary = _cycles_in_segments(
        _alternate(exhales, inhales, smooth), smooth, grid.times_s, grid.gaps_s, noise_sd
    )
    holds: list[DetectedBreathHold] = []
    transients: list[float] = []
    if len(preliminary) >= 2:
        typical_excursion = float(np.median([c.amplitude_mm for c in preliminary]))
        transients = _transients_s(grid, smooth, typical_excursion, protocol)
        typical_period = float(np.median([c.period_s for c in preliminary]))
        exhale_t = np.array(
            [c.exhale_start_s for c in preliminary] + [preliminary[-1].exhale_end_s]
        )
        exhale_mm = np.array(
            [c.exhale_start_mm for c in preliminary] + [preliminary[-1].exhale_end_mm]
        )
        baseline = _theil_sen(exhale_t, exhale_mm)
        for first, last in _detect_holds(
            grid, noise_sd, typical_excursion, typical_period, baseline, protocol
        ):
            hold_t, hold_si = grid.times_s[first : last + 1], grid.si_mm[first : last + 1]
            slope, intercept = _line(hold_t, hold_si)
            holds.append(
                DetectedBreathHold(
                    start_s=float(hold_t[0]),
                    end_s=float(hold_t[-1]),
                    level_mm=slope * float(hold_t[0]) + intercept,
                    drift_mm_per_s=slope,
                )
            )

    blocked = list(grid.gaps_s) + [(h.start_s, h.end_s) for h in holds]
    in_hold = np.zeros(grid.times_s.size, dtype=np.bool_)
    for hold in holds:
        in_hold |= (grid.times_s >= hold.start_s) & (grid.times_s <= hold.end_s)
    exhales = exhales[~in_hold[exhales]]
    inhales = inhales[~in_hold[inhales]]
    cycles = _mark_outliers(
        _cycles_in_segments(
            _alternate(exhales, inhales, smooth), smooth, grid.times_s, blocked, noise_sd
        ),
        transients,
        protocol,
    )
    inliers = [c for c in cycles if not c.is_outlier]
    n = len(inliers)
    n_outliers = len(cycles) - n
    if n_outliers:
        times_text = ", ".join(f"{c.inhale_s:.1f}" for c in cycles if c.is_outlier)
        issues.append(
            QualityIssue(
                QualityFlagValues.OUTLIER_CYCLES,
                f"{n_outliers} of {len(cycles)} cycles excluded as outliers (cough, sigh or "
                f"tracking spike; end-inhale at {times_text} s)",
            )
        )
    if cycles and n_outliers > protocol.max_outlier_fraction * len(cycles):
        issues.append(
            QualityIssue(
                QualityFlagValues.TOO_MANY_OUTLIERS,
                f"breathing too irregular to summarise: {n_outliers} of {len(cycles)} cycles are "
                f"outliers (limit {protocol.max_outlier_fraction:.0%}); coach the patient and "
                "repeat the recording",
            )
        )
    if n < protocol.min_cycles:
        issues.append(
            QualityIssue(
                QualityFlagValues.TOO_FEW_CYCLES,
                f"only {n} usable breathing cycle(s) (need at least {protocol.min_cycles})",
            )
        )

    amplitude = np.array([c.amplitude_mm for c in inliers])
    periods = np.array([c.period_s for c in inliers])
    excursion_median = excursion_p95 = range_mm = period_median = rate = None
    amplitude_cv = period_cv = drift = exhale_sd = None
    u_total = u_p95 = u_tracking = u_cycles = None
    if n >= 1:
        excursion_median = float(np.median(amplitude))
        excursion_p95 = float(np.percentile(amplitude, 95))
        range_mm = max(max(c.exhale_start_mm, c.exhale_end_mm) for c in inliers) - min(
            c.inhale_mm for c in inliers
        )
        period_median = float(np.median(periods))
        rate = 60.0 / period_median
        u_tracking = math.sqrt(2.0) * tracking_sd
    if n >= 2:
        amplitude_cv = float(np.std(amplitude, ddof=1) / np.mean(amplitude))
        period_cv = float(np.std(periods, ddof=1) / np.mean(periods))
        u_cycles = _MEDIAN_SE_FACTOR * float(np.std(amplitude, ddof=1)) / math.sqrt(n)
        assert u_tracking is not None
        u_total = math.hypot(u_tracking, u_cycles)
        u_p95 = math.hypot(u_tracking, _bootstrap_p95_se(amplitude))
        if max(amplitude_cv, period_cv) > protocol.max_irregularity_cv:
            issues.append(
                QualityIssue(
                    QualityFlagValues.IRREGULAR,
                    f"irregular breathing: amplitude CV {amplitude_cv:.2f}, period CV "
                    f"{period_cv:.2f} (flagged above {protocol.max_irregularity_cv:g})",
                )
            )
    exhale_points = sorted(
        {(c.exhale_start_s, c.exhale_start_mm) for c in inliers}
        | {(c.exhale_end_s, c.exhale_end_mm) for c in inliers}
    )
    if len(exhale_points) >= 3:
        exhale_t = np.array([p[0] for p in exhale_points])
        exhale_mm = np.array([p[1] for p in exhale_points])
        slope, intercept = _theil_sen(exhale_t, exhale_mm)
        drift = 60.0 * slope
        residual = exhale_mm - (slope * exhale_t + intercept)
        exhale_sd = float(np.sqrt(np.sum(residual**2) / max(1, residual.size - 2)))
    levels = [h.level_mm for h in holds]
    return BreathingAnalysis(
        protocol_version=protocol.version,
        n_samples=trace.n_samples,
        duration_s=trace.duration_s,
        sample_rate_hz=trace.sample_rate_hz,
        lost_fraction=lost_fraction,
        noise_sd_mm=noise_sd,
        tracking_sd_mm=tracking_sd,
        dominant_period_s=period,
        cycles=tuple(cycles),
        excursion_median_mm=excursion_median,
        excursion_p95_mm=excursion_p95,
        range_without_outliers_mm=range_mm,
        period_median_s=period_median,
        rate_per_min=rate,
        amplitude_cv=amplitude_cv,
        period_cv=period_cv,
        drift_mm_per_min=drift,
        end_exhale_sd_mm=exhale_sd,
        holds=tuple(holds),
        hold_reproducibility_mm=max(levels) - min(levels) if len(levels) >= 2 else None,
        excursion_uncertainty_mm=u_total,
        excursion_p95_uncertainty_mm=u_p95,
        uncertainty_tracking_mm=u_tracking,
        uncertainty_cycles_mm=u_cycles,
        quality=tuple(issues),
    )
