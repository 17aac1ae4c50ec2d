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
   first pass, the minimum prominence. The periodogram weighs each breath by its power, so a
   minority of large, slow breaths pulls this period long; the extremes are found a second time
   with the median period of the cycles of the first pass when that is shorter.
4. **Extremes** with :func:`scipy.signal.find_peaks` on the smoothed signal: maxima are
   end-exhale, minima end-inhale. The prominence threshold is ``min_prominence_fraction`` times
   the 75th percentile of the prominences found in a first pass, and at least three noise SDs.
   Extremes are forced to alternate (of two neighbours of one kind the more extreme is kept).
   The minimum distance keeps wobbles from counting as breaths but would also merge a real
   quick breath with its neighbour into one cycle whose amplitude belongs to no breath; so an
   extreme closer than that is still kept when its rise and fall are each at least
   ``quick_breath_min_fraction`` of the median amplitude (default 1: a typical breath) and it
   lies at least ``min_period_s`` from the next extreme of its kind.
5. **Breath holds** are runs of at least ``hold_detection_min_s`` where the smoothed SI speed
   (2 s Savitzky-Golay derivative) stays below ``hold_max_speed_mm_per_s`` (lowered to a quarter
   of the typical breathing speed ``2·excursion/period`` for slow, shallow breathers) and whose
   level lies at least ``hold_min_depth_fraction`` of the median excursion inferior to the
   end-exhale baseline, or which last at least ``exhale_hold_min_s`` at any level: a breath
   hold at end-exhale (the seed plans on an exhale CT) is found, a natural end-exhale pause of a
   few seconds is not. Each hold's ends are refined on the unsmoothed samples: from the hold core
   outwards, as long as the samples stay within ``max(3·noise SD, 0.005 mm)`` of the straight
   line fitted to the core (two consecutive samples outside end the hold). ``level_mm`` is the
   line refitted over the refined hold at its start, ``drift_mm_per_s`` its slope. Without
   noise the ends are found to within one sample; with noise the dome must leave the line by
   three noise SDs, so a hold is measured longer by about ``2·sqrt(3·SD/c)`` (``c`` the
   curvature of the approach; about 0.5 s for 0.3 mm noise around a 10 mm deep hold).
6. **Cycles** are end-exhale → end-inhale → end-exhale triplets inside segments free of holds
   and long gaps. Every complete cycle counts: a recording that starts or ends at an extreme
   (within ``max(3 noise SD, 10 %)`` of the swing of the nearest extreme of that kind) has that
   edge sample taken as an extreme, its time from the half-width of a neighbouring plateau.
   A cycle's ``amplitude_mm`` is the mean of its two end-exhale positions minus
   its end-inhale position (so a linear baseline drift does not bias it); its ``period_s`` is the
   time between its two end-exhale extremes.
7. **Outliers** (coughs, sighs, tracker spikes). A cycle is an outlier when its amplitude, or
   one of its end-exhale positions relative to the running median of 5 neighbouring end-exhale
   positions, deviates by more than ``outlier_z`` robust SDs (1.4826·MAD, floored at
   ``outlier_min_scale_fraction`` times the median excursion), or when a *transient* falls
   inside it: a sample further than ``outlier_z`` robust SDs from the smoothed signal (a 0.4 s
   cough is too brief for the smoothing to follow). A cough pushes the dome superior, so it
   inflates an end-exhale extreme (or cuts an inhale short) and corrupts the cycles around it;
   those cycles are excluded rather than allowed to become a 10 mm "breath". Exclusion is for
   rare events: cycles of outlying *amplitude* or *end-exhale* (whole breaths unlike the
   others: a sigh, the long exhale of a sentence) are excluded only while they are at most
   ``max_rare_event_fraction`` of the cycles; frequent ones are the patient's breathing and
   stay in every summary. Only transients, faster than any breath, always exclude. Outlier
   cycles are kept in ``cycles`` (``is_outlier=True``, ``outlier_reason``), listed with
   amplitude and reason in the quality flag and in ``excluded_cycles``, counted in the 95th
   percentile (the large-breath safeguard must not rest on an exclusion) and excluded from
   every other summary: the median, the CVs, the period, the drift and the
   "range without outliers" (highest inlier end-exhale minus lowest inlier end-inhale position,
   which also contains any baseline drift over the recording). When more than
   ``max_outlier_fraction`` of the cycles are outliers there is no typical breath left to
   summarise and the analysis is degraded. With at least two but fewer than
   ``protocol.min_cycles`` inlier cycles the excursion is given with its uncertainty and
   flagged ``provisional``; with fewer than two there is no number.
