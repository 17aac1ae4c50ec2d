"""Motion-management decision for liver SBRT under a versioned protocol.

:func:`recommend_motion_management` reads a :class:`~igrt.breathing_analysis.BreathingAnalysis`
and applies a :class:`~igrt.protocol.MotionProtocol` (CLINICAL.md §2): liver motion above 5 mm
gets motion management, active breathing control (ABC) for patients who hold their breath long
and reproducibly, abdominal compression otherwise, and compression must be shown to bring the
residual motion to 5 mm or less.

Notation: ``e`` the excursion chosen by ``protocol.excursion_statistic`` (default: the median
peak-to-peak SI excursion of the breathing cycles), ``u`` its standard uncertainty, ``k``
``protocol.borderline_coverage_factor`` (default 1), ``T`` ``protocol.motion_threshold_mm``
(5 mm), ``Tc`` ``protocol.compression_residual_threshold_mm`` (5 mm), ``P`` the 95th-percentile
excursion and ``Pmax`` ``protocol.no_device_max_p95_excursion_mm`` (7 mm). The band edges
``e ± k·u`` are rounded to 1e-6 mm so that, e.g., 4.6 + 2 × 0.2 counts as exactly 5.0.

Decision table (rows are tried in order; the first that applies decides)
-------------------------------------------------------------------------
Contexts: FB free breathing, BHT breath-hold trial, AC recorded under abdominal compression.

==  =======  ==============================================  ==================================
 #  context  condition                                       recommendation (reason)
==  =======  ==============================================  ==================================
 1  any      the motion analysis has a degrading quality     REASSESS (DEGRADED_ANALYSIS)
             issue (too few cycles, no breathing period,
             too many lost frames, too many outliers), or
             the breath-hold trial lost too many frames
 2  FB, BHT  ``e + k·u <= T`` and ``P <= Pmax``              NO_DEVICE (BELOW_THRESHOLD)
 3  FB, BHT  ``e + k·u <= T`` but ``P > Pmax``               REASSESS (LARGE_BREATHS)
 4  FB, BHT  ``e - k·u <= T < e + k·u``                      REASSESS (BORDERLINE)
 5  FB, BHT  ``e - k·u > T``, breath-hold evidence meets     ACTIVE_BREATHING_CONTROL
             every ABC criterion                             (ABC_SUITABLE)
 6  FB, BHT  ``e - k·u > T``, the evidence fails a           ABDOMINAL_COMPRESSION
             criterion (a trial without any hold fails)      (ABC_NOT_SUITABLE)
 7  FB       ``e - k·u > T``, no breath-hold evidence        ABDOMINAL_COMPRESSION
                                                             (ABC_NOT_ASSESSED)
 8  AC       ``e + k·u <= Tc`` and ``P <= Pmax``             ABDOMINAL_COMPRESSION
                                                             (COMPRESSION_EFFECTIVE)
 9  AC       ``e + k·u <= Tc`` but ``P > Pmax``              REASSESS (LARGE_BREATHS)
10  AC       ``e - k·u <= Tc < e + k·u``                     REASSESS (BORDERLINE)
11  AC       ``e - k·u > Tc``                                GATING_OR_LARGER_MARGIN
                                                             (COMPRESSION_INSUFFICIENT)
==  =======  ==============================================  ==================================

ABC criteria (all must hold): at least ``min_abc_holds`` holds (2); the shortest at least
``min_hold_duration_s`` (20 s); the largest within-hold dome movement (|drift| × duration) at
most ``max_hold_drift_mm`` (3 mm, Eccles 2006: 0-3.4 mm); the range of the hold levels at most
``max_hold_reproducibility_mm`` (3 mm). The shortest and the worst hold count because every
treatment hold must be usable.

Where the breath-hold evidence comes from:

- *free breathing*: ``hold_evidence`` if given (e.g. entered from an ABC session, or built with
  :meth:`BreathHoldEvidence.from_analysis` from a separate trial recording); otherwise the holds
  found in the same recording, if any. With neither, ABC suitability is **not assessed** (row 7):
  compression is recommended, and the rationale says that ABC remains an option if a
  breath-hold trial meets the criteria. A clinical user expects this: the protocol prefers ABC
  for patients who can hold their breath, but nobody can be called able to without a trial, and
  compression is the protocol's choice for the others.
- *breath-hold trial*: the holds of the analysed trial recording (or ``hold_evidence``). The
  motion comes from ``free_breathing_analysis`` if given, else from the free breathing between
  the holds of the trial. A trial in which no hold was found counts as failed (row 6).
- *under compression*: the analysed trace was recorded with the compression plate on; its
  excursion is the residual motion. Breath-hold evidence is not used. When escalation is needed
  the rationale says why and that ABC is an alternative if a breath-hold trial qualifies.

"No device" and "compression effective" therefore need the *typical* breath clearly within the
threshold **and** the large breaths (95th percentile) within ``Pmax``; a patient who breathes
4 mm but takes frequent 9 mm breaths is not silently given "no device".

Every :class:`MotionDecision` records its inputs, the thresholds applied, the protocol
version, a reason code and a plain-language rationale (sentences a therapist reads).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from igrt.breathing_analysis import BreathingAnalysis, QualityFlagValues
from igrt.errors import InvalidInputError
from igrt.protocol import DEFAULT_PROTOCOL, ExcursionStatisticValues, MotionProtocol

__all__ = [
    "AbcAssessment",
    "AbcCriterion",
    "AssessmentContextValues",
    "BreathHoldEvidence",
    "DecisionReasonValues",
    "MotionDecision",
    "MotionManagementValues",
    "assess_abc_suitability",
    "recommend_motion_management",
]

_BAND_DECIMALS = 6
"""Band edges are rounded to 1e-6 mm to keep floating-point noise out of the comparisons."""


class MotionManagementValues(enum.Enum):
    """The recommended motion management."""

    NO_DEVICE = "no_device"
    """Motion within the threshold: free breathing, no motion-management device."""
    ACTIVE_BREATHING_CONTROL = "active_breathing_control"
    """Active breathing control (ABC): the breath is held at a preset volume."""
    ABDOMINAL_COMPRESSION = "abdominal_compression"
    """Abdominal compression (recommended, or confirmed effective under compression)."""
    GATING_OR_LARGER_MARGIN = "gating_or_larger_margin"
    """Compression leaves too much motion: escalate to gating or a larger internal margin."""
    REASSESS = "reassess"
    """No device choice can be made from this recording; the rationale says why."""


class AssessmentContextValues(enum.Enum):
    """Under which conditions the analysed trace was recorded."""

    FREE_BREATHING = "free_breathing"
    ABDOMINAL_COMPRESSION = "abdominal_compression"
    """Recorded with the compression plate on: the excursion is the residual motion."""
    BREATH_HOLD_TRIAL = "breath_hold_trial"
    """A breath-hold trial: holds with free breathing between them."""


class DecisionReasonValues(enum.Enum):
    """Which row of the decision table (module docstring) decided."""

    DEGRADED_ANALYSIS = "degraded_analysis"
    BELOW_THRESHOLD = "below_threshold"
    LARGE_BREATHS = "large_breaths"
    BORDERLINE = "borderline"
    ABC_SUITABLE = "abc_suitable"
    ABC_NOT_SUITABLE = "abc_not_suitable"
    ABC_NOT_ASSESSED = "abc_not_assessed"
    COMPRESSION_EFFECTIVE = "compression_effective"
    COMPRESSION_INSUFFICIENT = "compression_insufficient"


def _optional_number(value: object, name: str, *, minimum: float = 0.0) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{name} must be a number or None, got {value!r}", field=name)
    number = float(value)
    if not math.isfinite(number) or number < minimum:
        raise InvalidInputError(
            f"{name} must be finite and at least {minimum:g}, got {value!r}", field=name
        )
    return number


@dataclass(frozen=True)
class BreathHoldEvidence:
    """What is known about the patient's breath holds.

    Parameters
    ----------
    n_holds : int
        Number of holds observed (0 for a trial in which the patient held no breath).
    shortest_hold_s : float or None
        Duration of the shortest hold, s (``None`` if and only if ``n_holds == 0``).
    largest_hold_drift_mm : float or None
        Largest dome movement within one hold (absolute, over the whole hold), mm.
    hold_reproducibility_mm : float or None
        Range of the hold levels between holds, mm (``None`` with fewer than two holds).
    source : str, optional
        Where the numbers come from, in plain words.

    Raises
    ------
    InvalidInputError
        If a count or value is negative or not finite, or the ``None`` pattern does not match
        ``n_holds``.
    """

    n_holds: int
    shortest_hold_s: float | None
    largest_hold_drift_mm: float | None
    hold_reproducibility_mm: float | None
    source: str = "entered by the user"

    def __post_init__(self) -> None:
        if isinstance(self.n_holds, bool) or not isinstance(self.n_holds, int) or self.n_holds < 0:
            raise InvalidInputError(
                f"n_holds must be a non-negative integer, got {self.n_holds!r}", field="n_holds"
            )
        for name in ("shortest_hold_s", "largest_hold_drift_mm", "hold_reproducibility_mm"):
            object.__setattr__(self, name, _optional_number(getattr(self, name), name))
        if (self.n_holds == 0) != (self.shortest_hold_s is None) or (self.n_holds == 0) != (
            self.largest_hold_drift_mm is None
        ):
            raise InvalidInputError(
                "shortest_hold_s and largest_hold_drift_mm are required when n_holds > 0 and "
                "must be None when n_holds == 0",
                field="shortest_hold_s",
            )
        if self.n_holds < 2 and self.hold_reproducibility_mm is not None:
            raise InvalidInputError(
                "hold_reproducibility_mm needs at least two holds", field="hold_reproducibility_mm"
            )
        if not isinstance(self.source, str):
            raise InvalidInputError("source must be a string", field="source")

    @classmethod
    def from_analysis(cls, analysis: BreathingAnalysis) -> BreathHoldEvidence:
        """Evidence from the holds detected in an analysed recording (possibly none)."""
        if not isinstance(analysis, BreathingAnalysis):
            raise InvalidInputError("analysis must be a BreathingAnalysis", field="analysis")
        holds = analysis.holds
        if not holds:
            return cls(0, None, None, None, source="no breath hold detected in the recording")
        return cls(
            n_holds=len(holds),
            shortest_hold_s=min(hold.duration_s for hold in holds),
            largest_hold_drift_mm=max(abs(hold.drift_mm) for hold in holds),
            hold_reproducibility_mm=analysis.hold_reproducibility_mm,
            source=f"{len(holds)} breath hold(s) detected in the recording",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping with units in the keys."""
        return {
            "n_holds": self.n_holds,
            "shortest_hold_s": self.shortest_hold_s,
            "largest_hold_drift_mm": self.largest_hold_drift_mm,
            "hold_reproducibility_mm": self.hold_reproducibility_mm,
            "source": self.source,
        }


