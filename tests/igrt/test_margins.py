"""Tests for igrt.margins: van Herk margins with breathing motion folded into σ."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from fixtures.breathing import regular
from igrt.breathing_analysis import (
    BreathingAnalysis,
    QualityFlagValues,
    QualityIssue,
    analyse_breathing,
)
from igrt.errors import InvalidInputError, ProcessingError
from igrt.margins import MarginSuggestion, motion_sd_from_excursion_mm, suggest_margins
from igrt.protocol import DEFAULT_PROTOCOL, MotionProtocol
from igrt.trace import BreathingTrace


@pytest.fixture(scope="module")
def base() -> BreathingAnalysis:
    signal = regular(10.0, 4.0, 60.0, 10.0)
    return analyse_breathing(BreathingTrace(signal.times_s, signal.si_mm))


def _with_excursion(analysis: BreathingAnalysis, excursion_mm: float) -> BreathingAnalysis:
    return dataclasses.replace(analysis, excursion_median_mm=excursion_mm)


def _margins(analysis: BreathingAnalysis, sys_mm: float, rand_mm: float) -> MarginSuggestion:
    return suggest_margins(analysis, systematic_setup_sd_mm=sys_mm, random_setup_sd_mm=rand_mm)


def _full(sigma_mm: float, penumbra_mm: float = 3.2) -> float:
    """van Herk's full random term 1.64 (sqrt(σ² + σp²) - σp)."""
    return 1.64 * (math.hypot(sigma_mm, penumbra_mm) - penumbra_mm)


def test_motion_sd_model_matches_the_lujan_shape() -> None:
    """A/(2√2) is the SD of a sinusoid; the cos^6 liver shape is within 2 % of it."""
    signal = regular(10.0, 4.0, 400.0, 50.0)
    measured_sd = float(np.std(signal.si_mm))
    assert motion_sd_from_excursion_mm(10.0) == pytest.approx(10.0 / (2.0 * math.sqrt(2.0)))
    assert measured_sd == pytest.approx(motion_sd_from_excursion_mm(10.0), rel=0.02)


def test_van_herk_recipe_with_motion(base: BreathingAnalysis) -> None:
    result = _margins(_with_excursion(base, 10.0), 2.0, 2.0)
    sigma_motion = 10.0 / (2.0 * math.sqrt(2.0))
    sigma = math.hypot(2.0, sigma_motion)
    assert result.direction == "SI"
    assert result.motion_sd_mm == pytest.approx(sigma_motion)
    assert result.total_random_sd_mm == pytest.approx(sigma)
    assert result.setup_margin_mm == pytest.approx(2.5 * 2.0 + _full(2.0))
    assert result.internal_margin_mm == pytest.approx(_full(sigma) - _full(2.0))
    assert result.ptv_margin_recipe_mm == pytest.approx(2.5 * 2.0 + _full(sigma))
    assert result.ptv_margin_linear_recipe_mm == pytest.approx(2.5 * 2.0 + 0.7 * sigma)
    assert result.ptv_margin_mm == pytest.approx(8.23, abs=0.01)
    assert not result.minimum_applied
    assert result.setup_margin_mm + result.internal_margin_mm == pytest.approx(
        result.ptv_margin_recipe_mm
    )


def test_minimum_ptv_margin_is_never_undercut(base: BreathingAnalysis) -> None:
    for excursion_mm in (0.5, 3.0, 5.0, 8.0, 20.0):
        for sys_mm, rand_mm in ((0.0, 0.0), (0.5, 0.5), (1.0, 2.0), (3.0, 3.0)):
            result = _margins(_with_excursion(base, excursion_mm), sys_mm, rand_mm)
            assert result.ptv_margin_mm >= DEFAULT_PROTOCOL.min_ptv_margin_mm
            assert result.ptv_margin_mm == pytest.approx(max(result.ptv_margin_recipe_mm, 5.0))
            assert result.minimum_applied is (result.ptv_margin_recipe_mm < 5.0)
    small = _margins(_with_excursion(base, 3.0), 1.0, 1.0)
    assert small.minimum_applied
    assert small.ptv_margin_mm == 5.0
    assert any("below the protocol minimum of 5 mm" in sentence for sentence in small.rationale)


def test_margin_grows_with_motion(base: BreathingAnalysis) -> None:
    margins = [
        _margins(_with_excursion(base, a), 2.0, 2.0).ptv_margin_recipe_mm
        for a in (2.0, 5.0, 10.0, 20.0)
    ]
    assert margins == sorted(margins)
    assert len(set(margins)) == 4


def test_end_to_end_from_a_trace(base: BreathingAnalysis) -> None:
    result = _margins(base, 2.0, 2.0)
    assert result.excursion_mm == pytest.approx(10.0, abs=0.2)
    assert result.excursion_statistic == "median"
    values = result.to_dict()
    json.dumps(values)
    assert values["ptv_margin_mm"] == pytest.approx(8.23, abs=0.05)
    assert values["protocol_version"] == DEFAULT_PROTOCOL.version