8. **Drift** is the Theil-Sen slope of the inlier end-exhale positions against time
   (mm/min, positive = superior); ``end_exhale_sd_mm`` (end-exhale reproducibility) is their SD
   about that line. ``hold_reproducibility_mm`` is the range of the hold levels.

Excursion uncertainty
---------------------
``excursion_uncertainty_mm`` is the standard (1 SD) uncertainty of the median excursion::

    u          = sqrt(max(u_cycles, u_random)² + u_scale²)
    u_cycles   = 1.2533 · 1.4826 · MAD(inlier amplitudes) / √n
    u_random   = 1.2533 · √2 · σ_track / √n
    u_scale    = f · e        (f = protocol.tracking_scale_fraction, 3 %)

A tracker error that is the same in every frame (an offset of the edge followed) cancels in a
peak-to-peak amplitude; what does not cancel is (a) random per-frame error, which is part of
the observed amplitude spread and averages over the cycles (``u_cycles``, floored by
``u_random`` from the tracker's declared or the trace's estimated σ_track, in case the sampled
cycles look cleaner than the tracker can be), and (b) a scale error of the whole trace
(magnification: the dome lies off the isocentre plane), which does not average out
(``u_scale``). So the uncertainty shrinks with more cycles down to ``f·e`` (0.15 mm at 5 mm):
a borderline result is no dead end. ``uncertainty_tracking_mm`` reports
``sqrt(u_random² + u_scale²)``, ``uncertainty_cycles_mm`` ``u_cycles``. The p95 uses a seeded
bootstrap standard error in place of ``u_cycles``.

