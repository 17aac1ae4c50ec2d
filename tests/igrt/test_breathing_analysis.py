"""Tests for igrt.breathing_analysis on simulated traces of known truth (fixtures.breathing).

Tolerances from the issue: excursion within 0.2 mm (regular) and 0.5 mm (irregular), drift
within 0.2 mm/min, hold durations within one sample (noise-free). Noisy cases use 0.3 mm white
tracking noise, about the random part of published dome tracking (Mageras 2000: 1.3 ± 0.6 mm
in total against manual).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fixtures.breathing import (
    BreathingSignal,
    breath_holds,
    irregular,
    regular,
    replay_real_trace,
)
from igrt.breathing_analysis import (
    BreathingAnalysis,
    BreathingCycle,
    DetectedBreathHold,
    QualityFlagValues,
    QualityIssue,
    analyse_breathing,
)
from igrt.errors import InvalidInputError
from igrt.protocol import DEFAULT_PROTOCOL, ExcursionStatisticValues, MotionProtocol
from igrt.trace import BreathingTrace


def _analyse(signal: BreathingSignal, **trace_kwargs: object) -> BreathingAnalysis:
    trace = BreathingTrace(signal.times_s, signal.si_mm, **trace_kwargs)  # type: ignore[arg-type]
    return analyse_breathing(trace)


def _excursion(analysis: BreathingAnalysis) -> float:
    assert analysis.excursion_median_mm is not None
    return analysis.excursion_median_mm


def _truth_median_mm(signal: BreathingSignal, exclude_s: tuple[float, ...] = ()) -> float:
    keep = [
        amplitude
        for start, end, amplitude in zip(
            signal.cycle_start_s, signal.cycle_end_s, signal.cycle_amplitude_mm, strict=True
        )
        if not any(start <= t <= end for t in exclude_s)
    ]
    return float(np.median(keep))


def _matched_truth_median_mm(signal: BreathingSignal, result: BreathingAnalysis) -> float:
    """Median true amplitude of the cycles the analysis measured (matched by inhale time).

    The median of an irregular signal depends on which cycles are complete in the window; this
    compares like with like.
    """
    matched = []
    for cycle in result.inlier_cycles:
        index = int(np.argmin(np.abs(signal.cycle_inhale_s - cycle.inhale_s)))
        if abs(signal.cycle_inhale_s[index] - cycle.inhale_s) <= 0.3:
            matched.append(signal.cycle_amplitude_mm[index])
    assert len(matched) >= 0.9 * result.n_cycles
    return float(np.median(matched))


# --- regular breathing --------------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate_hz", [7.5, 10.0, 25.0])
@pytest.mark.parametrize(("amplitude_mm", "period_s"), [(4.0, 4.0), (8.0, 3.0), (15.0, 6.0)])
def test_regular_excursion_period_and_rate(
    amplitude_mm: float, period_s: float, sample_rate_hz: float
) -> None:
    signal = regular(amplitude_mm, period_s, 90.0, sample_rate_hz, phase_fraction=0.3)
    result = _analyse(signal)
    assert abs(_excursion(result) - amplitude_mm) <= 0.2
    assert result.excursion_p95_mm == pytest.approx(amplitude_mm, abs=0.2)
    assert result.range_without_outliers_mm == pytest.approx(amplitude_mm, abs=0.2)
    assert result.period_median_s == pytest.approx(period_s, abs=1.0 / sample_rate_hz)
    assert result.rate_per_min == pytest.approx(60.0 / period_s, rel=0.03)
    assert result.dominant_period_s == pytest.approx(period_s, rel=0.05)
    assert result.drift_mm_per_min == pytest.approx(0.0, abs=0.2)
    assert result.amplitude_cv is not None
    assert result.amplitude_cv < 0.01
    assert result.holds == ()
    assert result.quality == ()
    assert result.is_trustworthy
    # every complete truth cycle but the first and last is found
    # every complete cycle counts, including one that starts with the recording (issue 13)
    assert signal.n_cycles - 2 <= result.n_cycles <= signal.n_cycles + 1


def test_cycles_follow_the_sign_convention_and_the_truth() -> None:
    signal = regular(10.0, 4.0, 40.0, 10.0)
    result = _analyse(signal)
    for cycle in result.cycles:
        assert cycle.exhale_start_mm > cycle.inhale_mm < cycle.exhale_end_mm  # inhale inferior
        nearest = np.min(np.abs(signal.cycle_inhale_s - cycle.inhale_s))
        assert nearest <= 0.1
        assert cycle.amplitude_mm == pytest.approx(10.0, abs=0.1)
        assert cycle.period_s == pytest.approx(4.0, abs=0.11)


@pytest.mark.parametrize("sample_rate_hz", [10.0, 25.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_regular_with_tracking_noise(sample_rate_hz: float, seed: int) -> None:
    signal = regular(8.0, 4.0, 120.0, sample_rate_hz, noise_sd_mm=0.3, seed=seed)
    result = _analyse(signal)
    assert abs(_excursion(result) - 8.0) <= 0.2
    assert result.noise_sd_mm == pytest.approx(0.3, rel=0.15)
    assert result.drift_mm_per_min == pytest.approx(0.0, abs=0.2)
    assert result.period_median_s == pytest.approx(4.0, abs=0.2)
    assert result.is_trustworthy
    # the uncertainty is dominated by the tracking term and covers the actual error
    assert result.excursion_uncertainty_mm is not None
    assert result.excursion_uncertainty_mm >= abs(_excursion(result) - 8.0)


def test_uncertainty_combines_tracking_and_cycle_variation() -> None:
    signal = irregular(10.0, 4.0, 120.0, 10.0, amplitude_cv=0.2, seed=4)
    quiet = _analyse(signal)
    declared = _analyse(signal, tracking_sd_mm=2.0)
    scale = DEFAULT_PROTOCOL.tracking_scale_fraction
    for result, sd in ((quiet, quiet.noise_sd_mm), (declared, 2.0)):
        assert result.tracking_sd_mm == pytest.approx(sd)
        amplitudes = np.array([c.amplitude_mm for c in result.inlier_cycles])
        root_n = math.sqrt(amplitudes.size)
        median = float(np.median(amplitudes))
        # random tracking error averages over the cycles; the scale error does not
        random = math.sqrt(math.pi / 2) * math.sqrt(2.0) * sd / root_n
        assert result.uncertainty_tracking_mm == pytest.approx(math.hypot(random, scale * median))
        mad = float(np.median(np.abs(amplitudes - np.median(amplitudes))))
        expected_cycles = math.sqrt(math.pi / 2) * 1.4826 * mad / root_n
        assert result.uncertainty_cycles_mm == pytest.approx(expected_cycles)
        assert result.excursion_uncertainty_mm == pytest.approx(
            math.hypot(max(random, expected_cycles), scale * median)
        )
    assert declared.excursion_uncertainty_mm > quiet.excursion_uncertainty_mm  # type: ignore[operator]
    assert quiet.excursion_p95_uncertainty_mm is not None
    assert quiet.excursion_p95_uncertainty_mm > 0.0
    assert quiet.excursion_mm(ExcursionStatisticValues.P95) == (
        quiet.excursion_p95_mm,
        quiet.excursion_p95_uncertainty_mm,
    )


# --- irregular breathing ----------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate_hz", [10.0, 25.0])
@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_irregular_excursion_and_per_cycle_truth(sample_rate_hz: float, seed: int) -> None:
    signal = irregular(10.0, 4.0, 120.0, sample_rate_hz, seed=seed)
    result = _analyse(signal)
    assert abs(_excursion(result) - _truth_median_mm(signal)) <= 0.5
    assert abs(_excursion(result) - _matched_truth_median_mm(signal, result)) <= 0.2
    truth_p95 = float(np.percentile(signal.cycle_amplitude_mm, 95))
    assert result.excursion_p95_mm == pytest.approx(truth_p95, abs=0.5)
    assert result.is_trustworthy
    matched = 0
    for cycle in result.inlier_cycles:
        index = int(np.argmin(np.abs(signal.cycle_inhale_s - cycle.inhale_s)))
        if abs(signal.cycle_inhale_s[index] - cycle.inhale_s) <= 0.15:
            matched += 1
            assert cycle.amplitude_mm == pytest.approx(signal.cycle_amplitude_mm[index], abs=0.5)
    assert matched >= 0.85 * signal.n_cycles
    assert result.amplitude_cv == pytest.approx(
        float(np.std(signal.cycle_amplitude_mm, ddof=1) / np.mean(signal.cycle_amplitude_mm)),
        abs=0.05,
    )


@pytest.mark.parametrize(
    ("drift_mm_per_min", "noise_sd_mm", "seed"),
    [(2.0, 0.0, 0), (-3.0, 0.0, 1), (1.0, 0.3, 2), (-2.5, 0.3, 3), (0.5, 0.3, 4)],
)
def test_baseline_drift(drift_mm_per_min: float, noise_sd_mm: float, seed: int) -> None:
    signal = irregular(
        10.0,
        4.0,
        150.0,
        10.0,
        drift_mm_per_min=drift_mm_per_min,
        noise_sd_mm=noise_sd_mm,
        seed=seed,
    )
    result = _analyse(signal)
    assert result.drift_mm_per_min == pytest.approx(drift_mm_per_min, abs=0.2)
    # drift does not bias the excursion: cycle by cycle, compared with the cycle's own truth
    # (a median of matched truths jumps across gaps in the amplitude distribution)
    errors = []
    for cycle in result.inlier_cycles:
        index = int(np.argmin(np.abs(signal.cycle_inhale_s - cycle.inhale_s)))
        if abs(signal.cycle_inhale_s[index] - cycle.inhale_s) <= 0.3:
            errors.append(cycle.amplitude_mm - signal.cycle_amplitude_mm[index])
    assert len(errors) >= 0.9 * result.n_cycles
    assert abs(float(np.median(errors))) <= 0.5
    # the range without outliers contains the drift over the recording
    assert result.range_without_outliers_mm is not None
    assert result.range_without_outliers_mm > _excursion(result)
    assert result.end_exhale_sd_mm is not None
    assert result.end_exhale_sd_mm <= 0.1 + noise_sd_mm


@pytest.mark.parametrize("drift_mm_per_min", [6.0, -6.0])
def test_strong_drift_does_not_bias_cycle_amplitudes(drift_mm_per_min: float) -> None:
    """Amplitude = mean of the two end-exhale positions minus end-inhale: drift cancels."""
    signal = irregular(
        10.0, 6.0, 120.0, 10.0, drift_mm_per_min=drift_mm_per_min, pause_probability=0.0, seed=6
    )
    result = _analyse(signal)
    assert result.drift_mm_per_min == pytest.approx(drift_mm_per_min, abs=0.2)
    for cycle in result.inlier_cycles:
        index = int(np.argmin(np.abs(signal.cycle_inhale_s - cycle.inhale_s)))
        # one end-exhale alone would be off by drift × period / 2 = 0.3 mm
        assert cycle.amplitude_mm == pytest.approx(signal.cycle_amplitude_mm[index], abs=0.1)


def test_coughs_are_excluded_not_counted_as_breaths() -> None:
    coughs = (30.0, 71.0, 95.0)
    for sample_rate_hz in (10.0, 25.0):
        for seed in (0, 1, 2):
            signal = irregular(
                10.0, 4.0, 120.0, sample_rate_hz, cough_times_s=coughs, cough_amplitude_mm=10.0,
                seed=seed,
            )  # fmt: skip
            result = _analyse(signal)
            assert QualityFlagValues.OUTLIER_CYCLES in result.quality_flags
            assert result.is_trustworthy
            outliers = [c for c in result.cycles if c.is_outlier]
            for cough_s in coughs:  # every cycle containing a cough is excluded
                for cycle in result.cycles:
                    if cycle.exhale_start_s <= cough_s <= cycle.exhale_end_s:
                        assert cycle in outliers
            largest_true = float(np.max(signal.cycle_amplitude_mm))
            assert max(c.amplitude_mm for c in result.inlier_cycles) <= largest_true + 0.5
            assert abs(_excursion(result) - _truth_median_mm(signal, coughs)) <= 0.5
            assert result.n_outlier_cycles == len(outliers) <= 2 * len(coughs)


def test_end_exhale_pauses_are_not_breath_holds() -> None:
    signal = irregular(10.0, 4.0, 120.0, 10.0, pause_probability=0.5, pause_duration_s=4.0, seed=7)
    assert signal.pause_intervals_s.shape[0] >= 5
    result = _analyse(signal)
    assert result.holds == ()
    assert abs(_excursion(result) - _truth_median_mm(signal)) <= 0.5


def test_irregular_breathing_is_flagged() -> None:
    signal = irregular(10.0, 4.0, 120.0, 10.0, amplitude_cv=0.45, period_cv=0.1, seed=3)
    result = _analyse(signal)
    assert QualityFlagValues.IRREGULAR in result.quality_flags
    assert not QualityFlagValues.IRREGULAR.degrades_result


# --- breath holds -------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate_hz", [10.0, 15.0, 25.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_breath_holds_recovered_within_one_sample(sample_rate_hz: float, seed: int) -> None:
    durations = (20.0, 25.0, 22.5)
    creeps = (1.0, 2.0, 5.6)
    signal = breath_holds(
        10.0, 4.0, sample_rate_hz, hold_durations_s=durations, creep_mm=creeps, seed=seed
    )
    result = _analyse(signal)
    assert len(result.holds) == len(signal.holds)
    step_s = 1.0 / sample_rate_hz
    for found, truth in zip(result.holds, signal.holds, strict=True):
        assert abs(found.duration_s - truth.duration_s) <= step_s + 1e-9
        assert abs(found.start_s - truth.start_s) <= step_s + 1e-9
        assert found.level_mm == pytest.approx(truth.level_mm, abs=0.1)
        assert found.drift_mm == pytest.approx(truth.creep_mm, abs=0.1)
        assert found.drift_mm_per_s == pytest.approx(truth.creep_rate_mm_per_s, abs=0.01)
    assert result.hold_reproducibility_mm == pytest.approx(0.0, abs=0.1)
    # free breathing around the holds is still measured, without cycles spanning a hold
    assert abs(_excursion(result) - _truth_median_mm(signal)) <= 0.5
    for cycle in result.cycles:
        for hold in result.holds:
            assert cycle.exhale_end_s < hold.start_s or cycle.exhale_start_s > hold.end_s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_breath_holds_with_tracking_noise(seed: int) -> None:
    """With 0.3 mm noise the edges are found once the dome leaves the hold line by 3 SD."""
    signal = breath_holds(
        10.0, 4.0, 10.0, hold_durations_s=(20.0, 24.0), creep_mm=(1.0, 5.6), noise_sd_mm=0.3,
        seed=seed,
    )  # fmt: skip
    result = _analyse(signal)
    assert len(result.holds) == 2
    for found, truth in zip(result.holds, signal.holds, strict=True):
        assert 0.0 <= found.duration_s - truth.duration_s <= 0.8  # documented outward bias
        assert found.level_mm == pytest.approx(truth.level_mm, abs=0.3)
        assert found.drift_mm == pytest.approx(truth.creep_mm, abs=0.4)


def test_hold_levels_and_reproducibility() -> None:
    first = breath_holds(12.0, 4.0, 10.0, hold_durations_s=(22.0,), hold_depth_mm=12.0, seed=1)
    second = breath_holds(12.0, 4.0, 10.0, hold_durations_s=(22.0,), hold_depth_mm=15.0, seed=2)
    times = np.concatenate([first.times_s, second.times_s + first.times_s[-1] + 0.1])
    si = np.concatenate([first.si_mm, second.si_mm])
    result = analyse_breathing(BreathingTrace(times, si))
    assert len(result.holds) == 2
    assert [h.level_mm for h in result.holds] == pytest.approx([-12.0, -15.0], abs=0.1)
    assert result.hold_reproducibility_mm == pytest.approx(3.0, abs=0.15)


def test_hold_detection_minimum_is_a_protocol_parameter() -> None:
    signal = breath_holds(10.0, 4.0, 10.0, hold_durations_s=(8.0, 20.0), seed=0)
    assert len(_analyse(signal).holds) == 2
    strict = MotionProtocol(version="test-holds-10s", hold_detection_min_s=10.0)
    result = analyse_breathing(BreathingTrace(signal.times_s, signal.si_mm), protocol=strict)
    assert [round(h.duration_s) for h in result.holds] == [20]
    assert result.protocol_version == "test-holds-10s"


# --- data quality -----------------------------------------------------------------------------


def test_lost_frames_and_gaps() -> None:
    signal = irregular(10.0, 4.0, 120.0, 10.0, seed=8)
    si = signal.si_mm.copy()
    si[::25] = np.nan  # scattered single lost frames (4 %)
    si[300:330] = np.nan  # a 3 s gap
    result = analyse_breathing(BreathingTrace(signal.times_s, si))
    assert result.lost_fraction == pytest.approx((si.size // 25 + 1 + 29) / si.size, abs=0.01)
    assert QualityFlagValues.GAPS in result.quality_flags
    assert QualityFlagValues.LOST_FRAMES not in result.quality_flags
    assert result.is_trustworthy
    gap_start, gap_end = signal.times_s[299], signal.times_s[330]
    for cycle in result.cycles:
        assert cycle.exhale_end_s < gap_start or cycle.exhale_start_s > gap_end
    assert abs(_excursion(result) - _truth_median_mm(signal)) <= 0.5


def test_low_confidence_counts_as_lost_and_degrades() -> None:
    signal = regular(10.0, 4.0, 60.0, 10.0)
    confidence = np.ones(signal.n_samples)
    confidence[::4] = 0.2  # 25 % below the 0.5 confidence limit
    result = analyse_breathing(BreathingTrace(signal.times_s, signal.si_mm, confidence))
    assert result.lost_fraction == pytest.approx(0.25, abs=0.01)
    assert QualityFlagValues.LOST_FRAMES in result.quality_flags
    assert not result.is_trustworthy
    assert result.degrading_issues[0].flag is QualityFlagValues.LOST_FRAMES
    assert "25%" in result.degrading_issues[0].message
    assert abs(_excursion(result) - 10.0) <= 0.2  # still measured, but flagged


def test_too_few_cycles() -> None:
    provisional = _analyse(regular(10.0, 4.0, 14.0, 10.0))
    assert 2 <= provisional.n_cycles < DEFAULT_PROTOCOL.min_cycles
    assert provisional.is_provisional
    assert provisional.is_trustworthy
    result = _analyse(regular(10.0, 4.0, 5.0, 10.0))
    assert result.n_cycles < 2
    assert QualityFlagValues.TOO_FEW_CYCLES in result.quality_flags
    assert not result.is_trustworthy


@pytest.mark.parametrize(
    "si_mm",
    [
        np.zeros(300),
        np.random.default_rng(0).normal(0.0, 0.3, 300),
        np.full(300, np.nan),
    ],
    ids=["flat", "noise only", "all lost"],
)
def test_no_breathing_gives_no_numbers(si_mm: np.ndarray) -> None:
    times = np.arange(si_mm.size, dtype=np.float64) * 0.1
    result = analyse_breathing(BreathingTrace(times, si_mm))
    assert not result.is_trustworthy
    assert QualityFlagValues.TOO_FEW_CYCLES in result.quality_flags
    if result.n_cycles == 0:
        assert result.excursion_median_mm is None
        assert result.excursion_uncertainty_mm is None
    json.dumps(result.to_dict())


def test_too_many_outliers_degrades() -> None:
    coughs = tuple(np.arange(6.0, 118.0, 7.0))
    signal = irregular(10.0, 4.0, 120.0, 10.0, cough_times_s=coughs, seed=2)
    result = _analyse(signal)
    assert QualityFlagValues.TOO_MANY_OUTLIERS in result.quality_flags
    assert not result.is_trustworthy


def test_non_uniform_sampling() -> None:
    rng = np.random.default_rng(11)
    times = np.cumsum(rng.uniform(0.06, 0.14, 1200))
    si = -9.0 * np.sin(np.pi * times / 4.5) ** 6
    result = analyse_breathing(BreathingTrace(times, si))
    assert abs(_excursion(result) - 9.0) <= 0.2
    assert result.period_median_s == pytest.approx(4.5, abs=0.15)


# --- the result object ----------------------------------------------------------------------------


def test_to_dict_is_json_ready_with_units_in_keys() -> None:
    signal = breath_holds(10.0, 4.0, 10.0, seed=0)
    values = _analyse(signal).to_dict()
    text = json.dumps(values)
    assert "NaN" not in text
    for key in (
        "excursion_median_mm",
        "excursion_p95_mm",
        "range_without_outliers_mm",
        "period_median_s",
        "rate_per_min",
        "drift_mm_per_min",
        "end_exhale_sd_mm",
        "hold_reproducibility_mm",
        "excursion_uncertainty_mm",
    ):
        assert key in values
    assert set(values["holds"][0]) >= {"start_s", "end_s", "duration_s", "drift_mm_per_s"}
    assert set(values["cycles"][0]) >= {"amplitude_mm", "period_s", "inhale_s", "inhale_mm"}
    assert values["protocol_version"] == DEFAULT_PROTOCOL.version


def test_analysis_is_deterministic() -> None:
    signal = irregular(10.0, 4.0, 60.0, 10.0, noise_sd_mm=0.3, seed=9)
    assert _analyse(signal).to_dict() == _analyse(signal).to_dict()


def test_result_types_validate() -> None:
    with pytest.raises(InvalidInputError):
        BreathingCycle(1.0, 0.0, 0.5, -5.0, 2.0, 0.0)
    with pytest.raises(InvalidInputError):
        DetectedBreathHold(5.0, 5.0, -10.0, 0.0)
    with pytest.raises(InvalidInputError):
        QualityIssue(QualityFlagValues.GAPS, "")
    base = _analyse(regular(10.0, 4.0, 30.0, 10.0))
    with pytest.raises(InvalidInputError):
        dataclasses.replace(base, excursion_median_mm=float("nan"))
    with pytest.raises(InvalidInputError):
        dataclasses.replace(base, excursion_uncertainty_mm=-0.1)


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidInputError) as info:
        analyse_breathing(np.zeros(10))  # type: ignore[arg-type]
    assert info.value.field == "trace"
    trace = BreathingTrace(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    with pytest.raises(InvalidInputError) as info:
        analyse_breathing(trace, protocol={"version": "x"})  # type: ignore[arg-type]
    assert info.value.field == "protocol"


# --- issue 13 -----------------------------------------------------------------------------------


def _analyse_arrays(times_s: np.ndarray, si_mm: np.ndarray, **kwargs: object) -> BreathingAnalysis:
    return analyse_breathing(BreathingTrace(times_s, si_mm, tracking_sd_mm=0.25), **kwargs)  # type: ignore[arg-type]


def test_frequent_deep_breaths_stay_in_the_p95_and_exclusions_are_shown() -> None:
    from tests.igrt.traces import lujan_cycles

    frequent = [9.0 if i % 10 in (2, 5, 8) else 4.0 for i in range(30)]
    result = _analyse_arrays(*lujan_cycles(frequent))
    assert result.n_outlier_cycles == 0
    assert result.excursion_p95_mm == pytest.approx(9.0, abs=0.3)
    # a single sigh is a rare event: excluded, and the exclusion is shown with its amplitude
    rare = [9.0 if i == 12 else 4.0 for i in range(30)]
    single = _analyse_arrays(*lujan_cycles(rare))
    assert single.n_outlier_cycles == 1
    excluded = single.to_dict()["excluded_cycles"]
    assert len(excluded) == 1
    assert excluded[0]["amplitude_mm"] == pytest.approx(9.0, abs=0.3)
    assert excluded[0]["reason"]


def test_breath_holds_at_end_exhale_are_found() -> None:
    from tests.igrt.traces import exhale_hold_trial

    result = _analyse_arrays(*exhale_hold_trial())
    assert len(result.holds) == 2
    for hold in result.holds:
        assert 24.0 <= hold.duration_s <= 27.5
        assert abs(hold.level_mm) < 1.0


def test_short_clip_counts_every_complete_cycle_and_is_provisional() -> None:
    from tests.igrt.traces import lujan_cycles

    five = _analyse_arrays(*lujan_cycles([10.0] * 5))  # 20 s, five clear breaths
    assert five.n_cycles >= 4
    three = _analyse_arrays(*lujan_cycles([10.0] * 3, period_s=5.0))  # 15 s, three breaths
    assert 2 <= three.n_cycles < DEFAULT_PROTOCOL.min_cycles
    assert three.is_trustworthy
    assert three.is_provisional
    assert QualityFlagValues.PROVISIONAL in three.quality_flags
    assert three.excursion_median_mm == pytest.approx(10.0, abs=0.2)
    assert three.excursion_uncertainty_mm is not None


def test_uncertainty_shrinks_with_more_cycles() -> None:
    from tests.igrt.traces import lujan_cycles

    short = _analyse_arrays(*lujan_cycles([5.3] * 10, noise_sd_mm=0.25, seed=1))
    long = _analyse_arrays(*lujan_cycles([5.3] * 60, noise_sd_mm=0.25, seed=1))
    assert short.excursion_uncertainty_mm is not None
    assert long.excursion_uncertainty_mm is not None
    assert long.excursion_uncertainty_mm < short.excursion_uncertainty_mm - 0.03
    assert long.excursion_uncertainty_mm < 0.3  # 5.3 mm is then clearly above 5 mm


def _cycles(amplitudes_mm: list[float], periods_s: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Lujan cycles of the given amplitudes and periods, 10 Hz, back to back."""
    parts = []
    for amplitude, period in zip(amplitudes_mm, periods_s, strict=True):
        u = np.arange(0.0, period, 0.1)
        parts.append(-amplitude * np.sin(np.pi * u / period) ** 6)
    si = np.concatenate(parts)
    return np.arange(si.size) * 0.1, si


