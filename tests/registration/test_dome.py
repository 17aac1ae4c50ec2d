"""The HU-only dome finder, against the phantom's analytic apex and the real CT's labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from igrt.volume import Volume
from registration import ClipBox, DomeNotFoundError, find_dome_apex
from registration._grid import padding_value_of
from tests.registration._support import PHANTOM_APEX_LPS_MM
from tests.registration.conftest import Simulate


def test_phantom_apex_is_found_exactly(phantom_ct: Volume) -> None:
    apex = find_dome_apex(phantom_ct)
    assert apex.method == "cap-fit"
    assert apex.si_mm == pytest.approx(PHANTOM_APEX_LPS_MM[2], abs=0.1)
    np.testing.assert_allclose(apex.position_lps_mm[:2], PHANTOM_APEX_LPS_MM[:2], atol=1.0)
    assert apex.lung_level < -700.0 < 0.0 < apex.tissue_level


@pytest.mark.parametrize(
    "displacement", [(0.0, 0.0, -25.0), (-25.0, 25.0, -25.0), (25.0, -25.0, 25.0)]
)
def test_cbct_apex_moves_with_the_anatomy(
    simulate_phantom_cbct: Simulate, displacement: tuple[float, float, float]
) -> None:
    simulation = simulate_phantom_cbct(displacement)
    cbct = simulation.cbct_hu
    search = ClipBox(PHANTOM_APEX_LPS_MM - [45.0, 45.0, 65.0], PHANTOM_APEX_LPS_MM + [45.0] * 3)
    apex = find_dome_apex(
        cbct,
        search_box=search,
        hint_lps_mm=PHANTOM_APEX_LPS_MM,
        padding_value=padding_value_of(cbct),
        invalid_below=None,
    )
    expected = PHANTOM_APEX_LPS_MM + np.asarray(displacement)
    assert apex.si_mm == pytest.approx(expected[2], abs=0.2)
    np.testing.assert_allclose(apex.position_lps_mm[:2], expected[:2], atol=1.5)


def test_no_dome_in_a_water_block() -> None:
    water = Volume(np.zeros((40, 40, 40), np.float32), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    with pytest.raises(DomeNotFoundError):
        find_dome_apex(water)


@pytest.mark.shared_data
def test_real_ct_apex_matches_the_label_based_apex(shared_data: Path) -> None:
    from fixtures.anatomy import load_chest_ct
    from fixtures.motion import find_right_dome_apex_lps_mm

    anatomy = load_chest_ct(shared_data)
    apex = find_dome_apex(anatomy.ct_hu)
    from_labels = find_right_dome_apex_lps_mm(anatomy)
    assert apex.si_mm == pytest.approx(from_labels[2], abs=0.5)
    np.testing.assert_allclose(apex.position_lps_mm[:2], from_labels[:2], atol=5.0)


def test_holes_are_filled_in_each_axial_plane_as_binary_fill_holes_does() -> None:
    from scipy import ndimage

    from registration.dome import _fill_holes_in_planes

    rng = np.random.default_rng(7)
    mask = rng.random((6, 40, 50)) < 0.55
    mask[2, 5:15, 5:15] = True
    mask[2, 8:12, 8:12] = False  # a hole in one plane only
    mask[3, :, 20] = False  # a background line reaching the plane's border: not a hole
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    expected = ndimage.binary_fill_holes(mask, structure=in_plane)
    filled = _fill_holes_in_planes(mask)
    np.testing.assert_array_equal(filled, expected)
    assert filled[2, 8:12, 8:12].all()
    assert not filled[3, 0, 20]


@pytest.mark.parametrize("spacing_mm", [1.0, 3.0])
def test_the_sheet_core_is_the_erosion_binary_erosion_gives(spacing_mm: float) -> None:
    from scipy import ndimage

    from registration.dome import _RIM_MM, _core

    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:70, :80]
    sheet = (yy - 35) ** 2 + (xx - 30) ** 2 < 28**2  # a disk cut by the map's left border
    sheet &= rng.random(sheet.shape) > 0.02  # with pinholes
    expected = ndimage.binary_erosion(
        sheet, iterations=max(1, round(_RIM_MM / spacing_mm)), border_value=1
    )
    assert expected.sum() >= 10
    np.testing.assert_array_equal(_core(sheet, spacing_mm), expected)
