"""The CBCT-to-HU map applied before the clip window, and the field-of-view fill of raw CBCTs."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from igrt.volume import Volume
from registration import PlanningReference, QualityValues, register_cbct_to_ct
from registration._grid import padding_value_of
from registration._intensity import IntensityLandmarks, LinearMap, landmarks_of
from tests.registration._support import PHANTOM_ISOCENTRE_LPS_MM, point_error_mm
from tests.registration.conftest import Simulate


def _two_class_values(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    lung = rng.normal(-850.0, 40.0, 30_000)
    tissue = rng.normal(50.0, 25.0, 70_000)
    return np.concatenate([lung, tissue]).astype(np.float32)


def test_landmarks_follow_a_linear_storage() -> None:
    values = _two_class_values(np.random.default_rng(0))
    hu = landmarks_of(values)
    stored = landmarks_of(values * np.float32(0.85) + np.float32(850.0))
    assert hu is not None
    assert stored is not None
    assert hu.low == pytest.approx(-850.0, abs=5.0)
    assert hu.high == pytest.approx(50.0, abs=5.0)
    mapping = LinearMap.between(stored, hu)
    assert mapping.gain == pytest.approx(1 / 0.85, rel=0.01)
    raw = np.array([0.85 * -1000.0 + 850.0, 0.85 * 300.0 + 850.0], np.float32)
    mapping.apply_in_place(raw)
    np.testing.assert_allclose(raw, [-1000.0, 300.0], atol=5.0)


def test_landmarks_refuse_too_few_or_constant_values() -> None:
    assert landmarks_of(np.zeros(50, np.float32)) is None
    assert landmarks_of(np.full(10_000, 7.0, np.float32)) is None
    assert LinearMap.between(IntensityLandmarks(1.0, 1.0), IntensityLandmarks(0.0, 2.0)) == (
        LinearMap()
    )


def test_raw_cbct_fill_at_air_is_padding() -> None:
    rng = np.random.default_rng(1)
    array = (rng.normal(900.0, 30.0, (20, 64, 64))).astype(np.float32)
    j, i = np.mgrid[0:64, 0:64]
    outside = np.hypot(i - 31.5, j - 31.5) > 32.0
    array[:, outside] = 0.0
    assert padding_value_of(Volume(array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))) == 0.0
    # Air noise around the fill: most of the body still lies above, few voxels below.
    array[:, 20:24, 20:24] = rng.normal(0.0, 30.0, (20, 4, 4))
    assert padding_value_of(Volume(array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))) == 0.0
    no_fill = rng.normal(900.0, 30.0, (20, 64, 64)).astype(np.float32)
    assert padding_value_of(Volume(no_fill, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))) is None


def test_phantom_cbct_stored_uncalibrated_registers_like_hu(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    simulation = simulate_phantom_cbct((3.0, -2.0, 6.0))
    hu = simulation.cbct_hu
    raw = hu.with_array(hu.array * np.float32(0.8) + np.float32(800.0))
    truth = simulation.truth.cbct_from_ct
    errors = []
    for volume in (hu, raw):
        result = register_cbct_to_ct(
            phantom_reference,
            volume,
            patient_position="HFS",
            isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
            overlays=False,
        )
        assert result.quality is not QualityValues.FAILED, result.reasons
        errors.append(point_error_mm(result.cbct_from_ct, truth, PHANTOM_ISOCENTRE_LPS_MM))
    assert errors[1] < 0.3
    assert abs(errors[1] - errors[0]) < 0.05
