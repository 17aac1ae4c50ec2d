"""CBCT registration on cone-beam images from RTK's projector and RTK's FDK (not our own code).

The CBCT is the real chest CT moved by a known rigid transform (SimpleITK resampling), forward
projected with RTK's Joseph projector on a small-field-of-view panel (lateral truncation),
with Poisson noise and a broad scatter term (low-frequency shading), reconstructed with RTK's
FDK without truncation correction (a bright rim) and stored uncalibrated
(``0.85 x HU + 850``, about ``0.85 (HU + 1000)``). The simulator and the registration share
no code that could hide a common convention error. Downsampled (2 mm voxels, 72 projections of
a 128x128 panel) so that the session fixture takes seconds, built once per session.

Before the CBCT was mapped onto the CT's HU scale, the clip window ([-1000, 300] "HU") cut
through the soft tissue of such a CBCT and moved every lung/liver edge: 1.7 mm at the
isocentre, along the dome's normal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from fixtures.anatomy import load_chest_ct
from fixtures.cbct import CbctSimulation, RtkAcquisition, simulate_cbct
from fixtures.motion import find_right_dome_apex_lps_mm
from igrt.geometry import xvi_geometry
from igrt.volume import Volume
from registration import (
    PlanningReference,
    QualityValues,
    prepare_planning_reference,
    register_cbct_to_ct,
)
from registration.protocol import DEFAULT_REGISTRATION_PROTOCOL
from registration.rigid import rotation_tolerance_deg
from tests.registration._support import point_error_mm

pytestmark = [pytest.mark.shared_data, pytest.mark.sim, pytest.mark.slow]

DISPLACEMENT_LPS_MM = (-7.5, 4.0, 11.0)
ROTATION_DEG = (0.8, -0.6, 1.8)
STORED_GAIN, STORED_OFFSET = 0.85, 850.0


@pytest.fixture(scope="module")
def chest(shared_data: Path) -> tuple[Volume, npt.NDArray[np.float64]]:
    anatomy = load_chest_ct(shared_data)
    isocentre = find_right_dome_apex_lps_mm(anatomy) - np.array([0.0, 0.0, 20.0])
    return anatomy.ct_hu, isocentre


@pytest.fixture(scope="module")
def reference(chest: tuple[Volume, npt.NDArray[np.float64]]) -> PlanningReference:
    return prepare_planning_reference(chest[0])


@pytest.fixture(scope="module")
def rtk_cbct(chest: tuple[Volume, npt.NDArray[np.float64]]) -> CbctSimulation:
    pytest.importorskip("itk", reason="itk-rtk is not installed (pip install .[sim])")
    ct, isocentre = chest
    return simulate_cbct(
        ct,
        isocentre_lps_mm=isocentre,
        anatomy_displacement_lps_mm=DISPLACEMENT_LPS_MM,
        rotation_deg=ROTATION_DEG,
        method="rtk",
        voxel_mm=2.0,
        length_mm=120.0,
        seed=3,
        max_extrapolation_mm=60.0,
        acquisition=RtkAcquisition(
            imager=xvi_geometry(binning=8),
            n_projections=72,
            projection_voxel_mm=3.0,
            truncation_correction=0.0,
            scatter_to_primary_ratio=0.25,
            stored_gain=STORED_GAIN,
            stored_offset=STORED_OFFSET,
        ),
    )


def test_known_shift_and_rotation_on_an_uncalibrated_rtk_fdk_cbct(
    chest: tuple[Volume, npt.NDArray[np.float64]],
    reference: PlanningReference,
    rtk_cbct: CbctSimulation,
) -> None:
    _, isocentre = chest
    stored = rtk_cbct.cbct_hu.array
    assert float(np.median(stored[stored > 600])) > 600.0  # soft tissue far above 300 "HU"
    result = register_cbct_to_ct(
        reference, rtk_cbct.cbct_hu, patient_position="HFS", isocentre_lps_mm=isocentre
    )
    assert result.degrees_of_freedom == 6
    assert result.quality is QualityValues.GOOD, result.reasons
    truth = rtk_cbct.truth.cbct_from_ct
    error = point_error_mm(result.cbct_from_ct, truth, isocentre)
    assert error < 0.3
    assert error <= 2.0 * result.uncertainty_mm
    assert result.anatomy_rotation_lps_deg is not None
    np.testing.assert_allclose(result.anatomy_rotation_lps_deg, ROTATION_DEG, atol=0.25)
    # Stored value per CT HU, for the overlays: below the storage's 0.85 because scatter and
    # the missing truncation correction flatten the reconstructed contrast.
    assert 0.4 < result.intensity_gain < STORED_GAIN + 0.1


def test_three_dof_keeps_the_isocentre_translation_and_flags_the_rotation(
    chest: tuple[Volume, npt.NDArray[np.float64]],
    reference: PlanningReference,
    rtk_cbct: CbctSimulation,
) -> None:
    _, isocentre = chest
    result = register_cbct_to_ct(
        reference,
        rtk_cbct.cbct_hu,
        patient_position="HFS",
        isocentre_lps_mm=isocentre,
        degrees_of_freedom=3,
        overlays=False,
    )
    flagged = any("rotation tolerance" in reason for reason in result.reasons)
    tolerance = rotation_tolerance_deg(DEFAULT_REGISTRATION_PROTOCOL)
    assert result.anatomy_rotation_lps_deg is not None
    assert flagged == (max(abs(a) for a in result.anatomy_rotation_lps_deg) > tolerance)
    expected = QualityValues.QUESTIONABLE if flagged else QualityValues.GOOD
    assert result.quality is expected, result.reasons
    assert result.couch_rotation_correction_iec_support_deg is None
    assert result.anatomy_displacement is not None
    truth = rtk_cbct.truth.cbct_from_ct
    true_shift = truth[:3, :3] @ isocentre + truth[:3, 3] - isocentre
    np.testing.assert_allclose(result.anatomy_displacement.lps_mm, true_shift, atol=0.3)
