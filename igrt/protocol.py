"""The versioned, configurable motion-management protocol for liver SBRT.

A :class:`MotionProtocol` holds every threshold the breathing analysis
(:mod:`igrt.breathing_analysis`), the motion-management decision (:mod:`igrt.decision`) and the
margin suggestion (:mod:`igrt.margins`) apply. Every decision records the protocol's
``version``, so a protocol that differs in any value from the defaults must carry its own
version string (construction refuses a modified protocol that still claims the default version).

Defaults and where they come from
---------------------------------
Sources are the reference figures of ``shared/domain/CLINICAL.md`` (cited as CLINICAL.md) and
the papers it lists. Where a value is a protocol choice rather than a published figure, the
table says so.

=====================================  ===========  ===============================================
field                                  default      justification
=====================================  ===========  ===============================================
``motion_threshold_mm``                5.0 mm       CLINICAL.md §2: liver motion > 5 mm gets motion
                                                    management (matches AAPM TG-76).
``excursion_statistic``                median       The 5 mm trigger concerns the typical breath,
                                                    as do the reference figures (Eccles 2011 mean,
                                                    Liang 2018 median peak-to-peak motion); large
                                                    breaths are checked separately with
                                                    ``no_device_max_p95_excursion_mm``.
``borderline_coverage_factor``         1.0          ``k`` of the borderline band
                                                    ``excursion ± k·uncertainty``: k = 1 re-assesses
                                                    when the standard uncertainty straddles the
                                                    threshold. Missing the threshold by less than
                                                    one SD matters little (the >= 5 mm PTV margin
                                                    absorbs it) while re-assessment costs another
                                                    fluoroscopy; use k = 2 for ~95 % coverage.
``no_device_max_p95_excursion_mm``     7.0 mm       Protocol choice: "no device" also needs the
                                                    95th-percentile breath within the 5 mm trigger
                                                    plus the 2 mm SBRT positioning tolerance
                                                    (AAPM MPPG 9.a, CLINICAL.md).
``min_abc_holds``                      2            Protocol choice: hold-to-hold reproducibility
                                                    can only be measured from two holds or more.
``min_hold_duration_s``                20.0 s       Protocol choice: an ABC hold must last long
                                                    enough to deliver part of a fraction; Khot,
                                                    BJR 2020 report the dome drifting over holds of
                                                    ~24 s, so holds are judged over >= 20 s.
``max_hold_drift_mm``                  3.0 mm       Eccles, IJROBP 2006: diaphragm motion within a
                                                    hold 1.4 mm mean, 0-3.4 mm range in suitable
                                                    patients; 3 mm also equals the repositioning
                                                    threshold. Khot 2020's 5.6 mm rise fails it.
``max_hold_reproducibility_mm``        3.0 mm       Hold-to-hold range of the hold level: above the
                                                    3 mm repositioning threshold (CLINICAL.md §4)
                                                    every hold could need a correction.
``compression_residual_threshold_mm``  5.0 mm       Hu, Radiat Oncol 2016: compression "effective"
                                                    when residual CC motion <= 5 mm (liver under
                                                    compression 5.3 ± 2.2 mm; Heinzerling, IJROBP
                                                    2008: 13.6 -> 8.3 -> 7.2 mm).
``min_ptv_margin_mm``                  5.0 mm       CLINICAL.md §3: PTV expansion minimum 5 mm.
``van_herk_systematic_coefficient``    2.5          van Herk, IJROBP 2000: M = 2.5Σ + 0.7σ.
``van_herk_random_coefficient``        0.7          van Herk, IJROBP 2000.
``repositioning_threshold_mm``         3.0 mm       CLINICAL.md §4: reposition when the liver
                                                    offset exceeds 3 mm. The only definition:
                                                    ``registration.RegistrationProtocol`` takes
                                                    its default from here.
``intrafraction_alert_mm``             3.0 mm       KIM action rule (Keall et al.; LARK): offset
                                                    > 3 mm ...
``intrafraction_alert_duration_s``     5.0 s        ... persisting > 5 s (igrt.intrafraction).
``intrafraction_still_window_s``       1.0 s        Site choice: the end-exhale level is that of
                                                    the latest still second above the lowest
                                                    quarter of the breathing range (an exhale
                                                    pause), so a shift either way is seen at the
                                                    first pause after it.
``intrafraction_still_tolerance_mm``   2.0 mm       Site choice: "still" = positions within 2 mm
                                                    over the still window (tracker noise ~0.5 mm SD
                                                    plus Khot 2020's creep over a 5 s window).
``intrafraction_gating_window_mm``     3.0 mm       Breath-hold mode: the gate is the hold level of
                                                    the reference ± 3 mm (equals
                                                    ``max_hold_reproducibility_mm`` and the 3 mm
                                                    repositioning threshold).
``intrafraction_gating_duration_s``    1.0 s        Site choice: a still hold outside the gating
                                                    window for longer than this raises the alert
                                                    (the per-frame gate state is immediate).
``min_cycles``                         5            Protocol choice: with 5 cycles and a typical
                                                    15 % amplitude variation the median excursion
                                                    is known to ~±8 % (1.25·CV/√n).
``max_lost_fraction``                  0.10         Protocol choice: more than 10 % of frames lost
                                                    or below ``min_sample_confidence`` makes the
                                                    tracking untrustworthy as a whole.
``max_gap_s``                          1.0 s        A gap longer than a quarter of a typical 4 s
                                                    breath can hide an extreme; cycles that overlap
                                                    such a gap are discarded.
``min_sample_confidence``              0.5          Tracker confidence below which a sample counts
                                                    as lost.
``min_period_s`` / ``max_period_s``    1.5 / 12 s   Breathing band searched for the dominant period
                                                    (5-40 breaths per minute).
``min_cycle_distance_fraction``        0.5          Minimum distance between two extremes of the
                                                    same kind, as a fraction of the dominant
                                                    period (the adaptive "minimum period").
``min_prominence_fraction``            0.3          Minimum prominence of an extreme, as a fraction
                                                    of the typical (75th-percentile) prominence.
``quick_breath_min_fraction``          1.0          A rise and fall each at least this fraction of
                                                    the median excursion is a breath even when it
                                                    comes sooner than the minimum distance above
                                                    (but not sooner than ``min_period_s``): at 1
                                                    the two cycles that replace one merged cycle
                                                    are each at least a typical breath, so the
                                                    median cannot drop.
``outlier_z``                          3.5          Modified z-score (Iglewicz & Hoaglin) above
                                                    which a cycle is an outlier (cough, sigh).
``outlier_min_scale_fraction``         0.1          Floor of the robust spread used for outliers,
                                                    as a fraction of the median excursion.
``hold_detection_min_s``               5.0 s        A still interval away from end-exhale shorter
                                                    than this is not reported as a breath hold.
``hold_max_speed_mm_per_s``            1.0 mm/s     Above the fastest reported creep (Khot 2020:
                                                    5.6 mm / 24 s ≈ 0.23 mm/s), far below breathing.
``hold_min_depth_fraction``            0.5          A hold lies at least half the median excursion
                                                    away from the end-exhale level.
``max_outlier_fraction``               0.33         Protocol choice: when more than a third of
                                                    the cycles are outliers the "typical breath" is
                                                    no longer typical; the analysis is degraded.
``max_irregularity_cv``                0.3          Informational flag when the coefficient of
                                                    variation of amplitude or period exceeds it.
``van_herk_penumbra_sd_mm``            3.2 mm       van Herk, IJROBP 2000: σp of the beam penumbra
                                                    in the full form ``1.64·(sqrt(σ²+σp²) - σp)``.
``systematic_setup_sd_mm``             1.0 mm       Site choice: SI setup-error model (Σ) after
                                                    daily image guidance; measure your own.
``random_setup_sd_mm``                 1.5 mm       Site choice: SI setup-error model (σ).
``exhale_reference``                   true         Seed: the GTV is drawn on an exhale CT, so the
                                                    mean breathing position lies inferior to it.
``max_rare_event_fraction``            0.10         Site choice: amplitude outliers are excluded
                                                    only while they are rare (coughs, sighs); more
                                                    frequent large breaths are breathing.
``exhale_hold_min_s``                  10 s         Site choice: a still interval at end-exhale is
                                                    a breath hold when it lasts this long (natural
                                                    end-exhale pauses last a few seconds).
``max_baseline_drift_mm_per_min``      3.0 mm/min   Site choice: drift that moves the liver by the
                                                    3 mm repositioning threshold within a minute
                                                    needs motion management.
``device_preference``                  ABC, comp.   Site choice: the seed names ABC or compression
                                                    in no order; without hold evidence the first
                                                    is the trial to do next.
``tracking_scale_fraction``            0.03         Site choice: relative (correlated) tracking
                                                    error of an excursion; the dome lies up to
                                                    ±30 mm off the isocentre plane (SAD 1000 mm).
``device_approver_roles``              physician,   Site choice: who approves the device choice and
                                       physicist    margins (motion-assessment reviews); daily
                                                    registrations stay with the therapists.
``provenance``                         per field    Kind (seed / literature / site choice) and
                                                    source of every value, in ``to_dict()``.
=====================================  ===========  ===============================================

Examples
--------
>>> DEFAULT_PROTOCOL.motion_threshold_mm
5.0
>>> custom = MotionProtocol(version="site-x-2026.1", motion_threshold_mm=4.0)
>>> MotionProtocol.from_dict(custom.to_dict()) == custom
True
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace
from typing import Any

from igrt.errors import InvalidInputError
from igrt.validation import non_negative_number as _non_negative
from igrt.validation import positive_number as _positive
from igrt.validation import real_number as _number

__all__ = [
    "DEFAULT_PROTOCOL",
    "DEFAULT_PROTOCOL_VERSION",
    "DEVICE_VALUES",
    "ExcursionStatisticValues",
    "MotionProtocol",
    "Provenance",
    "ProvenanceValues",
]

DEFAULT_PROTOCOL_VERSION = "seed-lee2009-liver-sbrt-2026.5"
"""Version string of the defaults below: the seed's four rules (Lee et al., JCO 2009) plus this
project's choices where the seed is silent. It is not Princess Margaret's own protocol."""

DEVICE_VALUES = ("active_breathing_control", "abdominal_compression")
"""The motion-management devices ``device_preference`` orders."""

APPROVER_ROLE_VALUES = ("physician", "physicist", "therapist")
"""Roles ``device_approver_roles`` may name."""


class ProvenanceValues(enum.Enum):
    """Where a protocol value comes from."""

    SEED = "seed"
    """Fixed by the seed paper (Lee et al., JCO 2009; CLINICAL.md)."""
    LITERATURE = "literature"
    """Taken from a published figure (the reference is given)."""
    SITE_CHOICE = "site_choice"
    """A choice of the site (or of this project for the defaults) where the seed is silent."""


@dataclass(frozen=True)
class Provenance:
    """The origin of one protocol value: its kind and the reference or justification."""

    kind: ProvenanceValues
    source: str

    def __post_init__(self) -> None:
        try:
            kind = ProvenanceValues(
                self.kind.value if isinstance(self.kind, ProvenanceValues) else self.kind
            )
        except ValueError:
            raise InvalidInputError(
                f"provenance kind must be one of {[k.value for k in ProvenanceValues]}, "
                f"got {self.kind!r}",
                field="provenance",
            ) from None
        object.__setattr__(self, "kind", kind)
        if not isinstance(self.source, str) or not self.source.strip():
            raise InvalidInputError("a provenance needs a source", field="provenance")

    def to_dict(self) -> dict[str, str]:
        """JSON-ready mapping."""
        return {"kind": self.kind.value, "source": self.source}


_S, _L, _C = ProvenanceValues.SEED, ProvenanceValues.LITERATURE, ProvenanceValues.SITE_CHOICE
_DEFAULT_PROVENANCE_TABLE: dict[str, tuple[ProvenanceValues, str]] = {
    "motion_threshold_mm": (_S, "Lee 2009: motion management when liver motion > 5 mm"),
    "excursion_statistic": (_C, "typical breath; Eccles 2011 mean, Liang 2018 median"),
    "borderline_coverage_factor": (_C, "k = 1 SD band around the threshold"),
    "no_device_max_p95_excursion_mm": (_C, "5 mm trigger + 2 mm SBRT tolerance (MPPG 9.a)"),
    "min_abc_holds": (_C, "reproducibility needs two holds"),
    "min_hold_duration_s": (_C, "holds of ~24 s observed (Khot, BJR 2020)"),
    "max_hold_drift_mm": (_L, "Eccles, IJROBP 2006: within-hold motion 0-3.4 mm"),
    "max_hold_reproducibility_mm": (_C, "equals the 3 mm repositioning threshold"),
    "compression_residual_threshold_mm": (_L, "Hu, Radiat Oncol 2016: effective if <= 5 mm"),
    "min_ptv_margin_mm": (_S, "Lee 2009: PTV margin at least 5 mm"),
    "van_herk_systematic_coefficient": (_L, "van Herk, IJROBP 2000: 2.5 Sigma"),
    "van_herk_random_coefficient": (_L, "van Herk, IJROBP 2000: 0.7 sigma (linear form)"),
    "van_herk_penumbra_sd_mm": (_L, "van Herk, IJROBP 2000: beam penumbra sigma_p 3.2 mm"),
    "systematic_setup_sd_mm": (_C, "site setup-error model, SI Sigma after image guidance"),
    "random_setup_sd_mm": (_C, "site setup-error model, SI sigma after image guidance"),
    "exhale_reference": (_S, "Lee 2009: GTV drawn on an exhale CT or MRI"),
    "repositioning_threshold_mm": (_S, "Lee 2009: reposition when liver offset > 3 mm"),
    "intrafraction_alert_mm": (_L, "KIM action rule (Keall et al.; LARK): > 3 mm"),
    "intrafraction_alert_duration_s": (_L, "KIM action rule (Keall et al.; LARK): > 5 s"),
    "intrafraction_still_window_s": (_C, "an end-exhale pause or a hold is still for 1 s"),
    "intrafraction_still_tolerance_mm": (_C, "tracker noise ~0.5 mm SD plus Khot 2020 creep"),
    "intrafraction_gating_window_mm": (_C, "hold level +- 3 mm: the hold reproducibility limit"),
    "intrafraction_gating_duration_s": (_C, "a still hold out of the gate for > 1 s alerts"),
    "min_cycles": (_C, "5 cycles pin the median to ~8 %; fewer give a provisional result"),
    "max_lost_fraction": (_C, "more than 10 % lost frames: tracking untrustworthy"),
    "max_gap_s": (_C, "a quarter of a 4 s breath"),
    "min_sample_confidence": (_C, "tracker confidence below which a sample is lost"),
    "min_period_s": (_C, "5-40 breaths per minute"),
    "max_period_s": (_C, "5-40 breaths per minute"),
    "min_cycle_distance_fraction": (_C, "adaptive minimum period"),
    "min_prominence_fraction": (_C, "adaptive prominence"),
    "quick_breath_min_fraction": (
        _C,
        "a quick rise and fall at least the typical breath is a breath (1 = the median)",
    ),
    "outlier_z": (_L, "Iglewicz & Hoaglin modified z-score 3.5"),
    "outlier_min_scale_fraction": (_C, "floor of the robust spread"),
    "max_rare_event_fraction": (_C, "outliers are rare events (coughs, sighs); more is breathing"),
    "max_outlier_fraction": (_C, "more than a third outliers: no typical breath"),
    "hold_detection_min_s": (_C, "shortest inhale hold reported"),
    "exhale_hold_min_s": (_C, "natural end-exhale pauses last a few seconds"),
    "hold_max_speed_mm_per_s": (_L, "above Khot 2020 creep (0.23 mm/s), far below breathing"),
    "hold_min_depth_fraction": (_C, "an inhale hold lies half an excursion below end-exhale"),
    "max_irregularity_cv": (_C, "informational irregularity flag"),
    "max_baseline_drift_mm_per_min": (_C, "3 mm (the repositioning threshold) per minute"),
    "device_preference": (_C, "seed: ABC or compression, no order; ABC trial first here"),
    "device_approver_roles": (_C, "device choice and margins are a physician's decision"),
    "tracking_scale_fraction": (
        _C,
        "dome +-30 mm off the isocentre plane at SAD 1000 mm: 3 % magnification uncertainty",
    ),
}


class ExcursionStatisticValues(enum.Enum):
    """Which per-cycle excursion summary the decision compares with the thresholds."""

    MEDIAN = "median"
    """Median peak-to-peak amplitude of the (non-outlier) cycles: the typical breath."""
    P95 = "p95"
    """95th percentile of the cycle amplitudes: the large breaths."""


def _fraction(value: object, name: str) -> float:
    number = _number(value, name)
    if not 0.0 < number < 1.0:
        raise InvalidInputError(
            f"{name} must lie strictly between 0 and 1, got {value!r}", field=name
        )
    return number


def _count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}", field=name)
    if value < minimum:
        raise InvalidInputError(f"{name} must be at least {minimum}, got {value!r}", field=name)
    return value


@dataclass(frozen=True)
class MotionProtocol:
    """Thresholds and analysis settings of the motion-assessment protocol (all lengths in mm).

    The defaults and their sources are tabulated in the module docstring. Values are checked
    on construction; integers given for float fields are stored as floats.

    Parameters
    ----------
    version : str
        Identifier recorded with every decision. Must be changed whenever any other value
        differs from its default.
    motion_threshold_mm : float
        Peak-to-peak SI excursion above which motion management is indicated, mm.
    excursion_statistic : ExcursionStatisticValues or str
        Which excursion summary the decision compares with the threshold (``"median"``).
    borderline_coverage_factor : float
        ``k`` of the borderline band ``excursion ± k·uncertainty``; 0 disables the band.
    no_device_max_p95_excursion_mm : float
        Largest 95th-percentile excursion with which "no device" (or "compression effective")
        may be recommended, mm; must be at least the relevant threshold.
    min_abc_holds : int
        Breath holds needed to judge ABC suitability.
    min_hold_duration_s : float
        Shortest acceptable ABC hold, s.
    max_hold_drift_mm : float
        Largest acceptable dome movement within one hold, mm.
    max_hold_reproducibility_mm : float
        Largest acceptable range of the hold levels between holds, mm.
    compression_residual_threshold_mm : float
        Largest acceptable residual excursion under abdominal compression, mm.
    min_ptv_margin_mm : float
        Floor of the suggested PTV margin, mm.
    van_herk_systematic_coefficient, van_herk_random_coefficient : float
        Coefficients of ``M = a·Σ + b·σ``.
    repositioning_threshold_mm : float
        Daily liver offset above which the patient is repositioned, mm; the registrations'
        default (``registration.RegistrationProtocol``) is this protocol's value.
    intrafraction_alert_mm, intrafraction_alert_duration_s : float
        Intrafraction action rule (free breathing): end-exhale offset above
        ``intrafraction_alert_mm`` for longer than ``intrafraction_alert_duration_s``
        (:mod:`igrt.intrafraction`).
    intrafraction_still_window_s, intrafraction_still_tolerance_mm : float
        A stretch of ``intrafraction_still_window_s`` whose positions lie within
        ``intrafraction_still_tolerance_mm`` is still: an exhale pause (free breathing) or a
        hold (breath-hold mode, judged over ``hold_detection_min_s``).
    intrafraction_gating_window_mm, intrafraction_gating_duration_s : float
        Breath-hold mode: the gate is the reference hold level ± ``intrafraction_gating_window_mm``;
        a still hold outside it for longer than ``intrafraction_gating_duration_s`` alerts.
    min_cycles : int
        Fewest non-outlier breathing cycles for a trustworthy analysis.
    max_lost_fraction : float
        Largest fraction of lost or low-confidence samples for a trustworthy analysis.
    max_gap_s : float
        Longest gap in the valid samples across which a cycle is still measured, s.
    min_sample_confidence : float
        Samples whose tracking confidence is below this count as lost.
    min_period_s, max_period_s : float
        Range of breathing periods searched for the dominant period, s.
    min_cycle_distance_fraction : float
        Minimum distance between two extremes of the same kind / dominant period.
    min_prominence_fraction : float
        Minimum prominence of an extreme / typical prominence.
    quick_breath_min_fraction : float
        Smallest rise and fall, as a fraction of the median excursion, with which a breath
        closer than ``min_cycle_distance_fraction`` × period to its neighbour still counts.
    outlier_z : float
        Modified z-score above which a cycle is an outlier.
    outlier_min_scale_fraction : float
        Floor of the robust spread for outlier detection / median excursion.
    max_outlier_fraction : float
        Largest fraction of outlier cycles for a trustworthy analysis.
    hold_detection_min_s : float
        Shortest still interval reported as a breath hold, s.
    hold_max_speed_mm_per_s : float
        Largest smoothed SI speed inside a breath hold, mm/s.
    hold_min_depth_fraction : float
        Smallest distance of a hold from the end-exhale level / median excursion.
    max_irregularity_cv : float
        Amplitude or period coefficient of variation above which the analysis is flagged
        irregular (informational).

    Raises
    ------
    InvalidInputError
        If a value is of the wrong type, not finite, out of range, inconsistent with another
        (``min_period_s >= max_period_s``, a p95 limit below its threshold), or the protocol
        differs from the defaults while keeping the default version.
    """

    version: str = DEFAULT_PROTOCOL_VERSION
    motion_threshold_mm: float = 5.0
    excursion_statistic: ExcursionStatisticValues = ExcursionStatisticValues.MEDIAN
    borderline_coverage_factor: float = 1.0
    no_device_max_p95_excursion_mm: float = 7.0
    min_abc_holds: int = 2
    min_hold_duration_s: float = 20.0
    max_hold_drift_mm: float = 3.0
    max_hold_reproducibility_mm: float = 3.0
    compression_residual_threshold_mm: float = 5.0
    min_ptv_margin_mm: float = 5.0
    van_herk_systematic_coefficient: float = 2.5
    van_herk_random_coefficient: float = 0.7
    van_herk_penumbra_sd_mm: float = 3.2
    systematic_setup_sd_mm: float = 1.0
    random_setup_sd_mm: float = 1.5
    exhale_reference: bool = True
    repositioning_threshold_mm: float = 3.0
    intrafraction_alert_mm: float = 3.0
    intrafraction_alert_duration_s: float = 5.0
    intrafraction_still_window_s: float = 1.0
    intrafraction_still_tolerance_mm: float = 2.0
    intrafraction_gating_window_mm: float = 3.0
    intrafraction_gating_duration_s: float = 1.0
    min_cycles: int = 5
    max_lost_fraction: float = 0.1
    max_gap_s: float = 1.0
    min_sample_confidence: float = 0.5
    min_period_s: float = 1.5
    max_period_s: float = 12.0
    min_cycle_distance_fraction: float = 0.5
    min_prominence_fraction: float = 0.3
    quick_breath_min_fraction: float = 1.0
    outlier_z: float = 3.5
    outlier_min_scale_fraction: float = 0.1
    max_rare_event_fraction: float = 0.1
    max_outlier_fraction: float = 0.33
    hold_detection_min_s: float = 5.0
    exhale_hold_min_s: float = 10.0
    hold_max_speed_mm_per_s: float = 1.0
    hold_min_depth_fraction: float = 0.5
    max_irregularity_cv: float = 0.3
    max_baseline_drift_mm_per_min: float = 3.0
    device_preference: tuple[str, ...] = DEVICE_VALUES
    tracking_scale_fraction: float = 0.03
    device_approver_roles: tuple[str, ...] = ("physician", "physicist")
    provenance: Mapping[str, Provenance] = dataclasses.field(
        default_factory=lambda: MappingProxyType(_default_provenance())
    )

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not self.version.strip():
            raise InvalidInputError("version must be a non-empty string", field="version")
        try:
            statistic = ExcursionStatisticValues(
                self.excursion_statistic.value
                if isinstance(self.excursion_statistic, ExcursionStatisticValues)
                else self.excursion_statistic
            )
        except ValueError:
            raise InvalidInputError(
                f"excursion_statistic must be one of "
                f"{[m.value for m in ExcursionStatisticValues]}, got {self.excursion_statistic!r}",
                field="excursion_statistic",
            ) from None
        object.__setattr__(self, "excursion_statistic", statistic)
        positive = (
            "motion_threshold_mm",
            "no_device_max_p95_excursion_mm",
            "min_hold_duration_s",
            "compression_residual_threshold_mm",
            "van_herk_systematic_coefficient",
            "van_herk_random_coefficient",
            "repositioning_threshold_mm",
            "intrafraction_alert_mm",
            "intrafraction_alert_duration_s",
            "intrafraction_still_window_s",
            "intrafraction_still_tolerance_mm",
            "intrafraction_gating_window_mm",
            "intrafraction_gating_duration_s",
            "max_gap_s",
            "min_period_s",
            "max_period_s",
            "outlier_z",
            "hold_detection_min_s",
            "hold_max_speed_mm_per_s",
            "max_irregularity_cv",
            "exhale_hold_min_s",
            "max_baseline_drift_mm_per_min",
            "quick_breath_min_fraction",
        )
        non_negative = (
            "borderline_coverage_factor",
            "max_hold_drift_mm",
            "max_hold_reproducibility_mm",
            "min_ptv_margin_mm",
            "van_herk_penumbra_sd_mm",
            "systematic_setup_sd_mm",
            "random_setup_sd_mm",
        )
        fractions = (
            "max_lost_fraction",
            "min_sample_confidence",
            "min_cycle_distance_fraction",
            "min_prominence_fraction",
            "outlier_min_scale_fraction",
            "max_outlier_fraction",
            "hold_min_depth_fraction",
            "max_rare_event_fraction",
            "tracking_scale_fraction",
        )
        for name in positive:
            object.__setattr__(self, name, _positive(getattr(self, name), name))
        for name in non_negative:
            object.__setattr__(self, name, _non_negative(getattr(self, name), name))
        for name in fractions:
            object.__setattr__(self, name, _fraction(getattr(self, name), name))
        if not isinstance(self.exhale_reference, bool):
            raise InvalidInputError(
                "exhale_reference must be true or false", field="exhale_reference"
            )
        object.__setattr__(self, "device_preference", _device_order(self.device_preference))
        object.__setattr__(
            self, "device_approver_roles", _approver_roles(self.device_approver_roles)
        )
        object.__setattr__(self, "provenance", _complete_provenance(self.provenance))
        _count(self.min_abc_holds, "min_abc_holds", 1)
        _count(self.min_cycles, "min_cycles", 2)
        if self.min_period_s >= self.max_period_s:
            raise InvalidInputError(
                f"min_period_s ({self.min_period_s}) must be below max_period_s "
                f"({self.max_period_s})",
                field="min_period_s",
            )
        largest_threshold = max(self.motion_threshold_mm, self.compression_residual_threshold_mm)
        if self.no_device_max_p95_excursion_mm < largest_threshold:
            raise InvalidInputError(
                f"no_device_max_p95_excursion_mm ({self.no_device_max_p95_excursion_mm}) must be "
                f"at least the motion and compression thresholds ({largest_threshold})",
                field="no_device_max_p95_excursion_mm",
            )
        if self.version == DEFAULT_PROTOCOL_VERSION:
            changed = [
                f.name
                for f in dataclasses.fields(self)
                if f.name not in {"version", "provenance"}
                and getattr(self, f.name) != getattr(_DEFAULT_VALUES, f.name)
            ]
            if dict(self.provenance) != _default_provenance():
                changed.append("provenance")
            if changed:
                raise InvalidInputError(
                    f"this protocol differs from {DEFAULT_PROTOCOL_VERSION!r} in "
                    f"{', '.join(changed)}: give it its own version string",
                    field="version",
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of every field, with ``provenance``: kind and source per field."""
        result: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "provenance":
                result[f.name] = {name: p.to_dict() for name, p in value.items()}
            elif isinstance(value, enum.Enum):
                result[f.name] = value.value
            elif isinstance(value, tuple):
                result[f.name] = list(value)
            else:
                result[f.name] = value
        return result

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MotionProtocol:
        """Build a protocol from a mapping such as :meth:`to_dict` returns.

        Parameters
        ----------
        values : mapping
            Field names to values; ``version`` is required, absent fields take their default.

        Returns
        -------
        MotionProtocol

        Raises
        ------
        InvalidInputError
            If ``values`` is not a mapping, lacks ``version``, names an unknown field
            (``field`` is that name), or a value is invalid.
        """
        if not isinstance(values, Mapping):
            raise InvalidInputError("a protocol must be given as a mapping", field="protocol")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise InvalidInputError(f"unknown protocol field {key!r}", field=str(key))
        if "version" not in values:
            raise InvalidInputError("a protocol needs a version", field="version")
        arguments = dict(values)
        for name in ("device_preference", "device_approver_roles"):
            if isinstance(arguments.get(name), list):
                arguments[name] = tuple(arguments[name])
        if "provenance" in arguments:
            arguments["provenance"] = _parse_provenance(arguments["provenance"])
        return cls(**arguments)