@dataclass(frozen=True)
class AbcCriterion:
    """One ABC eligibility criterion: the measured value, the protocol limit, pass or fail."""

    name: str
    value: float | None
    limit: float
    unit: str
    passed: bool
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "unit": self.unit,
            "passed": self.passed,
            "sentence": self.sentence,
        }


@dataclass(frozen=True)
class AbcAssessment:
    """The ABC suitability of a patient judged from breath-hold evidence."""

    evidence: BreathHoldEvidence
    criteria: tuple[AbcCriterion, ...]

    @property
    def suitable(self) -> bool:
        """``True`` when every criterion passed."""
        return all(criterion.passed for criterion in self.criteria)

    @property
    def failed(self) -> tuple[AbcCriterion, ...]:
        """The criteria that failed."""
        return tuple(criterion for criterion in self.criteria if not criterion.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "suitable": self.suitable,
            "evidence": self.evidence.to_dict(),
            "criteria": [criterion.to_dict() for criterion in self.criteria],
        }


def assess_abc_suitability(
    evidence: BreathHoldEvidence, protocol: MotionProtocol = DEFAULT_PROTOCOL
) -> AbcAssessment:
    """Judge ABC suitability from breath-hold evidence against the protocol's criteria.

    Parameters
    ----------
    evidence : BreathHoldEvidence
        Number, shortest duration, largest drift and reproducibility of the holds.
    protocol : MotionProtocol, optional
        Supplies ``min_abc_holds``, ``min_hold_duration_s``, ``max_hold_drift_mm`` and
        ``max_hold_reproducibility_mm``.

    Returns
    -------
    AbcAssessment
        One criterion per limit; a value that could not be measured fails its criterion
        (except reproducibility when the protocol asks for a single hold).

    Raises
    ------
    InvalidInputError
        If the arguments are of the wrong type.

    Examples
    --------
    >>> evidence = BreathHoldEvidence(3, 24.0, 1.4, 1.0)
    >>> assess_abc_suitability(evidence).suitable
    True
    >>> [c.name for c in assess_abc_suitability(BreathHoldEvidence(2, 12.0, 1.0, 0.5)).failed]
    ['shortest hold']
    """
    if not isinstance(evidence, BreathHoldEvidence):
        raise InvalidInputError("evidence must be a BreathHoldEvidence", field="hold_evidence")
    if not isinstance(protocol, MotionProtocol):
        raise InvalidInputError("protocol must be a MotionProtocol", field="protocol")
    p = protocol
    n = evidence.n_holds
    shortest = evidence.shortest_hold_s
    drift = evidence.largest_hold_drift_mm
    spread = evidence.hold_reproducibility_mm
    criteria = [
        AbcCriterion(
            "number of holds",
            float(n),
            float(p.min_abc_holds),
            "holds",
            n >= p.min_abc_holds,
            f"{n} breath hold(s) observed; at least {p.min_abc_holds} needed.",
        ),
        AbcCriterion(
            "shortest hold",
            shortest,
            p.min_hold_duration_s,
            "s",
            shortest is not None and shortest >= p.min_hold_duration_s,
            (
                f"Shortest hold {shortest:.1f} s; at least {p.min_hold_duration_s:g} s needed."
                if shortest is not None
                else f"No hold to measure; holds of at least {p.min_hold_duration_s:g} s needed."
            ),
        ),
        AbcCriterion(
            "within-hold drift",
            drift,
            p.max_hold_drift_mm,
            "mm",
            drift is not None and drift <= p.max_hold_drift_mm,
            (
                f"Largest dome movement within a hold {drift:.1f} mm; at most "
                f"{p.max_hold_drift_mm:g} mm allowed."
                if drift is not None
                else f"No within-hold drift measured; at most {p.max_hold_drift_mm:g} mm allowed."
            ),
        ),
    ]
    if spread is not None:
        criteria.append(
            AbcCriterion(
                "hold-to-hold reproducibility",
                spread,
                p.max_hold_reproducibility_mm,
                "mm",
                spread <= p.max_hold_reproducibility_mm,
                f"Hold levels differ by up to {spread:.1f} mm; at most "
                f"{p.max_hold_reproducibility_mm:g} mm allowed.",
            )
        )
    else:
        single_allowed = p.min_abc_holds <= 1 and n == 1
        criteria.append(
            AbcCriterion(
                "hold-to-hold reproducibility",
                None,
                p.max_hold_reproducibility_mm,
                "mm",
                single_allowed,
                "Hold-to-hold reproducibility not measurable with fewer than two holds"
                + (" (the protocol accepts a single hold)." if single_allowed else "."),
            )
        )
    return AbcAssessment(evidence, tuple(criteria))


