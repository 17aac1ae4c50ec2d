"""2D/2D registration of MV and mixed MV-kV pairs, with geometry from DICOM RT Images.

MV images are simulated (:func:`fixtures.portal.simulate_portal_image`): a DRR of the displaced
chest CT with a 6 MV attenuation map that is not the registration's (lower bone contrast than
kV), exposed on a noisy EPID-like panel. kV images come from the fluoroscopy simulator.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from fixtures.motion import BreathingMotionModel
from fixtures.portal import simulate_portal_image
from igrt.errors import GeometryError, InvalidInputError
from igrt.geometry import ProjectionGeometry, xvi_geometry
from igrt.imageio import read_rt_image
from igrt.sequence import IntensityValues
from igrt.volume import Volume
from registration import (
    ImagingModalityValues,
    KvView,
    PairReference,
    QualityValues,
    prepare_pair_reference,
    register_pair_to_drrs,
)
from tests.igrt.imageio.builders import write_rt_image
from tests.registration._support import PHANTOM_ISOCENTRE_LPS_MM, simulate_kv_view

TARGET_ERROR_MM = 0.5
MV, KV = ImagingModalityValues.MV, ImagingModalityValues.KV

# An aS1000-like EPID (1024 x 768 at 0.392 mm, SID 1500 mm) binned 4x; the panel is shifted
# off the beam axis so that the offsets matter.
EPID = ProjectionGeometry(
    sad_mm=1000.0,
    sdd_mm=1500.0,
    pixel_pitch_mm=(1.568, 1.568),
    detector_shape=(192, 256),
    detector_offset_mm=(12.0, -8.0),
)
KV_90 = xvi_geometry(binning=4, gantry_deg=90.0)


def _portal_view(
    model: BreathingMotionModel,
    geometry: ProjectionGeometry,
    isocentre: npt.NDArray[np.float64],
    shift_lps_mm: npt.ArrayLike,
    seed: int,
) -> KvView:
    raw = simulate_portal_image(
        model.anatomy.ct_hu,
        geometry,
        isocentre_lps_mm=isocentre,
        anatomy_displacement_lps_mm=shift_lps_mm,
        seed=seed,
    )
    return KvView(raw.astype(np.float32), geometry, IntensityValues.RAW, MV)


def _rt_image_of(raw: npt.NDArray[np.uint16], geometry: ProjectionGeometry, path: Path) -> Path:
    """Store a simulated portal image as an RT Image whose position encodes ``geometry``."""
    first_u_mm, first_v_mm = geometry.detector_mm_from_pixel(0, 0)
    return write_rt_image(
        path,
        raw,
        sid_mm=geometry.sdd_mm,
        sad_mm=geometry.sad_mm,
        spacing_row_col_mm=(geometry.pixel_pitch_mm[1], geometry.pixel_pitch_mm[0]),
        position_mm=(float(first_u_mm), -float(first_v_mm)),  # receptor y is -v
        gantry_deg=geometry.gantry_deg,
    )


def _assert_recovered(
    result_displacement: tuple[float, float, float] | None, shift_lps_mm: npt.ArrayLike
) -> None:
    assert result_displacement is not None
    error = np.asarray(result_displacement) - np.asarray(shift_lps_mm)
    assert np.all(np.abs(error) <= TARGET_ERROR_MM), error


@pytest.fixture(scope="module")
def mv_reference(
    chest_model: BreathingMotionModel, chest_isocentre: npt.NDArray[np.float64]
) -> PairReference:
    return prepare_pair_reference(
        chest_model.anatomy.ct_hu,
        [EPID, EPID.with_gantry(90.0)],
        isocentre_lps_mm=chest_isocentre,
        patient_position="HFS",
        modalities=["MV", "MV"],
    )


# --- accuracy ---------------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "shift_lps_mm", [(0.0, 0.0, 5.0), (-7.3, 4.1, -12.2)], ids=["superior-5", "oblique"]
)
def test_mv_pair_recovers_a_known_shift(
    mv_reference: PairReference,
    chest_model: BreathingMotionModel,
    chest_isocentre: npt.NDArray[np.float64],
    shift_lps_mm: tuple[float, float, float],
) -> None:
    views = [
        _portal_view(chest_model, EPID.with_gantry(g), chest_isocentre, shift_lps_mm, seed=k)
        for k, g in enumerate((0.0, 90.0))
    ]
    result = register_pair_to_drrs(mv_reference, views)
    assert result.quality is QualityValues.GOOD, result.reasons
    assert result.anatomy_displacement is not None
    _assert_recovered(result.anatomy_displacement.lps_mm, shift_lps_mm)
    assert [view.modality for view in result.views] == [MV, MV]
    assert [view["modality"] for view in result.to_dict()["views"]] == ["MV", "MV"]
    assert result.shared_axis_disagreement_mm < result.shared_axis_tolerance_mm


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "shift_lps_mm", [(4.0, -6.0, 3.0), (-11.0, 2.5, 9.0)], ids=["small", "large"]
)
def test_mixed_mv_kv_pair_with_the_mv_geometry_from_an_rt_image(
    chest_model: BreathingMotionModel,
    chest_isocentre: npt.NDArray[np.float64],
    shift_lps_mm: tuple[float, float, float],
    tmp_path: Path,
) -> None:
    raw = simulate_portal_image(
        chest_model.anatomy.ct_hu,
        EPID,
        isocentre_lps_mm=chest_isocentre,
        anatomy_displacement_lps_mm=shift_lps_mm,
        seed=7,
    )
    rt_image = read_rt_image(_rt_image_of(raw, EPID, tmp_path / "portal.dcm"))
    assert rt_image.geometry.detector_offset_mm == pytest.approx(EPID.detector_offset_mm)
    mv_view = KvView.from_rt_image(rt_image, intensity=IntensityValues.RAW, modality="MV")
    kv_view = simulate_kv_view(chest_model, KV_90, chest_isocentre, shift_lps_mm)
    result = register_pair_to_drrs(
        chest_model.anatomy.ct_hu,
        [mv_view, kv_view],
        isocentre_lps_mm=chest_isocentre,
        patient_position="HFS",
    )
    assert result.quality is QualityValues.GOOD, result.reasons
    assert result.anatomy_displacement is not None
    _assert_recovered(result.anatomy_displacement.lps_mm, shift_lps_mm)
    assert [(v.modality, v.gantry_deg) for v in result.views] == [(MV, 0.0), (KV, 90.0)]


@pytest.mark.shared_data
def test_mv_view_on_the_eclipse_drr_geometry(
    shared_data: Path,
    chest_model: BreathingMotionModel,
    chest_isocentre: npt.NDArray[np.float64],
) -> None:
    """A portal image resampled to the TPS DRR's plane: SID == SAD, 512 x 512 at 0.98 mm."""
    eclipse = read_rt_image(next((shared_data / "dicom" / "rt_eclipse").glob("RI.*.dcm")))
    geometry = eclipse.geometry
    assert geometry.sdd_mm == geometry.sad_mm
    shift_lps_mm = (3.0, 5.0, -4.0)
    # Only the pelvis DRR's geometry is used: its pixels are replaced by a chest portal image.
    raw = simulate_portal_image(
        chest_model.anatomy.ct_hu,
        geometry,
        isocentre_lps_mm=chest_isocentre,
        anatomy_displacement_lps_mm=shift_lps_mm,
        seed=11,
    )
    portal = dataclasses.replace(eclipse, image=raw.astype(np.float32))
    mv_view = KvView.from_rt_image(portal, intensity=IntensityValues.RAW, modality=MV)
    kv_view = simulate_kv_view(chest_model, KV_90, chest_isocentre, shift_lps_mm)
    result = register_pair_to_drrs(
        chest_model.anatomy.ct_hu,
        [mv_view, kv_view],
        isocentre_lps_mm=chest_isocentre,
        patient_position="HFS",
    )
    assert result.quality is QualityValues.GOOD, result.reasons
    assert result.anatomy_displacement is not None
    _assert_recovered(result.anatomy_displacement.lps_mm, shift_lps_mm)