Limits: σ_track (0.25 mm) and ``f`` come from simulation and geometry, not yet from the
tracker measured on real images. White tracking noise biases the measured amplitude upwards
(about +0.1-0.2 mm at 0.25 mm noise on sharp end-inhale peaks); that bias is not modelled.
"""

from __future__ import annotations

import dataclasses
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
_MIN_CYCLES_FOR_A_NUMBER = 2
"""Fewest inlier cycles for an excursion with an uncertainty (a provisional one below
``protocol.min_cycles``)."""
_EDGE_EXTREME_TOLERANCE_FRACTION = 0.1
"""A trace's first or last sample counts as an extreme when it lies within this fraction of the
neighbouring swing (or three noise SDs) of the nearest extreme of the same kind."""


class QualityFlagValues(enum.Enum):
    """Data-quality problems an analysis can report.

    ``degrades_result`` tells whether the problem makes the analysis untrustworthy as a whole
    (a decision built on it must be "re-assess"); the others are information.
    """

    TOO_FEW_CYCLES = "too_few_cycles"
    """Fewer than two non-outlier breathing cycles: no excursion with an uncertainty."""
    PROVISIONAL = "provisional"
    """Fewer non-outlier cycles than ``protocol.min_cycles``: the excursion is provisional."""
    FREQUENT_LARGE_BREATHS = "frequent_large_breaths"
    """Cycles of outlying amplitude are too frequent to be rare events: they were kept."""
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
    outlier_reason: str = ""

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
        if not isinstance(self.outlier_reason, str) or (
            self.is_outlier and not self.outlier_reason
        ):
            raise InvalidInputError(
                "an outlier cycle needs an outlier_reason (a string)", field="outlier_reason"
            )

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
            "outlier_reason": self.outlier_reason or None,
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
        Median of the inlier cycle amplitudes and 95th percentile of all measured cycle
        amplitudes (outliers included), mm.
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
    def is_provisional(self) -> bool:
        """``True`` when fewer cycles than the protocol asks for were measured."""
        return QualityFlagValues.PROVISIONAL in self.quality_flags

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
            "excluded_cycles": [
                {
                    "inhale_s": c.inhale_s,
                    "amplitude_mm": c.amplitude_mm,
                    "reason": c.outlier_reason,
                }
                for c in self.cycles
                if c.is_outlier
            ],
            "quality": [issue.to_dict() for issue in self.quality],
            "trustworthy": self.is_trustworthy,
            "provisional": self.is_provisional,
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
        still_s = float(t[stop - 1] - t[first])
        if depth_mm < min_depth_mm and still_s < protocol.exhale_hold_min_s:
            continue  # a natural end-exhale pause, not a hold
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
    samples: _Samples,
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
    return _assemble(trace, protocol, samples, None, (), _Summary(), (None, None), (), issues)


def _extreme_times_s(
    extremes: Sequence[tuple[int, int]], smooth: FloatArray, times_s: FloatArray, noise_sd_mm: float
) -> list[float]:
    """Time of each extreme: the middle of its plateau.

    The Lujan end-exhale is a long, nearly flat rest where the exact maximum is set by noise;
    its time is taken as the middle of the samples within ``max(2 noise SD, 2 % of the swing to
    the neighbouring extremes)`` of the extreme value. A plateau cut by the start or end of the
    recording is given the half-width of the nearest complete plateau of the same kind, so the
    first and last cycles keep their true period.
    """
    plateaus = [_plateau(extremes, j, smooth, noise_sd_mm) for j in range(len(extremes))]
    result: list[float] = []
    for j, (first, last) in enumerate(plateaus):
        cut_start, cut_end = first == 0, last == smooth.size - 1
        if cut_start != cut_end:
            half = _neighbour_half_width(extremes, plateaus, j, smooth.size)
            if half is not None:
                centre = last - half if cut_start else first + half
                step = float(times_s[1] - times_s[0]) if times_s.size > 1 else 0.0
                result.append(float(times_s[0]) + centre * step)
                continue
        result.append(0.5 * float(times_s[first] + times_s[last]))
    return result


def _plateau(
    extremes: Sequence[tuple[int, int]], j: int, smooth: FloatArray, noise_sd_mm: float
) -> tuple[int, int]:
    kind, index = extremes[j]
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
    return first, last


def _neighbour_half_width(
    extremes: Sequence[tuple[int, int]],
    plateaus: Sequence[tuple[int, int]],
    j: int,
    n_samples: int,
) -> float | None:
    """Half-width (samples) of the nearest uncut plateau of the same kind as extreme ``j``."""
    kind = extremes[j][0]
    candidates = sorted(
        (abs(i - j), plateaus[i])
        for i in range(len(extremes))
        if i != j
        and extremes[i][0] == kind
        and plateaus[i][0] > 0
        and plateaus[i][1] < n_samples - 1
    )
    if not candidates:
        return None
    first, last = candidates[0][1]
    return 0.5 * (last - first)


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
    """Flag rare events: a transient inside, or a rare outlying amplitude or end-exhale.

    A transient (faster than breathing) is never a breath and always excludes its cycle. An
    outlying amplitude or end-exhale is a whole breath unlike the others (a sigh, a deeper
    exhale): such cycles are excluded only while they are rare (at most
    ``protocol.max_rare_event_fraction`` of the cycles); frequent ones are part of the patient's
    breathing and stay in every summary, the 95th percentile above all.
    """
    if len(cycles) < 3:
        return cycles
    breath_reasons = _breath_scale_outliers(cycles, protocol)
    if len(breath_reasons) > protocol.max_rare_event_fraction * len(cycles):
        breath_reasons = {}
    marked: list[BreathingCycle] = []
    for index, cycle in enumerate(cycles):
        reasons = []
        if any(cycle.exhale_start_s <= s <= cycle.exhale_end_s for s in transients_s):
            reasons.append("transient (cough or tracking spike)")
        reasons.extend(breath_reasons.get(index, []))
        marked.append(
            dataclasses.replace(
                cycle, is_outlier=bool(reasons), outlier_reason="; ".join(dict.fromkeys(reasons))
            )
        )
    return marked


def _breath_scale_outliers(
    cycles: Sequence[BreathingCycle], protocol: MotionProtocol
) -> dict[int, list[str]]:
    """Cycle index -> reasons, for cycles of outlying amplitude or with an outlying end-exhale."""
    amplitude_reasons = _amplitude_outliers(cycles, protocol)
    exhale_reasons = _exhale_outliers(cycles, protocol)
    reasons: dict[int, list[str]] = {}
    for index, cycle in enumerate(cycles):
        found = [
            exhale_reasons[when]
            for when in (cycle.exhale_start_s, cycle.exhale_end_s)
            if when in exhale_reasons
        ]
        if index in amplitude_reasons:
            found.append(amplitude_reasons[index])
        if found:
            reasons[index] = found
    return reasons


def _robust_scale(values: FloatArray, floor: float) -> float:
    mad = float(np.median(np.abs(values - np.median(values))))
    return max(_MAD_TO_SD * mad, floor, 1e-9)


def _amplitude_outliers(
    cycles: Sequence[BreathingCycle], protocol: MotionProtocol
) -> dict[int, str]:
    """Cycle index -> reason, for amplitudes beyond ``outlier_z`` robust SDs of the median."""
    amplitude = np.array([c.amplitude_mm for c in cycles])
    median = float(np.median(amplitude))
    scale = _robust_scale(amplitude, protocol.outlier_min_scale_fraction * abs(median))
    z = np.abs(amplitude - median) / scale
    return {
        int(i): f"amplitude {amplitude[i]:.1f} mm vs median {median:.1f} mm (z {z[i]:.1f})"
        for i in np.flatnonzero(z > protocol.outlier_z)
    }


def _exhale_outliers(
    cycles: Sequence[BreathingCycle], protocol: MotionProtocol
) -> dict[float, str]:
    """End-exhale time -> reason, for positions far from the running median of their neighbours."""
    floor = protocol.outlier_min_scale_fraction * abs(
        float(np.median([c.amplitude_mm for c in cycles]))
    )
    times = sorted({c.exhale_start_s for c in cycles} | {c.exhale_end_s for c in cycles})
    position = {c.exhale_start_s: c.exhale_start_mm for c in cycles}
    position.update({c.exhale_end_s: c.exhale_end_mm for c in cycles})
    exhale = np.array([position[s] for s in times])
    residual = exhale - _running_median(exhale, _RUNNING_MEDIAN_EXHALES)
    z = np.abs(residual - np.median(residual)) / _robust_scale(residual, floor)
    return {
        s: f"end-exhale at {s:.1f} s off its neighbours by {r:+.1f} mm"
        for s, r, zi in zip(times, residual, z, strict=True)
        if zi > protocol.outlier_z
    }


def _with_edge_extremes(
    extremes: list[tuple[int, int]], smooth: FloatArray, noise_sd_mm: float
) -> list[tuple[int, int]]:
    """Add the first and last samples as extremes when the trace starts or ends at one.

    A recording that starts at end-exhale has no peak there for the peak finder, so its first
    breath would be lost; a 20 s clip of five breaths would count three. The edge sample is
    taken as an extreme of the kind opposite its neighbour when it lies as far as the nearest
    extreme of that kind, within ``max(3 noise SD, 10 % of the swing)``.
    """
    if len(extremes) < 2:
        return extremes
    result = list(extremes)
    for edge, neighbour, same in (
        (0, result[0], result[1]),
        (smooth.size - 1, result[-1], result[-2]),
    ):
        kind = -neighbour[0]
        if same[0] != kind or edge == neighbour[1]:
            continue
        swing = abs(float(smooth[same[1]] - smooth[neighbour[1]]))
        tolerance = max(3.0 * noise_sd_mm, _EDGE_EXTREME_TOLERANCE_FRACTION * swing)
        if kind * float(smooth[edge] - smooth[same[1]]) >= -tolerance:
            if edge == 0:
                result.insert(0, (kind, edge))
            else:
                result.append((kind, edge))
    return result


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
    protocol = _checked_arguments(trace, protocol)
    samples = _usable_samples(trace, protocol)
    issues = list(samples.issues)
    if samples.si_mm.size < 8:
        return _empty_analysis(trace, protocol, samples, issues)
    grid = _uniform_grid(samples.times_s, samples.si_mm, protocol.max_gap_s)
    issues.extend(_gap_issues(grid, protocol))
    period = _dominant_period_s(grid.si_mm, grid.step_s, protocol)
    if period is None:
        issues.append(
            QualityIssue(
                QualityFlagValues.NO_DOMINANT_PERIOD,
                f"no breathing period between {protocol.min_period_s:g} and "
                f"{protocol.max_period_s:g} s found",
            )
        )
        return _empty_analysis(trace, protocol, samples, issues)
    smooth, extremes = _smoothed_extremes(grid, period, samples, protocol)
    typical_period = _typical_period_s(extremes, grid, period)
    smooth, extremes = _smoothed_extremes(grid, typical_period, samples, protocol)
    holds, transients = _holds_and_transients(grid, smooth, extremes, samples, protocol)
    cycles = _mark_outliers(
        _cycles_in_segments(
            _outside_holds(extremes, grid, holds, smooth),
            smooth,
            grid.times_s,
            list(grid.gaps_s) + [(h.start_s, h.end_s) for h in holds],
            samples.noise_sd_mm,
        ),
        transients,
        protocol,
    )
    issues.extend(_cycle_issues(cycles, protocol))
    summary = _summarise(cycles, samples.tracking_sd_mm, protocol)
    issues.extend(_irregularity_issues(summary, protocol))
    return _assemble(
        trace, protocol, samples, period, cycles, summary, _baseline_drift(cycles), holds, issues
    )


def _assemble(
    trace: BreathingTrace,
    protocol: MotionProtocol,
    samples: _Samples,
    period_s: float | None,
    cycles: Sequence[BreathingCycle],
    summary: _Summary,
    drift: tuple[float | None, float | None],
    holds: Sequence[DetectedBreathHold],
    issues: Sequence[QualityIssue],
) -> BreathingAnalysis:
    """The result from the outputs of every step (``None`` for what was not computed)."""
    levels = [h.level_mm for h in holds]
    return BreathingAnalysis(
        protocol_version=protocol.version,
        n_samples=trace.n_samples,
        duration_s=trace.duration_s,
        sample_rate_hz=trace.sample_rate_hz,
        lost_fraction=samples.lost_fraction,
        noise_sd_mm=samples.noise_sd_mm,
        tracking_sd_mm=samples.tracking_sd_mm,
        dominant_period_s=period_s,
        cycles=tuple(cycles),
        excursion_median_mm=summary.excursion_median_mm,
        excursion_p95_mm=summary.excursion_p95_mm,
        range_without_outliers_mm=summary.range_mm,
        period_median_s=summary.period_median_s,
        rate_per_min=None if summary.period_median_s is None else 60.0 / summary.period_median_s,
        amplitude_cv=summary.amplitude_cv,
        period_cv=summary.period_cv,
        drift_mm_per_min=drift[0],
        end_exhale_sd_mm=drift[1],
        holds=tuple(holds),
        hold_reproducibility_mm=max(levels) - min(levels) if len(levels) >= 2 else None,
        excursion_uncertainty_mm=summary.u_total,
        excursion_p95_uncertainty_mm=summary.u_p95,
        uncertainty_tracking_mm=summary.u_tracking,
        uncertainty_cycles_mm=summary.u_cycles,
        quality=tuple(issues),
    )


# --- the steps of the analysis -----------------------------------------------------------------


def _checked_arguments(trace: object, protocol: MotionProtocol | None) -> MotionProtocol:
    if not isinstance(trace, BreathingTrace):
        raise InvalidInputError("trace must be a BreathingTrace", field="trace")
    protocol = DEFAULT_PROTOCOL if protocol is None else protocol
    if not isinstance(protocol, MotionProtocol):
        raise InvalidInputError("protocol must be a MotionProtocol", field="protocol")
    return protocol


@dataclass(frozen=True)
class _Samples:
    """The usable samples of a trace, their noise and the lost-frame issue (if any)."""

    times_s: FloatArray
    si_mm: FloatArray
    lost_fraction: float
    noise_sd_mm: float
    tracking_sd_mm: float
    issues: tuple[QualityIssue, ...]


def _usable_samples(trace: BreathingTrace, protocol: MotionProtocol) -> _Samples:
    """Drop lost and low-confidence samples; estimate the noise; flag too many losses."""
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
    times, si = trace.times_s[usable], trace.si_mm[usable]
    noise_sd = _noise_sd_mm(times, si, 2.0 * trace.sample_interval_s) if si.size else 0.0
    tracking_sd = max(trace.tracking_sd_mm or 0.0, noise_sd)
    return _Samples(times, si, lost_fraction, noise_sd, tracking_sd, tuple(issues))


def _gap_issues(grid: _Grid, protocol: MotionProtocol) -> list[QualityIssue]:
    if not grid.gaps_s:
        return []
    longest = max(high - low for low, high in grid.gaps_s)
    return [
        QualityIssue(
            QualityFlagValues.GAPS,
            f"{len(grid.gaps_s)} gap(s) in the tracking longer than {protocol.max_gap_s:g} s "
            f"(longest {longest:.1f} s); cycles overlapping them were not measured",
        )
    ]


def _smoothed(grid: _Grid, period_s: float) -> FloatArray:
    """Savitzky-Golay smoothing over a third of the dominant period."""
    window = _odd_window(
        _SMOOTHING_PERIOD_FRACTION * period_s / grid.step_s,
        _SMOOTHING_POLYORDER + 2,
        grid.si_mm.size,
    )
    if window <= _SMOOTHING_POLYORDER + 1:
        return grid.si_mm.copy()
    return np.asarray(sps.savgol_filter(grid.si_mm, window, _SMOOTHING_POLYORDER), np.float64)


def _smoothed_extremes(
    grid: _Grid, period_s: float, samples: _Samples, protocol: MotionProtocol
) -> tuple[FloatArray, list[tuple[int, int]]]:
    """The smoothed trace and its alternating extremes, both scaled to the period ``period_s``."""
    smooth = _smoothed(grid, period_s)
    distance = max(1, int(protocol.min_cycle_distance_fraction * period_s / grid.step_s))
    floor_mm = 3.0 * samples.noise_sd_mm
    exhales, inhales = _extremes(smooth, distance, floor_mm, protocol.min_prominence_fraction)
    quick_exhales, quick_inhales = _quick_breath_extremes(
        smooth, _alternate(exhales, inhales, smooth), grid.step_s, floor_mm, protocol
    )
    extremes = _with_edge_extremes(
        _alternate(np.union1d(exhales, quick_exhales), np.union1d(inhales, quick_inhales), smooth),
        smooth,
        samples.noise_sd_mm,
    )
    return smooth, extremes


def _quick_breath_extremes(
    smooth: FloatArray,
    extremes: Sequence[tuple[int, int]],
    step_s: float,
    floor_mm: float,
    protocol: MotionProtocol,
) -> tuple[IntArray, IntArray]:
    """Extremes of full-size breaths that come sooner than the minimum extreme distance.

    The minimum distance between extremes of one kind (a fraction of the typical period)
    keeps wobbles on an end-exhale plateau from counting as breaths, but it also drops a real
    quick breath and merges it with its neighbour into one cycle whose amplitude belongs to no
    breath (the inhale of one and the end-exhale of the other). A breath is a rise and fall of
    the dome, whatever its duration: an extreme whose prominence (its smaller rise or fall to
    the neighbouring extremes) is at least ``protocol.quick_breath_min_fraction`` of the median
    amplitude of the cycles already found is kept when it lies ``protocol.min_period_s`` (the
    shortest breath the protocol accepts) or more from the next extreme of its kind. At the
    default of 1 each of the two cycles that replace a merged one is itself at least a typical
    breath, so the median excursion cannot drop by the split.

    Parameters
    ----------
    smooth : ndarray of float
        Smoothed SI positions on a uniform grid, mm (positive = superior).
    extremes : sequence of (int, int)
        Alternating ``(kind, index)`` extremes found with the minimum distance (kind +1
        end-exhale, -1 end-inhale).
    step_s : float
        Grid step, s.
    floor_mm : float
        Smallest prominence of any extreme (three noise SDs), mm.
    protocol : MotionProtocol
        Gives ``quick_breath_min_fraction`` and ``min_period_s``.

    Returns
    -------
    tuple of ndarray of int
        Indices of the end-exhale maxima and end-inhale minima of such breaths (possibly
        repeating extremes already found, or empty).
    """
    amplitudes = [
        0.5 * (smooth[i0] + smooth[i2]) - smooth[i1]
        for (k0, i0), (k1, i1), (k2, i2) in zip(extremes, extremes[1:], extremes[2:], strict=False)
        if (k0, k1, k2) == (1, -1, 1)
    ]
    none = np.zeros(0, dtype=np.intp)
    if len(amplitudes) < _MIN_CYCLES_FOR_A_NUMBER:
        return none, none
    prominence = max(floor_mm, protocol.quick_breath_min_fraction * float(np.median(amplitudes)))
    distance = max(1, int(protocol.min_period_s / step_s))
    exhales, _ = sps.find_peaks(smooth, distance=distance, prominence=prominence)
    inhales, _ = sps.find_peaks(-smooth, distance=distance, prominence=prominence)
    return np.asarray(exhales, dtype=np.intp), np.asarray(inhales, dtype=np.intp)


def _typical_period_s(
    extremes: Sequence[tuple[int, int]], grid: _Grid, dominant_period_s: float
) -> float:
    """The median period of the cycles found, when it is shorter than the dominant period, s.

    The periodogram weighs each breath by its power (amplitude squared), so a minority of
    large, slow breaths pulls the dominant period towards theirs; a minimum extreme distance of
    half that period then drops the ordinary breaths between them. The median period of the
    cycles found with it counts every breath once. It is only ever shorter: a first pass that
    misses breaths finds cycles that are too long, never too short.
    """
    exhale_s = [float(grid.times_s[i]) for kind, i in extremes if kind == 1]
    if len(exhale_s) < 3:
        return dominant_period_s
    return min(dominant_period_s, float(np.median(np.diff(exhale_s))))


def _holds_and_transients(
    grid: _Grid,
    smooth: FloatArray,
    extremes: list[tuple[int, int]],
    samples: _Samples,
    protocol: MotionProtocol,
) -> tuple[list[DetectedBreathHold], list[float]]:
    """Breath holds and cough-like transients, judged against preliminary cycles."""
    preliminary = _cycles_in_segments(
        extremes, smooth, grid.times_s, grid.gaps_s, samples.noise_sd_mm
    )
    if len(preliminary) < 2:
        return [], []
    typical_excursion = float(np.median([c.amplitude_mm for c in preliminary]))
    transients = _transients_s(grid, smooth, typical_excursion, protocol)
    typical_period = float(np.median([c.period_s for c in preliminary]))
    exhale_t = np.array([c.exhale_start_s for c in preliminary] + [preliminary[-1].exhale_end_s])
    exhale_mm = np.array([c.exhale_start_mm for c in preliminary] + [preliminary[-1].exhale_end_mm])
    baseline = _theil_sen(exhale_t, exhale_mm)
    holds = []
    for first, last in _detect_holds(
        grid, samples.noise_sd_mm, typical_excursion, typical_period, baseline, protocol
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
    return holds, transients


def _outside_holds(
    extremes: list[tuple[int, int]],
    grid: _Grid,
    holds: Sequence[DetectedBreathHold],
    smooth: FloatArray,
) -> list[tuple[int, int]]:
    """The extremes that do not fall inside a breath hold, alternating again."""
    in_hold = np.zeros(grid.times_s.size, dtype=np.bool_)
    for hold in holds:
        in_hold |= (grid.times_s >= hold.start_s) & (grid.times_s <= hold.end_s)
    exhales = np.array([i for k, i in extremes if k == 1 and not in_hold[i]], dtype=np.intp)
    inhales = np.array([i for k, i in extremes if k == -1 and not in_hold[i]], dtype=np.intp)
    return _alternate(exhales, inhales, smooth)


def _cycle_issues(cycles: Sequence[BreathingCycle], protocol: MotionProtocol) -> list[QualityIssue]:
    """Outliers excluded, too many of them, too few cycles, or few enough to be provisional."""
    issues: list[QualityIssue] = []
    outliers = [c for c in cycles if c.is_outlier]
    n = len(cycles) - len(outliers)
    if outliers:
        listed = ", ".join(
            f"{c.amplitude_mm:.1f} mm at {c.inhale_s:.1f} s ({c.outlier_reason})" for c in outliers
        )
        issues.append(
            QualityIssue(
                QualityFlagValues.OUTLIER_CYCLES,
                f"{len(outliers)} of {len(cycles)} cycles excluded as rare events: {listed}",
            )
        )
    if cycles and len(outliers) > protocol.max_outlier_fraction * len(cycles):
        issues.append(
            QualityIssue(
                QualityFlagValues.TOO_MANY_OUTLIERS,
                f"breathing too irregular to summarise: {len(outliers)} of {len(cycles)} cycles "
                f"are outliers (limit {protocol.max_outlier_fraction:.0%}); coach the patient and "
                "repeat the recording",
            )
        )
    if n < _MIN_CYCLES_FOR_A_NUMBER:
        issues.append(
            QualityIssue(
                QualityFlagValues.TOO_FEW_CYCLES,
                f"only {n} usable breathing cycle(s): at least {_MIN_CYCLES_FOR_A_NUMBER} are "
                f"needed for an excursion with an uncertainty ({protocol.min_cycles} for a "
                "final one)",
            )
        )
    elif n < protocol.min_cycles:
        issues.append(
            QualityIssue(
                QualityFlagValues.PROVISIONAL,
                f"provisional: {n} complete breathing cycle(s), the protocol asks for "
                f"{protocol.min_cycles}; confirm with a longer recording",
            )
        )
    return issues


@dataclass(frozen=True)
class _Summary:
    """Summaries of the inlier cycles (``None`` where not computable)."""

    excursion_median_mm: float | None = None
    excursion_p95_mm: float | None = None
    range_mm: float | None = None
    period_median_s: float | None = None
    amplitude_cv: float | None = None
    period_cv: float | None = None
    u_total: float | None = None
    u_p95: float | None = None
    u_tracking: float | None = None
    u_cycles: float | None = None


def _summarise(
    cycles: Sequence[BreathingCycle], tracking_sd_mm: float, protocol: MotionProtocol
) -> _Summary:
    """Median and 95th-percentile excursion with their uncertainties, period, CVs."""
    inliers = [c for c in cycles if not c.is_outlier]
    n = len(inliers)
    if n < _MIN_CYCLES_FOR_A_NUMBER:
        return _Summary()
    amplitude = np.array([c.amplitude_mm for c in inliers])
    periods = np.array([c.period_s for c in inliers])
    median = float(np.median(amplitude))
    # The large-breath safeguard must not rest on an exclusion: a sigh that also looks like a
    # transient is still a breath, so the 95th percentile counts every measured cycle.
    every = np.array([c.amplitude_mm for c in cycles])
    p95 = float(np.percentile(every, 95))
    u_random = _MEDIAN_SE_FACTOR * math.sqrt(2.0) * tracking_sd_mm / math.sqrt(n)
    # The SE of a median depends on how densely the cycles crowd around it, not on the tails:
    # frequent large breaths kept in the summaries would inflate an SD (1.4826 MAD = SD when
    # the amplitudes are normal).
    u_cycles = _MEDIAN_SE_FACTOR * _robust_scale(amplitude, 0.0) / math.sqrt(n)
    scale = protocol.tracking_scale_fraction
    p95_se = max(_bootstrap_p95_se(every), u_random)
    return _Summary(
        excursion_median_mm=median,
        excursion_p95_mm=p95,
        range_mm=max(max(c.exhale_start_mm, c.exhale_end_mm) for c in inliers)
        - min(c.inhale_mm for c in inliers),
        period_median_s=float(np.median(periods)),
        amplitude_cv=float(np.std(amplitude, ddof=1) / np.mean(amplitude)),
        period_cv=float(np.std(periods, ddof=1) / np.mean(periods)),
        u_total=math.hypot(max(u_cycles, u_random), scale * median),
        u_p95=math.hypot(p95_se, scale * p95),
        u_tracking=math.hypot(u_random, scale * median),
        u_cycles=u_cycles,
    )


def _irregularity_issues(summary: _Summary, protocol: MotionProtocol) -> list[QualityIssue]:
    if summary.amplitude_cv is None or summary.period_cv is None:
        return []
    if max(summary.amplitude_cv, summary.period_cv) <= protocol.max_irregularity_cv:
        return []
    return [
        QualityIssue(
            QualityFlagValues.IRREGULAR,
            f"irregular breathing: amplitude CV {summary.amplitude_cv:.2f}, period CV "
            f"{summary.period_cv:.2f} (flagged above {protocol.max_irregularity_cv:g})",
        )
    ]


def _baseline_drift(cycles: Sequence[BreathingCycle]) -> tuple[float | None, float | None]:
    """Theil-Sen drift of the inlier end-exhale positions (mm/min) and their SD about it (mm)."""
    inliers = [c for c in cycles if not c.is_outlier]
    points = sorted(
        {(c.exhale_start_s, c.exhale_start_mm) for c in inliers}
        | {(c.exhale_end_s, c.exhale_end_mm) for c in inliers}
    )
    if len(points) < 3:
        return None, None
    times = np.array([p[0] for p in points])
    positions = np.array([p[1] for p in points])
    slope, intercept = _theil_sen(times, positions)
    residual = positions - (slope * times + intercept)
    return 60.0 * slope, float(np.sqrt(np.sum(residual**2) / max(1, residual.size - 2)))
