"""HU-to-attenuation maps of the kV and MV beams."""

from __future__ import annotations

import math

import numpy as np
import pytest

from igrt.errors import InvalidInputError
from registration.attenuation import (
    KV_ATTENUATION,
    MV_ATTENUATION,
    AttenuationModel,
    ImagingModalityValues,
    mu_per_mm_from_hu,
)
from registration.drr import BONE_CONTRAST_FACTOR, MU_WATER_PER_MM
from registration.drr import mu_per_mm_from_hu as drr_mu_per_mm_from_hu


def test_kv_map_is_the_one_the_drrs_always_used() -> None:
    hu = np.array([-1000.0, -500.0, 0.0, 1000.0, 2000.0])
    expected = MU_WATER_PER_MM * np.array([0.0, 0.5, 1.0, 1.0 + BONE_CONTRAST_FACTOR, 3.6])
    np.testing.assert_allclose(mu_per_mm_from_hu(hu), expected, rtol=1e-6)
    np.testing.assert_array_equal(drr_mu_per_mm_from_hu(hu), mu_per_mm_from_hu(hu))
    assert mu_per_mm_from_hu(hu).dtype == np.float32


def test_mv_has_lower_bone_contrast_than_kv() -> None:
    # Cortical bone (~1250 HU) over water: about 1.7 at 6 MV (electron density), 2.6 at 60 keV.
    bone_over_water = {
        model.name: float(model.mu_per_mm(1250.0) / model.mu_per_mm(0.0))
        for model in (KV_ATTENUATION, MV_ATTENUATION)
    }
    assert bone_over_water[MV_ATTENUATION.name] == pytest.approx(1.69, abs=0.01)
    assert bone_over_water[KV_ATTENUATION.name] == pytest.approx(2.625, abs=0.01)
    # Lung and air follow density at both energies.
    assert float(MV_ATTENUATION.mu_per_mm(-1000.0)) == 0.0
    assert float(MV_ATTENUATION.mu_per_mm(-800.0) / MV_ATTENUATION.mu_per_mm(0.0)) == (
        pytest.approx(0.2)
    )


def test_modalities_name_their_beams() -> None:
    assert ImagingModalityValues.KV.attenuation is KV_ATTENUATION
    assert ImagingModalityValues.MV.attenuation is MV_ATTENUATION
    for text, member in (("kV", "KV"), ("KV", "KV"), (" mv ", "MV"), ("MV", "MV")):
        assert ImagingModalityValues.parse(text) is ImagingModalityValues[member]
    assert ImagingModalityValues.parse(ImagingModalityValues.MV) is ImagingModalityValues.MV


@pytest.mark.parametrize("value", ["UV", "", None, 6])
def test_unknown_modalities_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        ImagingModalityValues.parse(value)  # type: ignore[arg-type]
    assert info.value.field == "modality"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (("", 0.02, 1.0), "name"),
        (("x", 0.0, 1.0), "mu_water_per_mm"),
        (("x", math.nan, 1.0), "mu_water_per_mm"),
        (("x", 0.02, -1.0), "bone_slope"),
        (("x", 0.02, True), "bone_slope"),
    ],
)
def test_invalid_attenuation_models_are_refused(
    arguments: tuple[object, object, object], field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        AttenuationModel(*arguments)  # type: ignore[arg-type]
    assert info.value.field == field
