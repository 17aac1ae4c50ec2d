"""Tests for igrt.protocol: the versioned motion-management protocol and its defaults."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

import igrt.protocol as protocol_module
from igrt.errors import InvalidInputError
from igrt.protocol import (
    DEFAULT_PROTOCOL,
    DEFAULT_PROTOCOL_VERSION,
    ExcursionStatisticValues,
    MotionProtocol,
)


def test_defaults_are_the_clinical_figures() -> None:
    p = DEFAULT_PROTOCOL
    assert p.version == DEFAULT_PROTOCOL_VERSION == "seed-lee2009-liver-sbrt-2026.5"
    assert p.motion_threshold_mm == 5.0  # CLINICAL.md §2, TG-76
    assert p.compression_residual_threshold_mm == 5.0  # Hu 2016
    assert p.min_ptv_margin_mm == 5.0  # CLINICAL.md §3
    assert (p.van_herk_systematic_coefficient, p.van_herk_random_coefficient) == (2.5, 0.7)
    assert p.repositioning_threshold_mm == 3.0  # CLINICAL.md §4
    assert (p.intrafraction_alert_mm, p.intrafraction_alert_duration_s) == (3.0, 5.0)  # KIM
    # ABC: Eccles 2006 within-hold motion 0-3.4 mm in suitable patients; Khot 2020's 5.6 mm fails
    assert 1.4 <= p.max_hold_drift_mm <= 3.4 < 5.6
    assert p.min_hold_duration_s == 20.0
    assert p.max_hold_reproducibility_mm == p.repositioning_threshold_mm
    assert p.min_abc_holds >= 2
    assert p.excursion_statistic is ExcursionStatisticValues.MEDIAN
    assert p.no_device_max_p95_excursion_mm >= p.motion_threshold_mm
    # the fastest creep reported (Khot: 5.6 mm over 24 s) is below the hold speed limit
    assert p.hold_max_speed_mm_per_s > 5.6 / 24.0


def test_module_docstring_documents_every_field() -> None:
    doc = protocol_module.__doc__
    assert doc is not None
    for f in dataclasses.fields(MotionProtocol):
        if f.name != "version":
            assert f"``{f.name}``" in doc, f.name


def test_to_dict_is_json_ready_and_round_trips() -> None:
    custom = MotionProtocol(
        version="site-x-2026.2",
        motion_threshold_mm=4.0,
        excursion_statistic="p95",  # type: ignore[arg-type]
        min_cycles=8,
    )
    values = custom.to_dict()
    assert values["excursion_statistic"] == "p95"
    text = json.dumps(values)
    back = MotionProtocol.from_dict(json.loads(text))
    assert back == custom
    assert back.excursion_statistic is ExcursionStatisticValues.P95
    assert MotionProtocol.from_dict(DEFAULT_PROTOCOL.to_dict()) == DEFAULT_PROTOCOL


def test_from_dict_fills_absent_fields_with_defaults() -> None:
    p = MotionProtocol.from_dict({"version": "site-y-1", "borderline_coverage_factor": 2})
    assert p.borderline_coverage_factor == 2.0
    assert isinstance(p.borderline_coverage_factor, float)
    assert p.motion_threshold_mm == 5.0


def test_a_modified_protocol_needs_its_own_version() -> None:
    with pytest.raises(InvalidInputError) as info:
        MotionProtocol(motion_threshold_mm=6.0)
    assert info.value.field == "version"
    assert "motion_threshold_mm" in str(info.value)
    with pytest.raises(InvalidInputError):
        dataclasses.replace(DEFAULT_PROTOCOL, min_hold_duration_s=15.0)
    changed = dataclasses.replace(DEFAULT_PROTOCOL, version="local-2", min_hold_duration_s=15.0)
    assert changed.min_hold_duration_s == 15.0
    assert MotionProtocol(motion_threshold_mm=5) == DEFAULT_PROTOCOL  # same value, int


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"motion_threshold_mm": 6.0}, "version"),
        ({"version": ""}, "version"),
        ({"version": 3}, "version"),
        ({"version": "v", "unknown_mm": 1.0}, "unknown_mm"),
        ({"version": "v", "motion_threshold_mm": -5.0}, "motion_threshold_mm"),
        ({"version": "v", "motion_threshold_mm": float("nan")}, "motion_threshold_mm"),
        ({"version": "v", "motion_threshold_mm": "5"}, "motion_threshold_mm"),
        ({"version": "v", "motion_threshold_mm": True}, "motion_threshold_mm"),
        ({"version": "v", "borderline_coverage_factor": -1.0}, "borderline_coverage_factor"),
        ({"version": "v", "max_lost_fraction": 1.0}, "max_lost_fraction"),
        ({"version": "v", "min_cycles": 1}, "min_cycles"),
        ({"version": "v", "min_cycles": 5.0}, "min_cycles"),
        ({"version": "v", "min_abc_holds": 0}, "min_abc_holds"),
        ({"version": "v", "min_period_s": 12.0, "max_period_s": 6.0}, "min_period_s"),
        ({"version": "v", "excursion_statistic": "mean"}, "excursion_statistic"),
        (
            {"version": "v", "no_device_max_p95_excursion_mm": 4.0},
            "no_device_max_p95_excursion_mm",
        ),
    ],
)
def test_invalid_values_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        MotionProtocol.from_dict(values)
    assert info.value.field == field


def test_from_dict_needs_a_mapping_with_a_version() -> None:
    with pytest.raises(InvalidInputError) as info:
        MotionProtocol.from_dict({"motion_threshold_mm": 5.0})
    assert info.value.field == "version"
    with pytest.raises(InvalidInputError) as info:
        MotionProtocol.from_dict([("version", "x")])  # type: ignore[arg-type]
    assert info.value.field == "protocol"


def test_protocol_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_PROTOCOL.motion_threshold_mm = 6.0  # type: ignore[misc]