@dataclass(frozen=True)
class MotionDecision:
    """A motion-management recommendation with everything needed to audit it.

    Parameters
    ----------
    recommendation : MotionManagementValues
        What to do.
    reason : DecisionReasonValues
        Which row of the decision table decided.
    context : AssessmentContextValues
        Under which conditions the analysed trace was recorded.
    protocol_version : str
        Version of the protocol applied.
    inputs : mapping
        The measured values the decision used (units in the keys).
    thresholds : mapping
        The protocol values applied (units in the keys).
    rationale : tuple of str
        Plain-language sentences for the therapist, in reading order.
    abc_assessment : AbcAssessment or None, optional
        The ABC suitability judgement, when there was breath-hold evidence.
    """

    recommendation: MotionManagementValues
    reason: DecisionReasonValues
    context: AssessmentContextValues
    protocol_version: str
    inputs: MappingProxyType[str, Any]
    thresholds: MappingProxyType[str, Any]
    rationale: tuple[str, ...]
    abc_assessment: AbcAssessment | None = field(default=None)

    @property
    def needs_motion_management(self) -> bool | None:
        """``True`` for a device or escalation, ``False`` for no device, ``None`` to re-assess."""
        if self.recommendation is MotionManagementValues.REASSESS:
            return None
        return self.recommendation is not MotionManagementValues.NO_DEVICE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "recommendation": self.recommendation.value,
            "reason": self.reason.value,
            "context": self.context.value,
            "protocol_version": self.protocol_version,
            "inputs": dict(self.inputs),
            "thresholds": dict(self.thresholds),
            "rationale": list(self.rationale),
            "abc_assessment": None
            if self.abc_assessment is None
            else self.abc_assessment.to_dict(),
        }


