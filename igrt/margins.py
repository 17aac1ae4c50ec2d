"""Internal and PTV margins implied by measured breathing motion (van Herk recipe).

Method
------
The van Herk recipe (van Herk et al., IJROBP 2000;47:1121; CLINICAL.md) gives the CTV-to-PTV
margin that covers the CTV with 95 % of the dose for 90 % of patients::

    M = a·Σ + b·σ        (a = 2.5, b = 0.7 from the protocol)

with ``Σ`` the SD of the systematic errors and ``σ`` the SD of the random errors. Breathing
motion is a random error that blurs the dose (van Herk, Semin Radiat Oncol 2004;14:52): it is
folded into ``σ`` in quadrature with the random setup error::

    σ_motion = A / (2·√2)
    σ        = sqrt(σ_setup² + σ_motion²)

where ``A`` is the measured peak-to-peak SI excursion (``protocol.excursion_statistic``, the
median cycle by default). ``A / (2√2)`` is the SD of a sinusoid of peak-to-peak ``A``; for the
Lujan ``cos^6`` shape typical of the liver the SD is 0.358·A, within 1.3 % of it.

The **internal margin** reported is the part of the PTV margin caused by breathing,
``b·(σ - σ_setup)``: the increase of the recipe margin when the motion is added. It is smaller
than half the excursion (the ITV envelope) because the recipe accounts for the blurring of a
random motion; it is only the SI component, the only direction measured on the trace. The
**PTV margin** is the recipe margin, never below ``protocol.min_ptv_margin_mm`` (5 mm,
CLINICAL.md §3).

Limits: the linear ``0.7·σ`` term is van Herk's approximation for a dose penumbra much wider
than ``σ``; for large ``σ`` it underestimates the margin (use the full ``1.64·(σ' - σp)`` form
then). A motion-management device changes ``A``: re-run with the analysis of the managed
breathing (under compression, or the residual during gating).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from igrt.breathing_analysis import BreathingAnalysis
from igrt.errors import InvalidInputError, ProcessingError
from igrt.protocol import DEFAULT_PROTOCOL, MotionProtocol

__all__ = [
    "DEFAULT_RANDOM_SETUP_SD_MM",
    "DEFAULT_SYSTEMATIC_SETUP_SD_MM",
    "MarginSuggestion",
    "motion_sd_from_excursion_mm",
    "suggest_margins",
]

DEFAULT_SYSTEMATIC_SETUP_SD_MM = 1.0
"""Σ of the setup-error model when a department has not measured its own, mm."""

DEFAULT_RANDOM_SETUP_SD_MM = 1.5
"""σ of the setup-error model when a department has not measured its own, mm."""

_SINUSOID_SD_PER_PEAK_TO_PEAK = 1.0 / (2.0 * math.sqrt(2.0))


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
    systematic_setup_sd_mm: float,
    random_setup_sd_mm: float,
    protocol: MotionProtocol = DEFAULT_PROTOCOL,
) -> MarginSuggestion:
    """Internal and PTV margins (SI) from measured motion and a setup-error model.

    Parameters
    ----------
    analysis : BreathingAnalysis
        Analysed breathing under the conditions of treatment (free breathing, or the managed
        breathing).
    systematic_setup_sd_mm : float
        ``Σ``, SD of the systematic setup (preparation) errors along SI, mm.
    random_setup_sd_mm : float
        ``σ_setup``, SD of the random setup (execution) errors along SI, mm.
    protocol : MotionProtocol, optional
        Supplies the recipe coefficients, the minimum PTV margin and the excursion statistic.

    Returns
    -------
    MarginSuggestion

    Raises
    ------
    InvalidInputError
        If an SD is negative or not finite, or an argument has the wrong type.
    ProcessingError
        If the analysis is not trustworthy (a degrading quality issue) or has no excursion:
        no margin is suggested from motion that was not measured reliably.

    Examples
    --------
    >>> import numpy as np
    >>> from igrt.breathing_analysis import analyse_breathing
    >>> from igrt.trace import BreathingTrace
    >>> t = np.arange(0.0, 60.0, 0.1)
    >>> analysis = analyse_breathing(BreathingTrace(t, -10.0 * np.sin(np.pi * t / 4.0) ** 6))
    >>> margins = suggest_margins(analysis, systematic_setup_sd_mm=2.0, random_setup_sd_mm=2.0)
    >>> round(margins.ptv_margin_mm, 1), round(margins.internal_margin_mm, 1)
    (7.8, 1.4)
    """
    if not isinstance(analysis, BreathingAnalysis):
        raise InvalidInputError("analysis must be a BreathingAnalysis", field="analysis")
    if not isinstance(protocol, MotionProtocol):
        raise InvalidInputError("protocol must be a MotionProtocol", field="protocol")
    systematic = _sd(systematic_setup_sd_mm, "systematic_setup_sd_mm")
    random = _sd(random_setup_sd_mm, "random_setup_sd_mm")
    if not analysis.is_trustworthy:
        raise ProcessingError(
            "no margin suggested: the breathing analysis is not trustworthy ("
            + "; ".join(issue.message for issue in analysis.degrading_issues)
            + ")"
        )
    excursion, _ = analysis.excursion_mm(protocol.excursion_statistic)
    if excursion is None:
        raise ProcessingError("no margin suggested: the excursion could not be measured")
    a = protocol.van_herk_systematic_coefficient
    b = protocol.van_herk_random_coefficient
    motion_sd = motion_sd_from_excursion_mm(excursion)
    total_random = math.hypot(random, motion_sd)
    setup_margin = a * systematic + b * random
    internal = b * (total_random - random)
    recipe = a * systematic + b * total_random
    ptv = max(recipe, protocol.min_ptv_margin_mm)
    minimum_applied = recipe < protocol.min_ptv_margin_mm
    rationale = [
        f"Breathing motion {excursion:.1f} mm peak to peak "
        f"({protocol.excursion_statistic.value} cycle) is treated as a random error of SD "
        f"{motion_sd:.1f} mm (A/2√2), combined with the random setup SD {random:.1f} mm into "
        f"σ = {total_random:.1f} mm.",
        f"van Herk recipe: {a:g}×Σ + {b:g}×σ = {a:g}×{systematic:.1f} + {b:g}×{total_random:.1f}"
        f" = {recipe:.1f} mm, of which {internal:.1f} mm is due to breathing (internal margin).",
    ]
    if minimum_applied:
        rationale.append(
            f"The recipe margin is below the protocol minimum: PTV margin raised to "
            f"{protocol.min_ptv_margin_mm:g} mm."
        )
    else:
        rationale.append(f"Suggested superior-inferior PTV margin: {ptv:.1f} mm.")
    return MarginSuggestion(
        direction="SI",
        excursion_mm=excursion,
        excursion_statistic=protocol.excursion_statistic.value,
        motion_sd_mm=motion_sd,
        systematic_setup_sd_mm=systematic,
        random_setup_sd_mm=random,
        total_random_sd_mm=total_random,
        setup_margin_mm=setup_margin,
        internal_margin_mm=internal,
        ptv_margin_recipe_mm=recipe,
        ptv_margin_mm=ptv,
        minimum_applied=minimum_applied,
        protocol_version=protocol.version,
        rationale=tuple(rationale),
    )
