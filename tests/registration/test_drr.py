"""The cone-beam DRR generator: a bright sphere lands where the imaging geometry says."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pytest

from igrt.errors import GeometryError, InvalidInputError
from igrt.frame_of_reference import iec_support_from_lps_point
from igrt.geometry import ProjectionGeometry, xvi_geometry
from igrt.volume import Volume
from registration.attenuation import MV_ATTENUATION
from registration.drr import generate_drr, prepare_beam_volume, render_drr
from registration.transforms import rotation_from_euler_deg

SPHERE_CENTRE_LPS_MM = np.array([31.0, -18.0, 42.0])
ISOCENTRE_LPS_MM = np.array([5.0, 4.0, 10.0])


@lru_cache(maxsize=3)
def _sphere_ct_cached(kind: str) -> Volume:
    """``identity``, ``oblique`` (rotated axes) or ``reflected`` (left-handed, like j = -y)."""
    rotation = rotation_from_euler_deg((17.0, -9.0, 31.0))
    direction = {
        "identity": np.eye(3),
        "oblique": rotation,
        "reflected": np.diag([1.0, -1.0, 1.0]) @ rotation,
    }[kind]
    return _sphere_ct(direction)


def _sphere_ct(direction: npt.NDArray[np.float64]) -> Volume:
    """Water-free air box with one 6 mm-radius bone sphere, 1 mm voxels, given direction."""
    shape = (110, 110, 110)
    origin = ISOCENTRE_LPS_MM - direction @ (np.array(shape, dtype=np.float64) - 1) / 2.0
    volume = Volume(np.full(shape, -1000.0, np.float32), (1.0, 1.0, 1.0), origin, direction)
    k, j, i = np.indices(shape, dtype=np.float64)
    index = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    distance = np.linalg.norm(volume.lps_from_index(index) - SPHERE_CENTRE_LPS_MM, axis=1)
    # Anti-aliased edge: a linear ramp over one voxel.
    fraction = np.clip(6.5 - distance, 0.0, 1.0).reshape(shape)
    return volume.with_array((-1000.0 + 2000.0 * fraction).astype(np.float32))


def _centroid(image: npt.NDArray[np.float32]) -> tuple[float, float]:
    weights = np.asarray(image, dtype=np.float64)
    weights = np.where(weights > 1e-3 * weights.max(), weights, 0.0)
    rows, columns = np.indices(weights.shape)
    total = weights.sum()
    return float((columns * weights).sum() / total), float((rows * weights).sum() / total)


@pytest.mark.parametrize(
    ("position", "gantry_deg", "kind"),
    [
        ("HFS", 0.0, "identity"),
        ("HFS", 90.0, "identity"),
        ("HFS", 0.0, "oblique"),
        ("HFS", 90.0, "reflected"),
        ("FFP", 90.0, "oblique"),
        ("HFDL", 213.0, "reflected"),
    ],
)
def test_sphere_projects_where_the_geometry_says(
    position: str, gantry_deg: float, kind: str
) -> None:
    ct = _sphere_ct_cached(kind)
    geometry = xvi_geometry(binning=2, gantry_deg=gantry_deg)
    drr = generate_drr(ct, geometry, ISOCENTRE_LPS_MM, position, transverse_mm=0.5, long_mm=0.5)
    sphere_iec = iec_support_from_lps_point(SPHERE_CENTRE_LPS_MM, ISOCENTRE_LPS_MM, position)
    u, v = geometry.project_iec_fixed(sphere_iec)
    expected_column, expected_row = geometry.pixel_from_detector_mm(u, v)
    column, row = _centroid(drr)
    assert abs(column - float(expected_column[0])) < 0.2
    assert abs(row - float(expected_row[0])) < 0.2


def test_displacement_moves_the_sphere_like_the_geometry() -> None:
    ct = _sphere_ct_cached("identity")
    geometry = xvi_geometry(binning=2, gantry_deg=90.0)
    beam = prepare_beam_volume(
        ct, geometry, ISOCENTRE_LPS_MM, "HFS", transverse_mm=0.5, long_mm=0.5
    )
    shift = np.array([3.0, -4.0, 5.0])
    drr = render_drr(beam, geometry, anatomy_displacement_lps_mm=shift)
    sphere_iec = iec_support_from_lps_point(SPHERE_CENTRE_LPS_MM + shift, ISOCENTRE_LPS_MM, "HFS")
    u, v = geometry.project_iec_fixed(sphere_iec)
    expected_column, expected_row = geometry.pixel_from_detector_mm(u, v)
    column, row = _centroid(drr)
    assert abs(column - float(expected_column[0])) < 0.2
    assert abs(row - float(expected_row[0])) < 0.2


def test_angle_mismatch_is_refused() -> None:
    ct = _sphere_ct_cached("identity")
    beam = prepare_beam_volume(ct, xvi_geometry(binning=4), ISOCENTRE_LPS_MM, "HFS")
    with pytest.raises(GeometryError):
        render_drr(beam, xvi_geometry(binning=4, gantry_deg=90.0))


@pytest.mark.parametrize("gantry_deg", [0.0, 90.0])
def test_sphere_on_a_virtual_image_plane_at_the_isocentre(gantry_deg: float) -> None:
    # An RT Image DRR geometry (Eclipse: SID == SAD = 1000 mm): magnification 1 at the isocentre.
    ct = _sphere_ct_cached("identity")
    geometry = ProjectionGeometry(
        sad_mm=1000.0,
        sdd_mm=1000.0,
        pixel_pitch_mm=(0.9765625, 0.9765625),
        detector_shape=(256, 256),
        gantry_deg=gantry_deg,
    )
    drr = generate_drr(
        ct,
        geometry,
        ISOCENTRE_LPS_MM,
        "HFS",
        transverse_mm=0.5,
        long_mm=0.5,
        attenuation=MV_ATTENUATION,
    )
    sphere_iec = iec_support_from_lps_point(SPHERE_CENTRE_LPS_MM, ISOCENTRE_LPS_MM, "HFS")
    u, v = geometry.project_iec_fixed(sphere_iec)
    expected_column, expected_row = geometry.pixel_from_detector_mm(u, v)
    column, row = _centroid(drr)
    assert abs(column - float(expected_column[0])) < 0.2
    assert abs(row - float(expected_row[0])) < 0.2
    # A 13 mm bone sphere at 6 MV: line integral through its centre about 13 * 0.0049 * 1.55.
    assert float(drr.max()) == pytest.approx(13.0 * 0.0049 * 1.55, rel=0.1)


def test_attenuation_must_be_a_model() -> None:
    with pytest.raises(InvalidInputError) as info:
        prepare_beam_volume(
            _sphere_ct_cached("identity"),
            xvi_geometry(binning=4),
            ISOCENTRE_LPS_MM,
            "HFS",
            attenuation="MV",  # type: ignore[arg-type]
        )
    assert info.value.field == "attenuation"
