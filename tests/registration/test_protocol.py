"""RegistrationProtocol thresholds."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

import registration.protocol
from igrt.errors import InvalidInputError
from igrt.protocol import DEFAULT_PROTOCOL
from registration import DEFAULT_REGISTRATION_PROTOCOL, RegistrationProtocol


def test_defaults_match_the_clinical_figures() -> None:
    protocol = DEFAULT_REGISTRATION_PROTOCOL
    assert protocol.repositioning_threshold_mm == 3.0  # CLINICAL.md §4
    assert protocol.capture_range_mm >= 25.0  # issue 5
    assert protocol.dome_check_tolerance_mm == 2.0  # MPPG 9.a SBRT tolerance
    assert json.loads(json.dumps(protocol.to_dict()))["capture_range_mm"] == 25.0


@pytest.mark.parametrize(
    "changes",
    [
        {"repositioning_threshold_mm": -1.0},
        {"dome_check_tolerance_mm": float("nan")},
        {"capture_range_mm": 5.0},
        {"min_ncc": 0.9, "good_ncc": 0.5},
        {"min_overlap_fraction": 0.9, "good_overlap_fraction": 0.5},
        {"max_rotation_deg": True},
    ],
)
def test_invalid_protocols_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        RegistrationProtocol(**changes)


def test_the_repositioning_threshold_has_one_source() -> None:
    # CLINICAL.md §4 is defined once, in the versioned motion protocol; registration follows it.
    assert (
        DEFAULT_REGISTRATION_PROTOCOL.repositioning_threshold_mm
        == DEFAULT_PROTOCOL.repositioning_threshold_mm
    )
    default_field = RegistrationProtocol.__dataclass_fields__["repositioning_threshold_mm"]
    assert default_field.default == DEFAULT_PROTOCOL.repositioning_threshold_mm
    source = inspect.getsource(registration.protocol)
    assert "repositioning_threshold_mm: float = DEFAULT_PROTOCOL" in source


def test_registration_thresholds_follow_a_site_motion_protocol() -> None:
    site = dataclasses.replace(
        DEFAULT_PROTOCOL, version="site-x-2026.1", repositioning_threshold_mm=2.0
    )
    protocol = RegistrationProtocol.from_motion_protocol(site, capture_range_mm=30.0)
    assert protocol.repositioning_threshold_mm == 2.0
    assert protocol.capture_range_mm == 30.0
    assert RegistrationProtocol.from_motion_protocol(DEFAULT_PROTOCOL) == (
        DEFAULT_REGISTRATION_PROTOCOL
    )


@pytest.mark.parametrize(
    ("motion_protocol", "thresholds", "field"),
    [
        (DEFAULT_PROTOCOL, {"repositioning_threshold_mm": 5.0}, "repositioning_threshold_mm"),
        (DEFAULT_PROTOCOL, {"not_a_threshold": 1.0}, "not_a_threshold"),
        ({"repositioning_threshold_mm": 3.0}, {}, "motion_protocol"),
    ],
)
def test_from_motion_protocol_refuses_contradictions(
    motion_protocol: object, thresholds: dict[str, float], field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        RegistrationProtocol.from_motion_protocol(motion_protocol, **thresholds)  # type: ignore[arg-type]
    assert info.value.field == field


# --- issue 13, item 7 ---------------------------------------------------------------------------


def test_three_mm_rule_flags_the_3d_vector_as_well_as_each_axis() -> None:
    from igrt.frame_of_reference import AnatomyDisplacement

    protocol = RegistrationProtocol()
    diagonal = AnatomyDisplacement((2.9, 2.9, 2.9))  # 5.0 mm, no axis above 3 mm
    flag = protocol.repositioning_flag(diagonal, "HFS")
    assert flag.required
    assert flag.exceeding_axes == ()
    assert flag.exceeds_vector
    assert flag.vector_mm == pytest.approx(5.02, abs=0.01)
    assert flag.to_dict()["rule"] == "per_axis_or_vector"
    per_axis = RegistrationProtocol(repositioning_rule="per_axis")
    assert not per_axis.repositioning_flag(diagonal, "HFS").required
    assert not protocol.repositioning_flag(AnatomyDisplacement((1.0, 1.0, 1.0)), "HFS").required


def test_rotations_are_reported_with_a_protocol_tolerance() -> None:
    from igrt.frame_of_reference import AnatomyDisplacement

    protocol = RegistrationProtocol(rotation_tolerance_deg=2.0)
    flag = protocol.repositioning_flag(AnatomyDisplacement((0.5, 0.0, 0.0)), "HFS", (0.5, 2.5, 0))
    assert flag.required
    assert [axis.value for axis in flag.exceeding_rotation_axes] == ["longitudinal"]
    assert flag.to_dict()["rotation_iec_deg"] == [0.5, 2.5, 0.0]
    with pytest.raises(InvalidInputError):
        RegistrationProtocol(repositioning_rule="sometimes")
