"""The real chest CT: automatic clip box around the dome, 6 degrees of freedom, fast CBCT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fixtures.anatomy import load_chest_ct
from fixtures.cbct import simulate_cbct
from fixtures.motion import find_right_dome_apex_lps_mm
from registration import DomeCheckValues, QualityValues, register_cbct_to_ct
from tests.registration._support import point_error_mm

pytestmark = pytest.mark.shared_data


def test_real_ct_six_degrees_of_freedom(shared_data: Path) -> None:
    anatomy = load_chest_ct(shared_data)
    apex = find_right_dome_apex_lps_mm(anatomy)
    isocentre = apex - np.array([0.0, 0.0, 20.0])
    simulation = simulate_cbct(
        anatomy.ct_hu,
        isocentre_lps_mm=isocentre,
        anatomy_displacement_lps_mm=(-14.0, 9.0, 18.0),
        rotation_deg=(-2.0, 1.5, 2.5),
        seed=11,
        max_extrapolation_mm=60.0,
    )
    result = register_cbct_to_ct(
        anatomy.ct_hu,
        simulation.cbct_hu,
        patient_position="HFS",
        degrees_of_freedom=6,
        isocentre_lps_mm=isocentre,
    )
    assert result.quality is QualityValues.GOOD, result.reasons
    assert result.clip_box_source.startswith("automatic")
    lower, upper = result.clip_box.lower_lps_mm, result.clip_box.upper_lps_mm
    assert np.all(lower < apex)
    assert np.all(apex < upper)
    truth = simulation.truth.cbct_from_ct
    assert point_error_mm(result.cbct_from_ct, truth, isocentre) < 0.3
    assert point_error_mm(result.cbct_from_ct, truth, apex) < 0.3
    assert result.dome_check.status is DomeCheckValues.AGREES
    assert result.dome_check.disagreement_mm is not None
    assert result.dome_check.disagreement_mm < 0.5
    assert result.uncertainty_mm < 0.3
    assert result.runtime_s < 5.0  # about 0.3 s; generous for busy CI machines