def _mm(value: float) -> str:
    return f"{value:.1f} mm"


def _abc_criteria_text(protocol: MotionProtocol) -> str:
    return (
        f"at least {protocol.min_abc_holds} breath holds of at least "
        f"{protocol.min_hold_duration_s:g} s each, with the dome moving at most "
        f"{protocol.max_hold_drift_mm:g} mm within a hold and hold levels reproducible to "
        f"{protocol.max_hold_reproducibility_mm:g} mm"
    )


def recommend_motion_management(
    analysis: BreathingAnalysis,
    *,
    protocol: MotionProtocol = DEFAULT_PROTOCOL,
    context: AssessmentContextValues | str = AssessmentContextValues.FREE_BREATHING,
    hold_evidence: BreathHoldEvidence | None = None,
    free_breathing_analysis: BreathingAnalysis | None = None,
) -> MotionDecision:
    """Recommend motion management from an analysed breathing trace (table in module docstring).

    Parameters
    ----------
    analysis : BreathingAnalysis
        The analysed recording: free breathing, a breath-hold trial, or breathing under
        abdominal compression, as ``context`` says.
    protocol : MotionProtocol, optional
        Thresholds; :data:`~igrt.protocol.DEFAULT_PROTOCOL` by default.
    context : AssessmentContextValues or str, optional
        Under which conditions ``analysis`` was recorded (default free breathing).
    hold_evidence : BreathHoldEvidence or None, optional
        Breath-hold metrics from elsewhere; they take precedence over holds found in
        ``analysis``. Not used under compression.
    free_breathing_analysis : BreathingAnalysis or None, optional
        For a breath-hold trial: the free-breathing recording that measures the motion (else
        the free breathing within the trial is used). Under compression: the free-breathing
        recording before compression, reported for comparison only. Not allowed with a
        free-breathing ``analysis``.

    Returns
    -------
    MotionDecision

    Raises
    ------
    InvalidInputError
        If an argument has the wrong type, ``context`` is unknown, or
        ``free_breathing_analysis`` is given for a free-breathing ``analysis``.

    Examples
    --------
    >>> import numpy as np
    >>> from igrt.breathing_analysis import analyse_breathing
    >>> from igrt.trace import BreathingTrace
    >>> t = np.arange(0.0, 60.0, 0.1)
    >>> trace = BreathingTrace(t, -12.0 * np.sin(np.pi * t / 4.0) ** 6, tracking_sd_mm=0.3)
    >>> decision = recommend_motion_management(analyse_breathing(trace))
    >>> decision.recommendation.value, decision.reason.value
    ('abdominal_compression', 'abc_not_assessed')
    """
    if not isinstance(analysis, BreathingAnalysis):
        raise InvalidInputError("analysis must be a BreathingAnalysis", field="analysis")
    if not isinstance(protocol, MotionProtocol):
        raise InvalidInputError("protocol must be a MotionProtocol", field="protocol")
    try:
        context = AssessmentContextValues(
            context.value if isinstance(context, AssessmentContextValues) else context
        )
    except ValueError:
        raise InvalidInputError(
            f"context must be one of {[c.value for c in AssessmentContextValues]}, got {context!r}",
            field="context",
        ) from None
    if hold_evidence is not None and not isinstance(hold_evidence, BreathHoldEvidence):
        raise InvalidInputError("hold_evidence must be a BreathHoldEvidence", field="hold_evidence")
    if free_breathing_analysis is not None and not isinstance(
        free_breathing_analysis, BreathingAnalysis
    ):
        raise InvalidInputError(
            "free_breathing_analysis must be a BreathingAnalysis", field="free_breathing_analysis"
        )
    if context is AssessmentContextValues.FREE_BREATHING and free_breathing_analysis is not None:
        raise InvalidInputError(
            "free_breathing_analysis is only for a breath-hold trial or a compression recording; "
            "the analysed trace already is free breathing",
            field="free_breathing_analysis",
        )
    return _Decider(analysis, protocol, context, hold_evidence, free_breathing_analysis).decide()


