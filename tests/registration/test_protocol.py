"""RegistrationProtocol thresholds."""

from __future__ import annotations

import json

import pytest

from igrt.errors import InvalidInputError
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
