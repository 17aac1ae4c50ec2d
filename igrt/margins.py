"""Internal and PTV margins implied by measured breathing motion (van Herk recipe).

Method
------
The van Herk recipe (van Herk et al., IJROBP 2000;47:1121; CLINICAL.md) gives the CTV-to-PTV
margin that covers the CTV with 95 % of the dose for 90 % of patients. Its **full form** is
used::

    M = a·Σ + 1.64·(sqrt(σ² + σp²) - σp)       (a = 2.5, σp = 3.2 mm, from the protocol)

with ``Σ`` the SD of the systematic errors, ``σ`` the SD of the random errors and ``σp`` the
beam penumbra. The linear ``0.7·σ`` form (reported next to it) is its approximation for
``σ << σp``; for excursions above ~12 mm it underestimates by millimetres. Breathing motion is a
random error that blurs the dose (van Herk, Semin Radiat Oncol 2004;14:52), folded into ``σ``::

    σ_motion = A / (2·√2)
    σ        = sqrt(σ_setup² + σ_motion²)

``A`` is the peak-to-peak SI motion **under the chosen motion management**: the free-breathing
excursion without a device (or while the device is still to be chosen), the residual within
and between breath holds under ABC (largest within-hold drift + hold-to-hold range), and the
measured residual excursion for a recording under compression.

**Exhale reference.** The seed draws the GTV on an exhale CT, so the time-averaged liver
position lies inferior to it by ``5/16·A`` for the Lujan cos⁶ shape (about 0.3·A). That
offset is systematic: the inferior margin is the recipe margin plus the offset, the superior
margin the recipe margin minus it (both at least ``min_ptv_margin_mm``). Under ABC the hold
level is the reference and no offset applies.

``Σ`` and ``σ_setup`` come from the site's setup-error model in the protocol
(``systematic_setup_sd_mm``, ``random_setup_sd_mm``) unless given explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from igrt.breathing_analysis import BreathingAnalysis
from igrt.decision import MotionDecision, MotionManagementValues
from igrt.errors import InvalidInputError, ProcessingError
from igrt.protocol import DEFAULT_PROTOCOL, MotionProtocol

__all__ = [
    "DEFAULT_RANDOM_SETUP_SD_MM",
    "DEFAULT_SYSTEMATIC_SETUP_SD_MM",
    "MarginSuggestion",
    "motion_sd_from_excursion_mm",
    "suggest_margins",
]

DEFAULT_SYSTEMATIC_SETUP_SD_MM = DEFAULT_PROTOCOL.systematic_setup_sd_mm
"""Σ of the default protocol's setup-error model, mm (a site sets its own in its protocol)."""

DEFAULT_RANDOM_SETUP_SD_MM = DEFAULT_PROTOCOL.random_setup_sd_mm
"""σ of the default protocol's setup-error model, mm."""

_SINUSOID_SD_PER_PEAK_TO_PEAK = 1.0 / (2.0 * math.sqrt(2.0))
_EXHALE_MEAN_OFFSET_FRACTION = 5.0 / 16.0
"""Mean of sin⁶ over a cycle: the Lujan (n = 3) time-averaged position below end-exhale / A."""
_FULL_FORM_RANDOM_COEFFICIENT = 1.64


def motion_sd_from_excursion_mm(excursion_mm: float) -> float:
    """SD of a breathing motion of peak-to-peak ``excursion_mm``: ``A / (2√2)``, mm.

    Examples
    --------
    >>> round(motion_sd_from_excursion_mm(10.0), 3)
    3.536
    """
    return float(excursion_mm) * _SINUSOID_SD_PER_PEAK_TO_PEAK