def test_frequent_deeper_exhales_are_breathing_not_outliers() -> None:
    # every third end-exhale rises 3 mm above the others (a deeper exhale before a breath, as
    # when talking): a whole breath, slow as breathing, not a cough
    times, si = _cycles([6.0] * 30, [4.0] * 30)
    for centre_s in np.arange(12.0, 120.0, 12.0):
        near = np.abs(times - centre_s) < 2.0
        si[near] += 3.0 * np.cos(np.pi * (times[near] - centre_s) / 4.0) ** 2
    result = _analyse_arrays(times, si)
    assert result.is_trustworthy
    assert result.n_outlier_cycles == 0
    # one such exhale in 30 cycles is a rare event and is still excluded
    times, si = _cycles([6.0] * 30, [4.0] * 30)
    near = np.abs(times - 60.0) < 2.0
    si[near] += 3.0 * np.cos(np.pi * (times[near] - 60.0) / 4.0) ** 2
    assert 1 <= _analyse_arrays(times, si).n_outlier_cycles <= 2


def test_cycle_uncertainty_follows_the_typical_breaths_not_the_large_ones() -> None:
    # 30 % large breaths are the patient's breathing (kept), but the median of the cycles is
    # set by the many ordinary 4 mm breaths around it: their spread, not the large breaths',
    # is what the median's uncertainty reflects
    amplitudes = [12.0 if i % 10 in (2, 5, 8) else 4.0 for i in range(30)]
    result = _analyse_arrays(*_cycles(amplitudes, [4.0] * 30))
    assert result.n_outlier_cycles == 0
    assert result.excursion_median_mm == pytest.approx(4.0, abs=0.2)
    assert result.uncertainty_cycles_mm is not None
    assert result.uncertainty_cycles_mm < 0.2


