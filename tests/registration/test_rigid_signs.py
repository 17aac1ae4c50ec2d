"""Known-shift sign tests (pitfall 2): displacement = +shift, couch correction = -shift."""

from __future__ import annotations

import numpy as np
import pytest

from igrt.frame_of_reference import IecAxisValues, PatientPositionValues
from igrt.volume import Volume
from registration import (
    PlanningReference,
    QualityValues,
    register_cbct_to_ct,
)
from tests.registration._support import PHANTOM_ISOCENTRE_LPS_MM
from tests.registration.conftest import Simulate

TOLERANCE_MM = 0.25


@pytest.mark.parametrize(
    "shift_lps_mm",
    [(5.0, 0.0, 0.0), (0.0, 5.0, 0.0), (0.0, 0.0, 5.0), (0.0, 0.0, -5.0)],
    ids=["left", "posterior", "superior", "inferior"],
)
def test_known_shift_signs_hfs(
    phantom_reference: PlanningReference,
    simulate_phantom_cbct: Simulate,
    shift_lps_mm: tuple[float, float, float],
) -> None:
    cbct = simulate_phantom_cbct(shift_lps_mm).cbct_hu
    result = register_cbct_to_ct(
        phantom_reference,
        cbct,
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        overlays=False,
    )
    assert result.quality is QualityValues.GOOD, result.reasons
    assert result.anatomy_displacement is not None
    assert result.couch_correction is not None
    shift = np.asarray(shift_lps_mm)
    np.testing.assert_allclose(result.anatomy_displacement.lps_mm, shift, atol=TOLERANCE_MM)
    np.testing.assert_allclose(result.couch_correction.lps_mm, -shift, atol=TOLERANCE_MM)
    # HFS: LPS (x, y, z) is IEC patient support (x, z, -y).
    x, y, z = shift
    np.testing.assert_allclose(
        result.anatomy_displacement_iec_support_mm, (x, z, -y), atol=TOLERANCE_MM
    )
    np.testing.assert_allclose(
        result.couch_correction_iec_support_mm, (-x, -z, y), atol=TOLERANCE_MM
    )
    # The transform's direction: cbct_from_ct moves the planning isocentre by +shift.
    moved = result.cbct_from_ct[:3, :3] @ PHANTOM_ISOCENTRE_LPS_MM + result.cbct_from_ct[:3, 3]
    np.testing.assert_allclose(moved - PHANTOM_ISOCENTRE_LPS_MM, shift, atol=TOLERANCE_MM)
    np.testing.assert_allclose(result.ct_from_cbct @ result.cbct_from_ct, np.eye(4), atol=1e-9)


@pytest.mark.parametrize(
    ("position", "expected_iec"),
    [
        # Head first prone: left = -X, posterior = +Z (up), superior = +Y.
        (PatientPositionValues.HFP, lambda x, y, z: (-x, z, y)),
        # Feet first supine: left = -X, posterior = -Z, superior = -Y.
        (PatientPositionValues.FFS, lambda x, y, z: (-x, -z, -y)),
    ],
    ids=["HFP", "FFS"],
)
def test_known_shift_in_other_patient_positions(
    phantom_reference: PlanningReference,
    simulate_phantom_cbct: Simulate,
    position: PatientPositionValues,
    expected_iec: object,
) -> None:
    shift = (3.0, -4.0, 5.0)
    cbct = simulate_phantom_cbct(shift).cbct_hu
    result = register_cbct_to_ct(
        phantom_reference,
        cbct,
        patient_position=position.value.lower(),
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        overlays=False,
    )
    assert result.patient_position is position
    assert result.anatomy_displacement is not None
    np.testing.assert_allclose(result.anatomy_displacement.lps_mm, shift, atol=TOLERANCE_MM)
    iec = expected_iec(*shift)  # type: ignore[operator]
    np.testing.assert_allclose(result.anatomy_displacement_iec_support_mm, iec, atol=TOLERANCE_MM)
    np.testing.assert_allclose(
        result.couch_correction_iec_support_mm, [-v for v in iec], atol=TOLERANCE_MM
    )
    assert result.repositioning is not None
    assert result.repositioning.required
    assert IecAxisValues.LONGITUDINAL in result.repositioning.exceeding_axes


@pytest.mark.parametrize(("superior_mm", "required"), [(2.9, False), (3.1, True)])
def test_repositioning_flag_at_the_threshold(
    phantom_reference: PlanningReference,
    simulate_phantom_cbct: Simulate,
    superior_mm: float,
    required: bool,
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, superior_mm)).cbct_hu
    result = register_cbct_to_ct(
        phantom_reference,
        cbct,
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        overlays=False,
    )
    assert result.repositioning is not None
    assert result.repositioning.threshold_mm == 3.0
    assert result.repositioning.required is required
    expected_axes = (IecAxisValues.LONGITUDINAL,) if required else ()
    assert result.repositioning.exceeding_axes == expected_axes


def test_reference_point_defaults_to_the_cbct_centre(
    phantom_ct: Volume, phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 5.0)).cbct_hu
    result = register_cbct_to_ct(phantom_reference, cbct, patient_position="HFS", overlays=False)
    assert result.reference_point_source == "cbct-centre"
    np.testing.assert_allclose(result.reference_point_lps_mm, cbct.centre_lps_mm)
    np.testing.assert_allclose(cbct.centre_lps_mm, PHANTOM_ISOCENTRE_LPS_MM, atol=1e-9)
