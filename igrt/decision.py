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
``D`` the baseline drift, ``Dmax`` ``protocol.max_baseline_drift_mm_per_min`` (3 mm/min).
``docs/decision-table.md`` gives the provenance (seed / literature / site choice) of each row.

==  =======  ==============================================  ==================================
 #  context  condition                                       recommendation (reason)
==  =======  ==============================================  ==================================
 1  any      the motion analysis has a degrading quality     REASSESS (DEGRADED_ANALYSIS)
             issue (fewer than two cycles, no breathing
             period, too many lost frames, too many
             outliers), or the trial lost too many frames
 2  FB, BHT  ``e + k·u <= T``, ``P <= Pmax``, ``|D|<=Dmax``  NO_DEVICE (BELOW_THRESHOLD)
 3  FB, BHT  ``e + k·u <= T`` but ``P > Pmax``               REASSESS (LARGE_BREATHS)
 4  FB, BHT  ``e + k·u <= T``, ``P <= Pmax``, ``|D|>Dmax``   device as rows 7-9
                                                             (BASELINE_DRIFT)
 5  FB, BHT  ``e - k·u <= T < e + k·u`` and ``P > Pmax``     device as rows 7-9
                                                             (BORDERLINE_LARGE_BREATHS)
 6  FB, BHT  ``e - k·u <= T < e + k·u``                      REASSESS (BORDERLINE)
 7  FB, BHT  ``e - k·u > T``, breath-hold evidence meets     ACTIVE_BREATHING_CONTROL
             every ABC criterion                             (ABC_SUITABLE)
 8  FB, BHT  ``e - k·u > T``, the evidence fails a           ABDOMINAL_COMPRESSION
             criterion (a trial without any hold fails)      (ABC_NOT_SUITABLE)
 9  FB       ``e - k·u > T``, no breath-hold evidence        the first of
                                                             ``device_preference``:
                                                             BREATH_HOLD_TRIAL_NEXT ("ABC trial
                                                             next; compression if ABC is not
                                                             tolerated") or
                                                             ABDOMINAL_COMPRESSION
                                                             (ABC_NOT_ASSESSED)
10  AC       ``e + k·u <= Tc`` and ``P <= Pmax``             ABDOMINAL_COMPRESSION
                                                             (COMPRESSION_EFFECTIVE)
11  AC       ``e + k·u <= Tc`` but ``P > Pmax``              REASSESS (LARGE_BREATHS)
12  AC       ``e - k·u <= Tc < e + k·u``                     REASSESS (BORDERLINE)
13  AC       ``e - k·u > Tc``                                GATING_OR_LARGER_MARGIN
                                                             (COMPRESSION_INSUFFICIENT)
==  =======  ==============================================  ==================================

Row 5 follows from rows 3 and 9: when the band straddles ``T`` the motion may lie on either
side, but with ``P > Pmax`` neither side allows "no device" (below ``T`` the large breaths rule
it out, above ``T`` motion management is required), so motion management is recommended
instead of a re-assessment.

A decision on an analysis with fewer cycles than ``protocol.min_cycles`` is made and marked
``provisional`` (its rationale asks for a longer recording).

ABC criteria (all must hold): at least ``min_abc_holds`` holds (2); the shortest at least
``min_hold_duration_s`` (20 s); the largest within-hold dome movement (|drift| × duration) at
most ``max_hold_drift_mm`` (3 mm, Eccles 2006: 0-3.4 mm); the range of the hold levels at most
``max_hold_reproducibility_mm`` (3 mm). The shortest and the worst hold count because every
treatment hold must be usable.

Where the breath-hold evidence comes from:

- *free breathing*: ``hold_evidence`` if given (e.g. entered from an ABC session, or built with
  :meth:`BreathHoldEvidence.from_analysis` from a separate trial recording); otherwise the holds
  found in the same recording, if any. With neither, ABC suitability is **not assessed** (row 9):
  the seed names ABC or compression in no order, so the protocol's ``device_preference``
  decides what to try first; by default motion management is required with a breath-hold (ABC)
  trial next and compression if ABC is not tolerated. Evidence may come from an ABC device
  session or a spirometer log (:class:`BreathHoldEvidence`), not only from fluoroscopy.
- *breath-hold trial*: the holds of the analysed trial recording (or ``hold_evidence``). The
  motion comes from ``free_breathing_analysis`` if given, else from the free breathing between
  the holds of the trial. A trial in which no hold was found counts as failed (row 8).
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
    BREATH_HOLD_TRIAL_NEXT = "breath_hold_trial_next"
    """Motion management required, no breath-hold evidence yet: ABC trial next, compression if
    ABC is not tolerated (when the protocol puts ABC first)."""
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
    BASELINE_DRIFT = "baseline_drift"
    BORDERLINE_LARGE_BREATHS = "borderline_large_breaths"
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
    provisional : bool, optional
        Whether the motion was measured over fewer cycles than the protocol asks for.
    """

    recommendation: MotionManagementValues
    reason: DecisionReasonValues
    context: AssessmentContextValues
    protocol_version: str
    inputs: MappingProxyType[str, Any]
    thresholds: MappingProxyType[str, Any]
    rationale: tuple[str, ...]
    abc_assessment: AbcAssessment | None = field(default=None)
    provisional: bool = False

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
            "provisional": self.provisional,
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
    ('breath_hold_trial_next', 'abc_not_assessed')
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
    case = _Case.build(analysis, protocol, context, hold_evidence, free_breathing_analysis)
    return _decide(case)


# --- the decision table as named steps ---------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    """Everything the table reads: the motion, the context, the evidence and the thresholds."""

    protocol: MotionProtocol
    context: AssessmentContextValues
    analysis: BreathingAnalysis
    motion: BreathingAnalysis
    reference: BreathingAnalysis | None
    evidence: BreathHoldEvidence | None
    evidence_from_recording: bool
    ignored_evidence: bool

    @classmethod
    def build(
        cls,
        analysis: BreathingAnalysis,
        protocol: MotionProtocol,
        context: AssessmentContextValues,
        hold_evidence: BreathHoldEvidence | None,
        free_breathing_analysis: BreathingAnalysis | None,
    ) -> _Case:
        compression = context is AssessmentContextValues.ABDOMINAL_COMPRESSION
        trial = context is AssessmentContextValues.BREATH_HOLD_TRIAL
        evidence: BreathHoldEvidence | None = None
        from_recording = False
        if not compression:
            if hold_evidence is not None:
                evidence = hold_evidence
            elif trial or analysis.holds:
                evidence = BreathHoldEvidence.from_analysis(analysis)
                from_recording = True
        return cls(
            protocol=protocol,
            context=context,
            analysis=analysis,
            motion=free_breathing_analysis if trial and free_breathing_analysis else analysis,
            reference=free_breathing_analysis if compression else None,
            evidence=evidence,
            evidence_from_recording=from_recording,
            ignored_evidence=compression and hold_evidence is not None,
        )

    @property
    def compression(self) -> bool:
        return self.context is AssessmentContextValues.ABDOMINAL_COMPRESSION

    @property
    def threshold_mm(self) -> float:
        p = self.protocol
        return p.compression_residual_threshold_mm if self.compression else p.motion_threshold_mm

    @property
    def threshold_name(self) -> str:
        return "compression residual threshold" if self.compression else "motion threshold"


@dataclass(frozen=True)
class _Band:
    """The measured excursion, its band ``e ± k·u`` and the 95th percentile (mm)."""

    excursion_mm: float
    uncertainty_mm: float
    low_mm: float
    high_mm: float
    p95_mm: float
    k: float

    @property
    def text(self) -> str:
        return (
            f"{_mm(self.excursion_mm)} ± {self.k:g}×{self.uncertainty_mm:.1f} mm spans "
            f"{self.low_mm:.1f}-{self.high_mm:.1f} mm"
        )


@dataclass(frozen=True)
class _Outcome:
    recommendation: MotionManagementValues
    reason: DecisionReasonValues
    sentences: tuple[str, ...]
    abc: AbcAssessment | None = None


def _decide(case: _Case) -> MotionDecision:
    """Record the inputs, then apply the rows in order; the first that applies decides."""
    inputs, thresholds = _recorded_inputs(case), _applied_thresholds(case)
    preamble = _preamble(case)
    outcome = _degraded_row(case)
    if outcome is None:
        band = _band(case)
        inputs.update({"band_low_mm": band.low_mm, "band_high_mm": band.high_mm})
        preamble += _measurement_sentences(case, band)
        outcome = (
            _compression_rows(case, band) if case.compression else _free_breathing_rows(case, band)
        )
    provisional = case.motion.is_provisional and outcome.reason is not (
        DecisionReasonValues.DEGRADED_ANALYSIS
    )
    closing: tuple[str, ...] = ()
    if provisional:
        closing = (
            f"Provisional: only {case.motion.n_cycles} complete breathing cycles were measured "
            f"(the protocol asks for {case.protocol.min_cycles}); confirm with a longer recording.",
        )
    return MotionDecision(
        recommendation=outcome.recommendation,
        reason=outcome.reason,
        context=case.context,
        protocol_version=case.protocol.version,
        inputs=MappingProxyType(inputs),
        thresholds=MappingProxyType(thresholds),
        rationale=tuple(preamble) + outcome.sentences + closing,
        abc_assessment=outcome.abc,
        provisional=provisional,
    )


def _recorded_inputs(case: _Case) -> dict[str, Any]:
    motion, statistic = case.motion, case.protocol.excursion_statistic
    excursion, uncertainty = motion.excursion_mm(statistic)
    inputs: dict[str, Any] = {
        "context": case.context.value,
        "excursion_statistic": statistic.value,
        "excursion_mm": excursion,
        "excursion_uncertainty_mm": uncertainty,
        "excursion_median_mm": motion.excursion_median_mm,
        "excursion_p95_mm": motion.excursion_p95_mm,
        "excursion_p95_uncertainty_mm": motion.excursion_p95_uncertainty_mm,
        "range_without_outliers_mm": motion.range_without_outliers_mm,
        "drift_mm_per_min": motion.drift_mm_per_min,
        "n_cycles": motion.n_cycles,
        "n_outlier_cycles": motion.n_outlier_cycles,
        "provisional": motion.is_provisional,
        "quality_flags": sorted(flag.value for flag in motion.quality_flags),
        "analysis_protocol_version": motion.protocol_version,
        "hold_evidence": None if case.evidence is None else case.evidence.to_dict(),
    }
    if case.reference is not None:
        inputs["free_breathing_excursion_mm"] = case.reference.excursion_mm(statistic)[0]
    return inputs


def _applied_thresholds(case: _Case) -> dict[str, Any]:
    p = case.protocol
    name = "compression_residual_threshold_mm" if case.compression else "motion_threshold_mm"
    thresholds: dict[str, Any] = {
        name: case.threshold_mm,
        "borderline_coverage_factor": p.borderline_coverage_factor,
        "no_device_max_p95_excursion_mm": p.no_device_max_p95_excursion_mm,
        "min_cycles": p.min_cycles,
        "max_lost_fraction": p.max_lost_fraction,
        "max_outlier_fraction": p.max_outlier_fraction,
    }
    if not case.compression:
        thresholds.update(
            {
                "max_baseline_drift_mm_per_min": p.max_baseline_drift_mm_per_min,
                "device_preference": list(p.device_preference),
                "min_abc_holds": p.min_abc_holds,
                "min_hold_duration_s": p.min_hold_duration_s,
                "max_hold_drift_mm": p.max_hold_drift_mm,
                "max_hold_reproducibility_mm": p.max_hold_reproducibility_mm,
            }
        )
    return thresholds


def _preamble(case: _Case) -> list[str]:
    sentences = []
    if case.motion.protocol_version != case.protocol.version:
        sentences.append(
            f"Note: the trace was analysed under protocol {case.motion.protocol_version} "
            f"and is judged under protocol {case.protocol.version}."
        )
    if case.ignored_evidence:
        sentences.append(
            "Breath-hold evidence was supplied but is not used for a recording under compression."
        )
    return sentences


def _degraded_row(case: _Case) -> _Outcome | None:
    """Row 1: the recording cannot be trusted."""
    reasons = [issue.message for issue in case.motion.degrading_issues]
    if case.evidence_from_recording and case.motion is not case.analysis:
        reasons += [
            f"breath-hold trial: {issue.message}"
            for issue in case.analysis.degrading_issues
            if issue.flag is QualityFlagValues.LOST_FRAMES
        ]
    excursion, uncertainty = case.motion.excursion_mm(case.protocol.excursion_statistic)
    if not reasons and (excursion is None or uncertainty is None):
        reasons.append("the excursion or its uncertainty could not be measured")
    if not reasons:
        return None
    return _Outcome(
        MotionManagementValues.REASSESS,
        DecisionReasonValues.DEGRADED_ANALYSIS,
        (
            "The recording cannot be trusted for a motion-management decision: "
            + "; ".join(reasons)
            + ".",
            "Re-assess: repeat the motion recording (coach the patient, check the tracking) "
            "before choosing any device.",
        ),
    )


def _band(case: _Case) -> _Band:
    excursion, uncertainty = case.motion.excursion_mm(case.protocol.excursion_statistic)
    p95 = case.motion.excursion_p95_mm
    assert excursion is not None
    assert uncertainty is not None
    assert p95 is not None
    k = case.protocol.borderline_coverage_factor
    return _Band(
        excursion_mm=excursion,
        uncertainty_mm=uncertainty,
        low_mm=round(excursion - k * uncertainty, _BAND_DECIMALS),
        high_mm=round(excursion + k * uncertainty, _BAND_DECIMALS),
        p95_mm=p95,
        k=k,
    )


def _measurement_sentences(case: _Case, band: _Band) -> list[str]:
    p = case.protocol
    what = "residual motion under abdominal compression" if case.compression else "motion"
    label = (
        "Median" if p.excursion_statistic is ExcursionStatisticValues.MEDIAN else "95th-percentile"
    )
    trial = case.context is AssessmentContextValues.BREATH_HOLD_TRIAL
    source = (
        "the free-breathing recording"
        if trial and case.motion is not case.analysis
        else "the recording"
    )
    p95_uncertainty = case.motion.excursion_p95_uncertainty_mm
    p95_text = _mm(band.p95_mm) + (
        "" if p95_uncertainty is None else f" (±{p95_uncertainty:.1f} mm, 1 SD)"
    )
    sentences = [
        f"{label} peak-to-peak superior-inferior {what}: {_mm(band.excursion_mm)} "
        f"(uncertainty ±{band.uncertainty_mm:.1f} mm, 1 SD) over {case.motion.n_cycles} "
        f"breathing cycles of {source}; 95 % of breaths are below {p95_text}."
    ]
    sentences.extend(_p95_near_limit_sentences(band, p95_uncertainty, p))
    if case.reference is not None:
        before = case.reference.excursion_mm(p.excursion_statistic)[0]
        if before is not None:
            sentences.append(
                f"Without compression the excursion was {_mm(before)}: compression changed "
                f"it by {band.excursion_mm - before:+.1f} mm."
            )
    return sentences


def _p95_near_limit_sentences(
    band: _Band, p95_uncertainty_mm: float | None, protocol: MotionProtocol
) -> list[str]:
    """Say so when the large-breath check rests on a 95th percentile within ``k·u`` of its limit.

    The 95th percentile of a few dozen cycles is set by the two or three largest breaths, so
    its (bootstrap) uncertainty is often a millimetre or more; which side of
    ``no_device_max_p95_excursion_mm`` it falls on is then not known, and the rationale must
    say how uncertain it is. The recommendation is left to the decision table.
    """
    limit = protocol.no_device_max_p95_excursion_mm
    if p95_uncertainty_mm is None:
        return []
    low = round(band.p95_mm - band.k * p95_uncertainty_mm, _BAND_DECIMALS)
    high = round(band.p95_mm + band.k * p95_uncertainty_mm, _BAND_DECIMALS)
    if not low <= limit < high:
        return []
    return [
        f"The large-breath check is uncertain: the 95th percentile {_mm(band.p95_mm)} ± "
        f"{band.k:g}×{p95_uncertainty_mm:.1f} mm spans {low:.1f}-{high:.1f} mm, which straddles "
        f"the {limit:g} mm allowed for large breaths; it rests on the few largest breaths, and "
        "a longer recording narrows it."
    ]


def _large_breaths(case: _Case, band: _Band) -> _Outcome:
    """Rows 3 and 11: the typical breath is within the threshold, the large breaths are not."""
    p = case.protocol
    return _Outcome(
        MotionManagementValues.REASSESS,
        DecisionReasonValues.LARGE_BREATHS,
        (
            f"The typical breath is within the {case.threshold_mm:g} mm {case.threshold_name} "
            f"({band.text}), but 5 % of breaths exceed {_mm(band.p95_mm)}, above the "
            f"{p.no_device_max_p95_excursion_mm:g} mm allowed for large breaths.",
            "Re-assess: the breathing is irregular; coach the patient and repeat the "
            "recording, or treat the motion as above the threshold.",
        ),
    )


def _borderline(case: _Case, band: _Band) -> _Outcome:
    """Rows 6 and 12: the band straddles the threshold."""
    return _Outcome(
        MotionManagementValues.REASSESS,
        DecisionReasonValues.BORDERLINE,
        (
            f"Borderline: {band.text}, which straddles the {case.threshold_mm:g} mm "
            f"{case.threshold_name}; the measurement cannot tell on which side the motion lies.",
            "Re-assess: repeat the recording over more breathing cycles (the uncertainty "
            "shrinks with them) before deciding.",
        ),
    )


def _borderline_with_large_breaths(case: _Case, band: _Band) -> _Outcome:
    """Row 5: the band straddles the threshold, and the large breaths rule out no device."""
    p = case.protocol
    statistic = (
        "median" if p.excursion_statistic is ExcursionStatisticValues.MEDIAN else "95th percentile"
    )
    why = (
        f"The {statistic} is borderline: {band.text}, which straddles the {case.threshold_mm:g} mm "
        f"{case.threshold_name}. But the large breaths rule out no device: 5 % of breaths exceed "
        f"{_mm(band.p95_mm)}, above the {p.no_device_max_p95_excursion_mm:g} mm allowed for "
        "large breaths, so below the threshold no device is ruled out by them and above it by "
        "the motion itself; either way motion management is needed."
    )
    return _choose_device(case, DecisionReasonValues.BORDERLINE_LARGE_BREATHS, why)


def _free_breathing_rows(case: _Case, band: _Band) -> _Outcome:
    """Rows 2-9 (free breathing or a breath-hold trial)."""
    if band.high_mm <= case.threshold_mm:
        return _within_threshold_rows(case, band)
    if band.low_mm <= case.threshold_mm:
        if band.p95_mm > case.protocol.no_device_max_p95_excursion_mm:
            return _borderline_with_large_breaths(case, band)
        return _borderline(case, band)
    why = (
        f"Motion exceeds the {case.threshold_mm:g} mm motion threshold ({band.text}): motion "
        "management is needed."
    )
    return _choose_device(case, None, why)


def _within_threshold_rows(case: _Case, band: _Band) -> _Outcome:
    """Rows 2-4: the typical breath is within the threshold; large breaths, drift or none."""
    p = case.protocol
    drift = case.motion.drift_mm_per_min
    if band.p95_mm > p.no_device_max_p95_excursion_mm:
        return _large_breaths(case, band)
    if drift is not None and abs(drift) > p.max_baseline_drift_mm_per_min:
        why = (
            f"The typical breath is within the {case.threshold_mm:g} mm motion threshold "
            f"({band.text}), but the baseline drifts {drift:+.1f} mm/min, beyond the "
            f"{p.max_baseline_drift_mm_per_min:g} mm/min the protocol allows: the liver "
            "leaves its planned position during treatment, so motion management is needed."
        )
        return _choose_device(case, DecisionReasonValues.BASELINE_DRIFT, why)
    return _Outcome(
        MotionManagementValues.NO_DEVICE,
        DecisionReasonValues.BELOW_THRESHOLD,
        (
            f"Motion is within the {case.threshold_mm:g} mm motion threshold ({band.text}), "
            f"large breaths stay below {p.no_device_max_p95_excursion_mm:g} mm and the "
            "baseline drift is within the protocol limit: no motion-management device is "
            "needed.",
        ),
    )


def _choose_device(case: _Case, reason: DecisionReasonValues | None, why: str) -> _Outcome:
    """Rows 7-9: ABC when the holds qualify; otherwise compression; no evidence: trial next."""
    p = case.protocol
    follow_up = (
        "Compression must be shown to work: repeat the motion assessment under compression "
        f"(the residual must be at most {p.compression_residual_threshold_mm:g} mm)."
    )
    if case.evidence is None:
        no_evidence = (
            "ABC suitability not assessed: there is no breath hold in this recording and no "
            "hold metrics (ABC session, spirometer log) were supplied."
        )
        if p.device_preference[0] == "active_breathing_control":
            return _Outcome(
                MotionManagementValues.BREATH_HOLD_TRIAL_NEXT,
                reason or DecisionReasonValues.ABC_NOT_ASSESSED,
                (
                    why,
                    no_evidence,
                    "Motion management required: breath-hold (ABC) trial next; compression if "
                    f"ABC is not tolerated. ABC needs {_abc_criteria_text(p)}.",
                ),
            )
        return _Outcome(
            MotionManagementValues.ABDOMINAL_COMPRESSION,
            reason or DecisionReasonValues.ABC_NOT_ASSESSED,
            (
                why,
                no_evidence,
                "The protocol prefers compression: abdominal compression is recommended; ABC "
                f"remains an option if a breath-hold trial shows {_abc_criteria_text(p)}.",
                follow_up,
            ),
        )
    abc = assess_abc_suitability(case.evidence, p)
    evidence = f"Breath-hold evidence: {case.evidence.source}."
    if abc.suitable:
        return _Outcome(
            MotionManagementValues.ACTIVE_BREATHING_CONTROL,
            reason or DecisionReasonValues.ABC_SUITABLE,
            (
                why,
                evidence,
                *(c.sentence for c in abc.criteria),
                "The patient holds the breath long and reproducibly enough: treat with active "
                "breathing control (ABC).",
            ),
            abc,
        )
    return _Outcome(
        MotionManagementValues.ABDOMINAL_COMPRESSION,
        reason or DecisionReasonValues.ABC_NOT_SUITABLE,
        (
            why,
            evidence,
            *(c.sentence for c in abc.failed),
            "The breath holds do not meet the ABC criteria: abdominal compression is recommended.",
            follow_up,
        ),
        abc,
    )


def _compression_rows(case: _Case, band: _Band) -> _Outcome:
    """Rows 10-13 (recorded under abdominal compression)."""
    p = case.protocol
    if band.high_mm <= case.threshold_mm:
        if band.p95_mm > p.no_device_max_p95_excursion_mm:
            return _large_breaths(case, band)
        return _Outcome(
            MotionManagementValues.ABDOMINAL_COMPRESSION,
            DecisionReasonValues.COMPRESSION_EFFECTIVE,
            (
                f"Compression is effective: the residual motion ({band.text}) is within the "
                f"{case.threshold_mm:g} mm threshold (Hu 2016) and large breaths stay below "
                f"{p.no_device_max_p95_excursion_mm:g} mm.",
                "Treat with abdominal compression at this setting.",
            ),
        )
    if band.low_mm <= case.threshold_mm:
        return _borderline(case, band)
    return _Outcome(
        MotionManagementValues.GATING_OR_LARGER_MARGIN,
        DecisionReasonValues.COMPRESSION_INSUFFICIENT,
        (
            f"Compression is not sufficient: the residual motion ({band.text}) exceeds the "
            f"{case.threshold_mm:g} mm threshold (Hu 2016).",
            "Escalate: respiratory gating, or an internal margin that covers the residual "
            "motion; active breathing control is an alternative if a breath-hold trial "
            f"shows {_abc_criteria_text(p)}.",
        ),
    )