def test_protocol_coefficients_and_statistic_are_used(base: BreathingAnalysis) -> None:
    custom = MotionProtocol(
        version="test-margins",
        van_herk_systematic_coefficient=2.0,
        van_herk_random_coefficient=1.0,
        min_ptv_margin_mm=6.0,
        excursion_statistic="p95",  # type: ignore[arg-type]
    )
    analysis = dataclasses.replace(base, excursion_median_mm=8.0, excursion_p95_mm=12.0)
    result = suggest_margins(
        analysis, systematic_setup_sd_mm=1.0, random_setup_sd_mm=1.0, protocol=custom
    )
    sigma = math.hypot(1.0, 12.0 / (2.0 * math.sqrt(2.0)))
    assert result.excursion_mm == 12.0
    recipe = 2.0 + _full(sigma)
    assert result.ptv_margin_recipe_mm == pytest.approx(recipe)
    assert result.ptv_margin_linear_recipe_mm == pytest.approx(2.0 + sigma)
    assert result.ptv_margin_mm == pytest.approx(max(6.0, recipe))
    assert result.protocol_version == "test-margins"


def test_untrustworthy_analysis_gives_no_margin(base: BreathingAnalysis) -> None:
    degraded = dataclasses.replace(
        base, quality=(QualityIssue(QualityFlagValues.TOO_FEW_CYCLES, "only 2 cycles"),)
    )
    with pytest.raises(ProcessingError, match="only 2 cycles"):
        _margins(degraded, 2.0, 2.0)
    empty = dataclasses.replace(base, excursion_median_mm=None)
    with pytest.raises(ProcessingError):
        _margins(empty, 2.0, 2.0)


@pytest.mark.parametrize(
    ("sys_mm", "rand_mm", "field"),
    [
        (-1.0, 1.0, "systematic_setup_sd_mm"),
        (1.0, float("nan"), "random_setup_sd_mm"),
        ("2", 1.0, "systematic_setup_sd_mm"),
        (1.0, True, "random_setup_sd_mm"),
    ],
)
def test_invalid_setup_errors(
    base: BreathingAnalysis, sys_mm: object, rand_mm: object, field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        _margins(base, sys_mm, rand_mm)  # type: ignore[arg-type]
    assert info.value.field == field


def test_invalid_analysis_and_protocol(base: BreathingAnalysis) -> None:
    with pytest.raises(InvalidInputError) as info:
        suggest_margins(None, systematic_setup_sd_mm=1.0, random_setup_sd_mm=1.0)  # type: ignore[arg-type]
    assert info.value.field == "analysis"
    with pytest.raises(InvalidInputError) as info:
        suggest_margins(
            base,
            systematic_setup_sd_mm=1.0,
            random_setup_sd_mm=1.0,
            protocol="default",  # type: ignore[arg-type]
        )
    assert info.value.field == "protocol"


# --- issue 13, item 4 ---------------------------------------------------------------------------


def test_full_van_herk_form_exceeds_the_linear_one_for_large_motion(
    base: BreathingAnalysis,
) -> None:
    small = _margins(_with_excursion(base, 3.0), 1.0, 1.5)
    large = _margins(_with_excursion(base, 20.0), 1.0, 1.5)
    assert abs(small.ptv_margin_recipe_mm - small.ptv_margin_linear_recipe_mm) < 0.5
    assert large.ptv_margin_recipe_mm - large.ptv_margin_linear_recipe_mm > 1.0


def test_exhale_reference_makes_the_margin_asymmetric(base: BreathingAnalysis) -> None:
    result = _margins(_with_excursion(base, 16.0), 1.0, 1.5)
    assert result.exhale_offset_mm == pytest.approx(16.0 * 5.0 / 16.0)
    assert result.ptv_margin_inferior_mm == pytest.approx(
        result.ptv_margin_recipe_mm + result.exhale_offset_mm
    )
    assert result.ptv_margin_superior_mm == pytest.approx(
        max(5.0, result.ptv_margin_recipe_mm - result.exhale_offset_mm)
    )


def test_margin_follows_the_chosen_device_and_the_protocol_setup_model(
    base: BreathingAnalysis,
) -> None:
    from igrt.decision import (
        BreathHoldEvidence,
        MotionManagementValues,
        recommend_motion_management,
    )

    analysis = _with_excursion(base, 14.0)
    holds = BreathHoldEvidence(3, 25.0, 1.2, 0.8, source="ABC session")
    decision = recommend_motion_management(analysis, hold_evidence=holds)
    assert decision.recommendation is MotionManagementValues.ACTIVE_BREATHING_CONTROL
    under_abc = suggest_margins(analysis, decision=decision)
    assert under_abc.motion_source == "abc_residual"
    assert under_abc.excursion_mm == pytest.approx(1.2 + 0.8)
    assert under_abc.exhale_offset_mm == 0.0
    assert under_abc.systematic_setup_sd_mm == DEFAULT_PROTOCOL.systematic_setup_sd_mm
    site = MotionProtocol(version="site-setup", systematic_setup_sd_mm=2.5, random_setup_sd_mm=3.0)
    assert suggest_margins(analysis, protocol=site).systematic_setup_sd_mm == 2.5