class _Decider:
    """Applies the decision table; collects inputs, thresholds and rationale on the way."""

    def __init__(
        self,
        analysis: BreathingAnalysis,
        protocol: MotionProtocol,
        context: AssessmentContextValues,
        hold_evidence: BreathHoldEvidence | None,
        free_breathing_analysis: BreathingAnalysis | None,
    ) -> None:
        self.protocol = protocol
        self.context = context
        self.compression = context is AssessmentContextValues.ABDOMINAL_COMPRESSION
        self.trial = context is AssessmentContextValues.BREATH_HOLD_TRIAL
        self.analysis = analysis
        self.motion = (
            free_breathing_analysis if self.trial and free_breathing_analysis else analysis
        )
        self.reference = free_breathing_analysis if self.compression else None
        self.evidence: BreathHoldEvidence | None = None
        self.evidence_from_recording = False
        if not self.compression:
            if hold_evidence is not None:
                self.evidence = hold_evidence
            elif self.trial or analysis.holds:
                self.evidence = BreathHoldEvidence.from_analysis(analysis)
                self.evidence_from_recording = True
        self.ignored_evidence = self.compression and hold_evidence is not None
        self.threshold = (
            protocol.compression_residual_threshold_mm
            if self.compression
            else protocol.motion_threshold_mm
        )
        self.rationale: list[str] = []
        self.inputs: dict[str, Any] = {}
        self.thresholds: dict[str, Any] = {}
        self.abc: AbcAssessment | None = None

    # --- helpers ------------------------------------------------------------------------------

    def result(
        self, recommendation: MotionManagementValues, reason: DecisionReasonValues
    ) -> MotionDecision:
        return MotionDecision(
            recommendation=recommendation,
            reason=reason,
            context=self.context,
            protocol_version=self.protocol.version,
            inputs=MappingProxyType(dict(self.inputs)),
            thresholds=MappingProxyType(dict(self.thresholds)),
            rationale=tuple(self.rationale),
            abc_assessment=self.abc,
        )

    def record_inputs(self) -> None:
        p, motion = self.protocol, self.motion
        statistic = p.excursion_statistic
        excursion, uncertainty = motion.excursion_mm(statistic)
        self.inputs.update(
            {
                "context": self.context.value,
                "excursion_statistic": statistic.value,
                "excursion_mm": excursion,
                "excursion_uncertainty_mm": uncertainty,
                "excursion_median_mm": motion.excursion_median_mm,
                "excursion_p95_mm": motion.excursion_p95_mm,
                "range_without_outliers_mm": motion.range_without_outliers_mm,
                "n_cycles": motion.n_cycles,
                "n_outlier_cycles": motion.n_outlier_cycles,
                "quality_flags": sorted(flag.value for flag in motion.quality_flags),
                "analysis_protocol_version": motion.protocol_version,
                "hold_evidence": None if self.evidence is None else self.evidence.to_dict(),
            }
        )
        if self.reference is not None:
            self.inputs["free_breathing_excursion_mm"] = self.reference.excursion_mm(statistic)[0]
        threshold_name = (
            "compression_residual_threshold_mm" if self.compression else "motion_threshold_mm"
        )
        self.thresholds.update(
            {
                threshold_name: self.threshold,
                "borderline_coverage_factor": p.borderline_coverage_factor,
                "no_device_max_p95_excursion_mm": p.no_device_max_p95_excursion_mm,
                "min_cycles": p.min_cycles,
                "max_lost_fraction": p.max_lost_fraction,
                "max_outlier_fraction": p.max_outlier_fraction,
            }
        )
        if not self.compression:
            self.thresholds.update(
                {
                    "min_abc_holds": p.min_abc_holds,
                    "min_hold_duration_s": p.min_hold_duration_s,
                    "max_hold_drift_mm": p.max_hold_drift_mm,
                    "max_hold_reproducibility_mm": p.max_hold_reproducibility_mm,
                }
            )

    def degrading_reasons(self) -> list[str]:
        reasons = [issue.message for issue in self.motion.degrading_issues]
        if self.evidence_from_recording and self.motion is not self.analysis:
            lost = [
                issue.message
                for issue in self.analysis.degrading_issues
                if issue.flag is QualityFlagValues.LOST_FRAMES
            ]
            reasons += [f"breath-hold trial: {message}" for message in lost]
        excursion, uncertainty = self.motion.excursion_mm(self.protocol.excursion_statistic)
        if not reasons and (excursion is None or uncertainty is None):
            reasons.append("the excursion or its uncertainty could not be measured")
        return reasons

    # --- the table ------------------------------------------------------------------------------

    def decide(self) -> MotionDecision:
        p = self.protocol
        self.record_inputs()
        what = "residual motion under abdominal compression" if self.compression else "motion"
        if self.motion.protocol_version != p.version:
            self.rationale.append(
                f"Note: the trace was analysed under protocol {self.motion.protocol_version} "
                f"and is judged under protocol {p.version}."
            )
        if self.ignored_evidence:
            self.rationale.append(
                "Breath-hold evidence was supplied but is not used for a recording under "
                "compression."
            )

        # row 1: degraded analysis
        reasons = self.degrading_reasons()
        if reasons:
            self.rationale.append(
                "The recording cannot be trusted for a motion-management decision: "
                + "; ".join(reasons)
                + "."
            )
            self.rationale.append(
                "Re-assess: repeat the motion recording (coach the patient, check the tracking) "
                "before choosing any device."
            )
            return self.result(
                MotionManagementValues.REASSESS, DecisionReasonValues.DEGRADED_ANALYSIS
            )

        excursion, uncertainty = self.motion.excursion_mm(p.excursion_statistic)
        assert excursion is not None  # checked by degrading_reasons
        assert uncertainty is not None
        p95 = self.motion.excursion_p95_mm
        assert p95 is not None
        k = p.borderline_coverage_factor
        low = round(excursion - k * uncertainty, _BAND_DECIMALS)
        high = round(excursion + k * uncertainty, _BAND_DECIMALS)
        self.inputs["band_low_mm"] = low
        self.inputs["band_high_mm"] = high
        label = (
            "Median"
            if p.excursion_statistic is ExcursionStatisticValues.MEDIAN
            else ("95th-percentile")
        )
        source = (
            "the free-breathing recording"
            if self.trial and self.motion is not self.analysis
            else "the recording"
        )
        self.rationale.append(
            f"{label} peak-to-peak superior-inferior {what}: {_mm(excursion)} "
            f"(uncertainty ±{uncertainty:.1f} mm, 1 SD) over {self.motion.n_cycles} breathing "
            f"cycles of {source}; 95 % of breaths are below {_mm(p95)}."
        )
        if self.reference is not None:
            before = self.reference.excursion_mm(p.excursion_statistic)[0]
            if before is not None:
                self.rationale.append(
                    f"Without compression the excursion was {_mm(before)}: compression changed "
                    f"it by {excursion - before:+.1f} mm."
                )
        name = "compression residual threshold" if self.compression else "motion threshold"
        band_text = f"{_mm(excursion)} ± {k:g}×{uncertainty:.1f} mm spans {low:.1f}-{high:.1f} mm"
        if high <= self.threshold:
            if p95 > p.no_device_max_p95_excursion_mm:
                self.rationale.append(
                    f"The typical breath is within the {self.threshold:g} mm {name} "
                    f"({band_text}), but 5 % of breaths exceed {_mm(p95)}, above the "
                    f"{p.no_device_max_p95_excursion_mm:g} mm allowed for large breaths."
                )
                self.rationale.append(
                    "Re-assess: the breathing is irregular; coach the patient and repeat the "
                    "recording, or treat the motion as above the threshold."
                )
                return self.result(
                    MotionManagementValues.REASSESS, DecisionReasonValues.LARGE_BREATHS
                )
            if self.compression:
                self.rationale.append(
                    f"Compression is effective: the residual motion ({band_text}) is within "
                    f"the {self.threshold:g} mm threshold (Hu 2016) and large breaths stay "
                    f"below {p.no_device_max_p95_excursion_mm:g} mm."
                )
                self.rationale.append("Treat with abdominal compression at this setting.")
                return self.result(
                    MotionManagementValues.ABDOMINAL_COMPRESSION,
                    DecisionReasonValues.COMPRESSION_EFFECTIVE,
                )
            self.rationale.append(
                f"Motion is within the {self.threshold:g} mm {name} ({band_text}) and large "
                f"breaths stay below {p.no_device_max_p95_excursion_mm:g} mm: no motion-"
                "management device is needed."
            )
            return self.result(
                MotionManagementValues.NO_DEVICE, DecisionReasonValues.BELOW_THRESHOLD
            )
        if low <= self.threshold:
            self.rationale.append(
                f"Borderline: {band_text}, which straddles the {self.threshold:g} mm {name}; "
                "the measurement cannot tell on which side the motion lies."
            )
            self.rationale.append(
                "Re-assess: repeat the recording over more breathing cycles (or with better "
                "tracking) before deciding."
            )
            return self.result(MotionManagementValues.REASSESS, DecisionReasonValues.BORDERLINE)
        if self.compression:
            self.rationale.append(
                f"Compression is not sufficient: the residual motion ({band_text}) exceeds the "
                f"{self.threshold:g} mm threshold (Hu 2016)."
            )
            self.rationale.append(
                "Escalate: respiratory gating, or an internal margin that covers the residual "
                f"motion; active breathing control is an alternative if a breath-hold trial "
                f"shows {_abc_criteria_text(p)}."
            )
            return self.result(
                MotionManagementValues.GATING_OR_LARGER_MARGIN,
                DecisionReasonValues.COMPRESSION_INSUFFICIENT,
            )
        self.rationale.append(
            f"Motion exceeds the {self.threshold:g} mm {name} ({band_text}): motion management "
            "is needed."
        )
        return self.choose_device()

    def choose_device(self) -> MotionDecision:
        p = self.protocol
        follow_up = (
            f"Compression must be shown to work: repeat the motion assessment under compression "
            f"(the residual must be at most {p.compression_residual_threshold_mm:g} mm)."
        )
        if self.evidence is None:
            self.rationale.append(
                "ABC suitability not assessed: there is no breath hold in this recording and no "
                f"hold metrics were supplied. Abdominal compression is recommended unless a "
                f"breath-hold trial shows {_abc_criteria_text(p)}."
            )
            self.rationale.append(follow_up)
            return self.result(
                MotionManagementValues.ABDOMINAL_COMPRESSION, DecisionReasonValues.ABC_NOT_ASSESSED
            )
        self.abc = assess_abc_suitability(self.evidence, p)
        self.rationale.append(f"Breath-hold evidence: {self.evidence.source}.")
        if self.abc.suitable:
            self.rationale.extend(criterion.sentence for criterion in self.abc.criteria)
            self.rationale.append(
                "The patient holds the breath long and reproducibly enough: treat with active "
                "breathing control (ABC)."
            )
            return self.result(
                MotionManagementValues.ACTIVE_BREATHING_CONTROL, DecisionReasonValues.ABC_SUITABLE
            )
        self.rationale.extend(criterion.sentence for criterion in self.abc.failed)
        self.rationale.append(
            "The breath holds do not meet the ABC criteria: abdominal compression is recommended."
        )
        self.rationale.append(follow_up)
        return self.result(
            MotionManagementValues.ABDOMINAL_COMPRESSION, DecisionReasonValues.ABC_NOT_SUITABLE
        )