def _default_provenance() -> dict[str, Provenance]:
    return {
        name: Provenance(kind, source) for name, (kind, source) in _DEFAULT_PROVENANCE_TABLE.items()
    }


def _parse_provenance(values: object) -> dict[str, Provenance]:
    if not isinstance(values, Mapping):
        raise InvalidInputError(
            "provenance must map field names to kind and source", field="provenance"
        )
    parsed: dict[str, Provenance] = {}
    for name, entry in values.items():
        if isinstance(entry, Provenance):
            parsed[str(name)] = entry
        elif isinstance(entry, Mapping) and set(entry) == {"kind", "source"}:
            parsed[str(name)] = Provenance(entry["kind"], entry["source"])
        else:
            raise InvalidInputError(
                f"provenance of {name!r} needs exactly a kind and a source", field="provenance"
            )
    return parsed


def _complete_provenance(given: object) -> MappingProxyType[str, Provenance]:
    """Every field with a provenance: the defaults', overridden by what was given."""
    merged = _default_provenance()
    for name, entry in _parse_provenance(given).items():
        if name not in _DEFAULT_PROVENANCE_TABLE:
            raise InvalidInputError(f"provenance for unknown field {name!r}", field="provenance")
        merged[name] = entry
    return MappingProxyType(merged)


def _approver_roles(value: object) -> tuple[str, ...]:
    if (
        not isinstance(value, tuple | list)
        or not value
        or any(role not in APPROVER_ROLE_VALUES for role in value)
    ):
        raise InvalidInputError(
            f"device_approver_roles must be a non-empty list of {list(APPROVER_ROLE_VALUES)}, "
            f"got {value!r}",
            field="device_approver_roles",
        )
    return tuple(str(role) for role in value)


def _device_order(value: object) -> tuple[str, ...]:
    if not isinstance(value, tuple | list) or sorted(value) != sorted(DEVICE_VALUES):
        raise InvalidInputError(
            f"device_preference must order exactly {list(DEVICE_VALUES)}, got {value!r}",
            field="device_preference",
        )
    return tuple(str(v) for v in value)


_DEFAULT_VALUES = SimpleNamespace(
    **{
        f.name: (f.default if f.default is not dataclasses.MISSING else None)
        for f in dataclasses.fields(MotionProtocol)
    }
)

DEFAULT_PROTOCOL = MotionProtocol()
"""The protocol of CLINICAL.md, version :data:`DEFAULT_PROTOCOL_VERSION`."""