# --- typed errors (phantom: no shared data needed) ---------------------------------------------


@pytest.fixture(scope="module")
def phantom_kv_reference(phantom_ct: Volume) -> PairReference:
    return prepare_pair_reference(
        phantom_ct,
        [xvi_geometry(binning=4, gantry_deg=0.0), KV_90],
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        patient_position="HFS",
    )


def test_an_mv_view_needs_an_mv_drr_grid(phantom_kv_reference: PairReference) -> None:
    geometry = xvi_geometry(binning=4, gantry_deg=0.0)
    image = np.ones(geometry.detector_shape, np.float32)
    views = [KvView(image, geometry, modality=MV), KvView(image, KV_90)]
    with pytest.raises(GeometryError, match="for a MV view") as info:
        register_pair_to_drrs(phantom_kv_reference, views)
    assert info.value.field == "gantry_deg"


def test_modalities_must_match_the_geometries(phantom_ct: Volume) -> None:
    with pytest.raises(InvalidInputError) as info:
        prepare_pair_reference(
            phantom_ct,
            [xvi_geometry(binning=4), KV_90],
            isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
            patient_position="HFS",
            modalities=["MV"],
        )
    assert info.value.field == "modalities"


def test_a_reference_holds_one_grid_per_angle_and_beam(phantom_ct: Volume) -> None:
    reference = prepare_pair_reference(
        phantom_ct,
        [KV_90, KV_90, KV_90],
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        patient_position="HFS",
        modalities=["kV", "mv", MV],
    )
    assert len(reference.beam_volumes) == 2
    mv_grid = reference.beam_volume_for(KV_90, "MV")
    kv_grid = reference.beam_volume_for(KV_90)
    assert mv_grid.attenuation == MV.attenuation
    assert kv_grid.attenuation == KV.attenuation
    # Lower bone contrast and weaker attenuation overall at MV.
    assert float(mv_grid.planes_mu_per_mm.max()) < float(kv_grid.planes_mu_per_mm.max())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"modality": "UV"}, "modality"),
        ({"modality": None}, "modality"),
        ({"intensity": "raw"}, "intensity"),
        ({"geometry": None}, "geometry"),
        ({"image": np.full((64, 64), np.nan, np.float32)}, "image"),
    ],
)
def test_invalid_views_are_refused(changes: dict[str, object], field: str) -> None:
    geometry = xvi_geometry(binning=16)
    arguments: dict[str, object] = {
        "image": np.zeros(geometry.detector_shape, np.float32),
        "geometry": geometry,
        **changes,
    }
    with pytest.raises(InvalidInputError) as info:
        KvView(**arguments)  # type: ignore[arg-type]
    assert info.value.field == field


def test_from_rt_image_needs_what_the_reader_returns() -> None:
    with pytest.raises(InvalidInputError) as info:
        KvView.from_rt_image(  # type: ignore[arg-type]
            np.zeros((4, 4)), intensity=IntensityValues.RAW, modality=MV
        )
    assert info.value.field == "rt_image"


def test_from_rt_image_refuses_an_unknown_modality(tmp_path: Path) -> None:
    rt_image = read_rt_image(write_rt_image(tmp_path / "ri.dcm", np.zeros((8, 8), np.uint16)))
    with pytest.raises(InvalidInputError) as info:
        KvView.from_rt_image(rt_image, intensity=IntensityValues.RAW, modality="proton")
    assert info.value.field == "modality"