@pytest.mark.shared_data
def test_large_talking_breaths_do_not_hide_the_ordinary_ones(shared_data: Path) -> None:
    # a talking session: a third of the breaths are large and slow and dominate the
    # periodogram (power grows with the amplitude squared); half that period as the minimum
    # distance between extremes dropped ordinary breaths between them (38 cycles were found)
    path = shared_data / "breathing" / "201205101519-UCC-1-T-222-6.csv"
    signal = replay_real_trace(path, 6.0)
    result = _analyse_arrays(signal.times_s, signal.si_mm)
    assert len(result.cycles) >= signal.n_cycles - 1


def _through_extremes(
    extremes: list[tuple[float, float]], sample_rate_hz: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth trace through ``(time s, SI mm)`` extremes: half a cosine between neighbours."""
    times = np.arange(0.0, extremes[-1][0], 1.0 / sample_rate_hz)
    si = np.empty_like(times)
    for (t0, y0), (t1, y1) in itertools.pairwise(extremes):
        inside = (times >= t0) & (times < t1)
        u = (times[inside] - t0) / (t1 - t0)
        si[inside] = y0 + (y1 - y0) * 0.5 * (1.0 - np.cos(np.pi * u))
    return times, si


def _quick_breath_trace(quick_depth_mm: float) -> tuple[np.ndarray, np.ndarray, float]:
    """5 s breaths of 4 mm, and one 2 s breath squeezed between two of them.

    Returns times (s), SI (mm) and the time of the quick breath's end-inhale (s). Its inhale
    comes 2 s after the slow inhale before it, less than half the 5 s period, as on the real
    trace 201205101536-UAC at 127 s.
    """
    extremes = [(0.0, 0.0)]
    for k in range(6):
        extremes += [(5.0 * k + 2.5, -4.0), (5.0 * k + 5.0, 0.0)]
    extremes += [(33.5, -4.0), (34.5, 0.5), (35.5, 0.5 - quick_depth_mm), (36.5, 1.0)]
    for k in range(6):
        extremes += [(36.5 + 5.0 * k + 2.5, -4.0), (36.5 + 5.0 * k + 5.0, 0.0)]
    times, si = _through_extremes(extremes)
    return times, si, 35.5


@pytest.mark.parametrize("noise_sd_mm", [0.0, 0.25])
def test_a_quick_full_size_breath_is_a_cycle_of_its_own(noise_sd_mm: float) -> None:
    # a rise and fall as large as a typical breath is a breath whatever its duration: merged
    # with its neighbour it made one cycle from the inhale of one breath and the end-exhale of
    # the next (issue 13, 201205101536-UAC at 3.5 mm: 8.0 mm instead of 7.4 and 5.4 mm)
    times, si, quick_inhale_s = _quick_breath_trace(quick_depth_mm=4.5)
    si = si + np.random.default_rng(3).normal(0.0, noise_sd_mm, si.size)
    result = analyse_breathing(BreathingTrace(times, si))
    inhales = [c.inhale_s for c in result.cycles]
    assert min(abs(s - quick_inhale_s) for s in inhales) < 0.3
    assert min(abs(s - 33.5) for s in inhales) < 0.3
    quick = min(result.cycles, key=lambda c: abs(c.inhale_s - quick_inhale_s))
    assert quick.period_s == pytest.approx(2.0, abs=0.3)
    assert quick.amplitude_mm == pytest.approx(4.75, abs=0.4)
    assert max(c.amplitude_mm for c in result.cycles) < 5.0  # no merged 4.75 + 0.5 mm cycle


@pytest.mark.parametrize("noise_sd_mm", [0.0, 0.25])
def test_a_quick_small_wobble_is_not_a_breath(noise_sd_mm: float) -> None:
    # a dip of 40 % of the typical breath sooner than half a period: not a breath (as before)
    times, si, quick_inhale_s = _quick_breath_trace(quick_depth_mm=1.6)
    si = si + np.random.default_rng(3).normal(0.0, noise_sd_mm, si.size)
    result = analyse_breathing(BreathingTrace(times, si))
    assert all(abs(c.inhale_s - quick_inhale_s) > 0.5 for c in result.cycles)
    around = [c for c in result.cycles if c.exhale_start_s < quick_inhale_s < c.exhale_end_s]
    assert len(around) == 1
    assert around[0].period_s == pytest.approx(6.5, abs=0.3)


def test_quick_breath_fraction_is_a_protocol_parameter() -> None:
    times, si, quick_inhale_s = _quick_breath_trace(quick_depth_mm=4.5)
    strict = MotionProtocol(version="test-quick", quick_breath_min_fraction=1.5)
    result = analyse_breathing(BreathingTrace(times, si), protocol=strict)
    assert all(abs(c.inhale_s - quick_inhale_s) > 0.5 for c in result.cycles)
    assert DEFAULT_PROTOCOL.provenance["quick_breath_min_fraction"].source


@pytest.mark.shared_data
def test_quick_breath_of_a_real_trace_is_counted(shared_data: Path) -> None:
    # 201205101536-UAC at 3.5 mm: between 126.6 and 128.7 s the marker falls 4.8 mm and rises
    # 6.0 mm (the median breath is 3.5 mm) in 2.1 s; the benchmark's reference splits it too
    path = shared_data / "breathing" / "201205101536-UAC-1-LT-142-6.csv"
    signal = replay_real_trace(path, 3.5)
    result = _analyse_arrays(signal.times_s, signal.si_mm)
    assert min(abs(c.inhale_s - 127.2) for c in result.cycles) < 0.3
    assert max(c.amplitude_mm for c in result.cycles) < 7.9  # not the merged 8.0 mm cycle