@dataclass(frozen=True)
class MarginSuggestion:
    """Suggested superior-inferior margins and the numbers behind them (all mm).

    Parameters
    ----------
    direction : str
        Patient direction the margins apply to (``"SI"``).
    excursion_mm : float
        Peak-to-peak motion used, mm.
    excursion_statistic : str
        Which excursion summary that is (``"median"`` or ``"p95"``).
    motion_sd_mm : float
        ``excursion_mm / (2√2)``.
    systematic_setup_sd_mm, random_setup_sd_mm : float
        ``Σ`` and ``σ_setup`` as given.
    total_random_sd_mm : float
        ``sqrt(σ_setup² + σ_motion²)``.
    setup_margin_mm : float
        Recipe margin without motion, ``a·Σ + b·σ_setup``.
    internal_margin_mm : float
        Part of the recipe margin caused by the motion, ``b·(σ - σ_setup)``.
    ptv_margin_recipe_mm : float
        Recipe margin with motion, ``a·Σ + b·σ``.
    ptv_margin_mm : float
        Suggested PTV margin: the recipe margin, at least ``min_ptv_margin_mm``.
    minimum_applied : bool
        Whether the protocol minimum raised the margin.
    motion_source : str
        Which motion ``excursion_mm`` is: ``free_breathing``, ``abc_residual`` or
        ``compression_residual``.
    ptv_margin_linear_recipe_mm : float
        The linear ``a·Σ + b·σ`` form, for comparison.
    exhale_offset_mm : float
        Mean position inferior to the exhale reference, mm (0 under ABC or without exhale CT).
    ptv_margin_superior_mm, ptv_margin_inferior_mm : float
        Asymmetric SI margins about the exhale reference, each at least the protocol minimum.
    protocol_version : str
        Protocol whose coefficients and minimum were used.
    rationale : tuple of str
        Plain-language explanation.
    """

    direction: str
    excursion_mm: float
    excursion_statistic: str
    motion_sd_mm: float
    systematic_setup_sd_mm: float
    random_setup_sd_mm: float
    total_random_sd_mm: float
    setup_margin_mm: float
    internal_margin_mm: float
    ptv_margin_recipe_mm: float
    ptv_margin_mm: float
    minimum_applied: bool
    protocol_version: str
    rationale: tuple[str, ...]
    motion_source: str = "free_breathing"
    ptv_margin_linear_recipe_mm: float = 0.0
    exhale_offset_mm: float = 0.0
    ptv_margin_superior_mm: float = 0.0
    ptv_margin_inferior_mm: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping with units in the keys."""
        return {
            "direction": self.direction,
            "excursion_mm": self.excursion_mm,
            "excursion_statistic": self.excursion_statistic,
            "motion_sd_mm": self.motion_sd_mm,
            "systematic_setup_sd_mm": self.systematic_setup_sd_mm,
            "random_setup_sd_mm": self.random_setup_sd_mm,
            "total_random_sd_mm": self.total_random_sd_mm,
            "setup_margin_mm": self.setup_margin_mm,
            "internal_margin_mm": self.internal_margin_mm,
            "ptv_margin_recipe_mm": self.ptv_margin_recipe_mm,
            "ptv_margin_mm": self.ptv_margin_mm,
            "minimum_applied": self.minimum_applied,
            "protocol_version": self.protocol_version,
            "rationale": list(self.rationale),
            "motion_source": self.motion_source,
            "ptv_margin_linear_recipe_mm": self.ptv_margin_linear_recipe_mm,
            "exhale_offset_mm": self.exhale_offset_mm,
            "ptv_margin_superior_mm": self.ptv_margin_superior_mm,
            "ptv_margin_inferior_mm": self.ptv_margin_inferior_mm,
        }


def _sd(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{name} must be a number in mm, got {value!r}", field=name)
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InvalidInputError(
            f"{name} must be finite and non-negative, got {value!r}", field=name
        )
    return number


def suggest_margins(
    analysis: BreathingAnalysis,
    *,
    systematic_setup_sd_mm: float | None = None,
    random_setup_sd_mm: float | None = None,
    protocol: MotionProtocol = DEFAULT_PROTOCOL,
    decision: MotionDecision | None = None,
) -> MarginSuggestion:
    """SI margins from the motion under the chosen management and a setup-error model.

    Parameters
    ----------
    analysis : BreathingAnalysis
        Analysed breathing (free breathing, a breath-hold trial or under compression).
    systematic_setup_sd_mm, random_setup_sd_mm : float or None, optional
        ``Σ`` and ``σ_setup`` along SI, mm; ``None`` takes the protocol's setup-error model.
    protocol : MotionProtocol, optional
        Recipe coefficients, penumbra, minimum margin, excursion statistic, setup model.
    decision : MotionDecision or None, optional
        The motion-management decision: under ABC the residual hold motion is used.

    Returns
    -------
    MarginSuggestion

    Raises
    ------
    InvalidInputError
        If an SD is negative or not finite, or an argument has the wrong type.
    ProcessingError
        If the analysis is not trustworthy or has no excursion: no margin from motion that was
        not measured reliably.

    Examples
    --------
    >>> import numpy as np
    >>> from igrt.breathing_analysis import analyse_breathing
    >>> from igrt.trace import BreathingTrace
    >>> t = np.arange(0.0, 60.0, 0.1)
    >>> analysis = analyse_breathing(BreathingTrace(t, -10.0 * np.sin(np.pi * t / 4.0) ** 6))
    >>> margins = suggest_margins(analysis, systematic_setup_sd_mm=2.0, random_setup_sd_mm=2.0)
    >>> round(margins.ptv_margin_recipe_mm, 1), round(margins.ptv_margin_inferior_mm, 1)
    (8.2, 11.4)
    """
    if not isinstance(analysis, BreathingAnalysis):
        raise InvalidInputError("analysis must be a BreathingAnalysis", field="analysis")
    if not isinstance(protocol, MotionProtocol):
        raise InvalidInputError("protocol must be a MotionProtocol", field="protocol")
    if decision is not None and not isinstance(decision, MotionDecision):
        raise InvalidInputError("decision must be a MotionDecision", field="decision")
    systematic = _sd(
        protocol.systematic_setup_sd_mm
        if systematic_setup_sd_mm is None
        else systematic_setup_sd_mm,
        "systematic_setup_sd_mm",
    )
    random = _sd(
        protocol.random_setup_sd_mm if random_setup_sd_mm is None else random_setup_sd_mm,
        "random_setup_sd_mm",
    )
    excursion, source = _managed_motion_mm(analysis, protocol, decision)
    a, b = protocol.van_herk_systematic_coefficient, protocol.van_herk_random_coefficient
    motion_sd = motion_sd_from_excursion_mm(excursion)
    total_random = math.hypot(random, motion_sd)
    recipe = a * systematic + _random_term_mm(total_random, protocol)
    setup_margin = a * systematic + _random_term_mm(random, protocol)
    offset = (
        _EXHALE_MEAN_OFFSET_FRACTION * excursion
        if protocol.exhale_reference and source != "abc_residual"
        else 0.0
    )
    floor = protocol.min_ptv_margin_mm
    superior, inferior = max(recipe - offset, floor), max(recipe + offset, floor)
    rationale = [
        f"Motion {excursion:.1f} mm peak to peak ({source.replace('_', ' ')}) is a random error "
        f"of SD {motion_sd:.1f} mm (A/2√2), combined with the random setup SD {random:.1f} mm "
        f"into σ = {total_random:.1f} mm; setup model Σ = {systematic:.1f} mm.",
        f"van Herk full form: {a:g}×Σ + 1.64×(√(σ² + σp²) − σp) with σp = "
        f"{protocol.van_herk_penumbra_sd_mm:g} mm gives {recipe:.1f} mm (linear form "
        f"{a * systematic + b * total_random:.1f} mm).",
    ]
    if offset:
        rationale.append(
            f"The GTV is drawn on an exhale CT: the mean position lies {offset:.1f} mm inferior, "
            f"so the margin is {superior:.1f} mm superior and {inferior:.1f} mm inferior."
        )
    if recipe < floor:
        rationale.append(f"The recipe margin is below the protocol minimum of {floor:g} mm.")
    return MarginSuggestion(
        direction="SI",
        excursion_mm=excursion,
        excursion_statistic=protocol.excursion_statistic.value,
        motion_sd_mm=motion_sd,
        systematic_setup_sd_mm=systematic,
        random_setup_sd_mm=random,
        total_random_sd_mm=total_random,
        setup_margin_mm=setup_margin,
        internal_margin_mm=recipe - setup_margin,
        ptv_margin_recipe_mm=recipe,
        ptv_margin_mm=max(recipe, floor),
        minimum_applied=recipe < floor,
        protocol_version=protocol.version,
        rationale=tuple(rationale),
        motion_source=source,
        ptv_margin_linear_recipe_mm=a * systematic + b * total_random,
        exhale_offset_mm=offset,
        ptv_margin_superior_mm=superior,
        ptv_margin_inferior_mm=inferior,
    )


def _random_term_mm(random_sd_mm: float, protocol: MotionProtocol) -> float:
    """``1.64·(sqrt(σ² + σp²) − σp)``: the full van Herk random-error term, mm."""
    penumbra = protocol.van_herk_penumbra_sd_mm
    return _FULL_FORM_RANDOM_COEFFICIENT * (math.hypot(random_sd_mm, penumbra) - penumbra)


def _managed_motion_mm(
    analysis: BreathingAnalysis, protocol: MotionProtocol, decision: MotionDecision | None
) -> tuple[float, str]:
    """The peak-to-peak motion under the chosen management and where it comes from."""
    if decision is not None and (
        decision.recommendation is MotionManagementValues.ACTIVE_BREATHING_CONTROL
    ):
        assessment = decision.abc_assessment
        assert assessment is not None  # ABC is only recommended from evidence
        evidence = assessment.evidence
        drift = evidence.largest_hold_drift_mm or 0.0
        return drift + (evidence.hold_reproducibility_mm or 0.0), "abc_residual"
    if not analysis.is_trustworthy:
        raise ProcessingError(
            "no margin suggested: the breathing analysis is not trustworthy ("
            + "; ".join(issue.message for issue in analysis.degrading_issues)
            + ")"
        )
    excursion, _ = analysis.excursion_mm(protocol.excursion_statistic)
    if excursion is None:
        raise ProcessingError("no margin suggested: the excursion could not be measured")
    compression = decision is not None and decision.context.value == "abdominal_compression"
    return excursion, "compression_residual" if compression else "free_breathing"
