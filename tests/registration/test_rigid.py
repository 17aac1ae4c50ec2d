"""Capture range, 6 degrees of freedom, determinism, the dome check and failure statuses."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.cbct import simulate_cbct
from igrt.volume import Volume
from registration import (
    ClipBox,
    DomeCheckValues,
    NotConvergedError,
    PlanningReference,
    QualityValues,
    prepare_planning_reference,
    register_cbct_to_ct,
)
from registration.protocol import DEFAULT_REGISTRATION_PROTOCOL
from registration.rigid import rotation_tolerance_deg
from tests.registration._support import (
    CBCT_OPTIONS,
    PHANTOM_APEX_LPS_MM,
    PHANTOM_ISOCENTRE_LPS_MM,
    point_error_mm,
)
from tests.registration.conftest import Simulate


@pytest.mark.parametrize(
    "displacement", [(25.0, -25.0, 25.0), (-25.0, 25.0, -25.0), (0.0, -25.0, 0.0)]
)
def test_capture_range_25_mm(
    phantom_reference: PlanningReference,
    simulate_phantom_cbct: Simulate,
    displacement: tuple[float, float, float],
) -> None:
    simulation = simulate_phantom_cbct(displacement)
    result = register_cbct_to_ct(
        phantom_reference,
        simulation.cbct_hu,
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        overlays=False,
    )
    assert result.quality is QualityValues.GOOD, result.reasons
    assert result.anatomy_displacement is not None
    np.testing.assert_allclose(result.anatomy_displacement.lps_mm, displacement, atol=0.25)
    assert result.dome_check.status is DomeCheckValues.AGREES
    assert result.ncc_after > result.ncc_before


def test_six_degrees_of_freedom_recover_a_rotation(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    rotation = (2.0, -3.0, 2.5)
    simulation = simulate_phantom_cbct((8.0, -6.0, 10.0), rotation)
    result = register_cbct_to_ct(
        phantom_reference,
        simulation.cbct_hu,
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        degrees_of_freedom=6,
        overlays=False,
    )
    assert result.quality is QualityValues.GOOD, result.reasons
    truth = simulation.truth.cbct_from_ct
    assert point_error_mm(result.cbct_from_ct, truth, PHANTOM_ISOCENTRE_LPS_MM) < 0.3
    assert point_error_mm(result.cbct_from_ct, truth, PHANTOM_APEX_LPS_MM) < 0.3
    assert result.anatomy_rotation_lps_deg is not None
    np.testing.assert_allclose(result.anatomy_rotation_lps_deg, rotation, atol=0.2)
    # IEC (HFS): about X = about LPS x; about Y (towards the gantry) = about LPS z;
    # about Z (up) = about LPS -y. The couch undoes the rotation.
    assert result.anatomy_rotation_iec_support_deg is not None
    assert result.couch_rotation_correction_iec_support_deg is not None
    np.testing.assert_allclose(result.anatomy_rotation_iec_support_deg, (2.0, 2.5, 3.0), atol=0.25)
    np.testing.assert_allclose(
        result.couch_rotation_correction_iec_support_deg, (-2.0, -2.5, -3.0), atol=0.3
    )
    # A translation-only (3-DOF) request still fits and reports the rotation, gives the
    # translation that is right at the isocentre, applies no rotation, and is QUESTIONABLE
    # when the rotation exceeds the tolerance in force (1 degree here; the protocol's own
    # rotation_tolerance_deg once it has one).
    translation_only = register_cbct_to_ct(
        phantom_reference,
        simulation.cbct_hu,
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        degrees_of_freedom=3,
        overlays=False,
    )
    tolerance = rotation_tolerance_deg(DEFAULT_REGISTRATION_PROTOCOL)
    flagged = any("rotation tolerance" in r for r in translation_only.reasons)
    assert translation_only.anatomy_rotation_lps_deg is not None
    assert flagged == (max(abs(a) for a in translation_only.anatomy_rotation_lps_deg) > tolerance)
    assert translation_only.quality is (
        QualityValues.QUESTIONABLE if flagged else result.quality
    ), translation_only.reasons
    assert translation_only.anatomy_rotation_lps_deg == result.anatomy_rotation_lps_deg
    assert translation_only.couch_rotation_correction_iec_support_deg is None
    assert translation_only.anatomy_displacement is not None
    true_at_iso = truth[:3, :3] @ PHANTOM_ISOCENTRE_LPS_MM + truth[:3, 3] - PHANTOM_ISOCENTRE_LPS_MM
    np.testing.assert_allclose(translation_only.anatomy_displacement.lps_mm, true_at_iso, atol=0.3)


def test_three_dof_request_without_rotation_stays_good(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    simulation = simulate_phantom_cbct((4.0, 3.0, -5.0), (0.3, -0.2, 0.4))
    result = register_cbct_to_ct(
        phantom_reference,
        simulation.cbct_hu,
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        degrees_of_freedom=3,
        overlays=False,
    )
    assert result.quality is QualityValues.GOOD, result.reasons
    assert result.extra["rotation_tolerance_deg"] == rotation_tolerance_deg(
        DEFAULT_REGISTRATION_PROTOCOL
    )
    assert result.anatomy_rotation_lps_deg is not None
    assert max(abs(a) for a in result.anatomy_rotation_lps_deg) < 1.0


def test_two_runs_are_identical(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((7.0, -3.0, 12.0), (1.0, 0.5, -1.0)).cbct_hu
    runs = [
        register_cbct_to_ct(
            phantom_reference,
            cbct,
            patient_position="HFS",
            degrees_of_freedom=6,
            overlays=False,
            threads=threads,
        )
        for threads in (2, 2, 1)
    ]
    for other in runs[1:]:
        assert np.array_equal(runs[0].cbct_from_ct, other.cbct_from_ct)
        first, second = runs[0].to_dict(), other.to_dict()
        for volatile in ("runtime_s", "extra"):
            first.pop(volatile)
            second.pop(volatile)
        assert first == second


def test_dome_check_warns_when_the_dome_moved_differently(phantom_ct: Volume) -> None:
    # Today's anatomy: everything above z = 15 mm (the dome and the lung) is 6 mm lower, the
    # liver below is where it was. A clip box below the dome sees no displacement; the dome
    # check sees the dome 6 mm inferior.
    array = np.array(phantom_ct.array)
    z_mm = phantom_ct.lps_from_index(
        np.column_stack(
            [np.zeros(array.shape[0]), np.zeros(array.shape[0]), np.arange(array.shape[0])]
        )
    )[:, 2]
    shift_slices = 3  # 6 mm at 2 mm slices
    cut = int(np.searchsorted(z_mm, 15.0))
    array[cut : array.shape[0] - shift_slices] = array[cut + shift_slices :]
    today = phantom_ct.with_array(array)
    cbct = simulate_cbct(
        today, isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM, seed=3, **CBCT_OPTIONS
    ).cbct_hu
    below_the_dome = ClipBox((-120.0, -70.0, -80.0), (-20.0, 40.0, 0.0))
    reference = prepare_planning_reference(phantom_ct, clip_box=below_the_dome)
    result = register_cbct_to_ct(reference, cbct, patient_position="HFS", overlays=False)
    check = result.dome_check
    assert check.status is DomeCheckValues.DISAGREES
    assert check.dome_si_offset_mm == pytest.approx(-6.0, abs=0.3)
    # The 6-DOF fit's small rotation acts at the apex, 70 mm from the box centre.
    assert check.registration_si_mm == pytest.approx(0.0, abs=0.6)
    assert check.disagreement_mm is not None
    assert check.disagreement_mm > check.tolerance_mm
    assert result.quality is QualityValues.QUESTIONABLE
    assert any("dome check" in reason for reason in result.reasons)
    assert result.anatomy_displacement is not None  # a warning, not a failure


def test_failed_when_the_cbct_barely_overlaps_the_clip_box(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 0.0)).cbct_hu
    # Move the CBCT 100 mm superior: a third of the clip box stays inside its grid.
    moved = Volume(cbct.array, cbct.spacing_mm, cbct.origin_lps_mm + np.array([0.0, 0.0, 100.0]))
    result = register_cbct_to_ct(phantom_reference, moved, patient_position="HFS")
    assert result.quality is QualityValues.FAILED
    assert result.anatomy_displacement is None
    assert result.couch_correction is None
    assert result.repositioning is None
    assert result.reasons
    with pytest.raises(NotConvergedError):
        result.require_trusted()
    with pytest.raises(NotConvergedError) as caught:
        register_cbct_to_ct(phantom_reference, moved, patient_position="HFS", raise_on_failure=True)
    assert caught.value.reasons == result.reasons


def test_failed_when_the_cbct_shows_other_content(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 0.0)).cbct_hu
    noise = np.random.default_rng(0).normal(0.0, 300.0, cbct.array.shape).astype(np.float32)
    result = register_cbct_to_ct(
        phantom_reference, cbct.with_array(noise), patient_position="HFS", overlays=False
    )
    assert result.quality is QualityValues.FAILED
    assert any("similarity" in reason for reason in result.reasons)
    assert result.anatomy_displacement is None
