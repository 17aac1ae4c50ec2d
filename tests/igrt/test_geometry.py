"""Tests for igrt.geometry: kV imager presets, panel conversions and cone-beam projection."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from igrt.errors import GeometryError, IgrtError
from igrt.geometry import ProjectionGeometry, obi_geometry, xvi_geometry

DETERMINISTIC = settings(derandomize=True, max_examples=80, deadline=None)

finite_gantry = st.floats(min_value=-360.0, max_value=360.0, allow_nan=False)
pitch_mm = st.floats(min_value=0.05, max_value=2.0)
offset_mm = st.floats(min_value=-200.0, max_value=200.0)
panel_pixels = st.integers(min_value=1, max_value=2048)
coordinates = hnp.arrays(
    np.float64, 5, elements=st.floats(min_value=-3000.0, max_value=3000.0, allow_nan=False)
)


def _geometry(
    pitch_u: float = 0.4,
    pitch_v: float = 0.4,
    rows: int = 1024,
    cols: int = 1024,
    offset_u: float = 0.0,
    offset_v: float = 0.0,
    gantry_deg: float = 0.0,
) -> ProjectionGeometry:
    return ProjectionGeometry(
        sad_mm=1000.0,
        sdd_mm=1536.0,
        pixel_pitch_mm=(pitch_u, pitch_v),
        detector_shape=(rows, cols),
        detector_offset_mm=(offset_u, offset_v),
        gantry_deg=gantry_deg,
    )


def _reference_projection(
    geometry: ProjectionGeometry, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Independent ray/plane intersection: source -> point -> detector plane."""
    g = math.radians(geometry.gantry_deg)
    towards_source = np.array([math.sin(g), 0.0, math.cos(g)])
    u_axis = np.array([math.cos(g), 0.0, -math.sin(g)])
    v_axis = np.array([0.0, -1.0, 0.0])
    source = geometry.sad_mm * towards_source
    piercing_point = -(geometry.sdd_mm - geometry.sad_mm) * towards_source
    u, v = [], []
    for point in points:
        ray = point - source
        t = np.dot(piercing_point - source, towards_source) / np.dot(ray, towards_source)
        hit = source + t * ray
        u.append(np.dot(hit - piercing_point, u_axis))
        v.append(np.dot(hit - piercing_point, v_axis))
    return np.array(u), np.array(v)


# --- presets against CLINICAL.md --------------------------------------------------------------


def test_xvi_unbinned_matches_the_clinical_table() -> None:
    g = xvi_geometry(binning=1)
    assert g.sad_mm == 1000.0
    assert g.sdd_mm == 1536.0
    assert g.detector_shape == (1024, 1024)
    assert g.pixel_pitch_mm == (0.4, 0.4)
    assert g.detector_size_mm == pytest.approx((409.6, 409.6))
    assert g.detector_offset_mm == (0.0, 0.0)
    assert g.pixel_at_isocentre_mm == pytest.approx((0.4 * 1000 / 1536,) * 2)
    assert g.pixel_at_isocentre_mm[0] == pytest.approx(0.26, abs=0.001)


def test_xvi_default_is_binned_two_times() -> None:
    g = xvi_geometry()
    assert g.detector_shape == (512, 512)
    assert g.pixel_pitch_mm == pytest.approx((0.8, 0.8))
    assert g.detector_size_mm == pytest.approx((409.6, 409.6))
    assert g.pixel_at_isocentre_mm == pytest.approx((0.5208, 0.5208), abs=1e-4)


def test_xvi_binned_four_times() -> None:
    g = xvi_geometry(binning=4)
    assert g.detector_shape == (256, 256)
    assert g.pixel_pitch_mm == pytest.approx((1.6, 1.6))


def test_obi_matches_the_clinical_table() -> None:
    g = obi_geometry()
    assert g.sad_mm == 1000.0
    assert g.sdd_mm == 1500.0
    # 1024 columns x 768 rows; detector_shape is (rows, columns) like a numpy image.
    assert g.detector_shape == (768, 1024)
    assert g.pixel_pitch_mm == (0.388, 0.388)
    assert g.detector_size_mm == pytest.approx((1024 * 0.388, 768 * 0.388))
    assert g.pixel_at_isocentre_mm[0] == pytest.approx(0.388 / 1.5)
    assert g.pixel_at_isocentre_mm[0] == pytest.approx(0.26, abs=0.005)


def test_presets_pass_the_gantry_angle() -> None:
    assert xvi_geometry(gantry_deg=37.5).gantry_deg == 37.5
    assert obi_geometry(gantry_deg=-90.0).gantry_deg == -90.0


@pytest.mark.parametrize("binning", [0, 3, -2])
def test_xvi_binning_that_does_not_divide_is_refused(binning: int) -> None:
    with pytest.raises(GeometryError):
        xvi_geometry(binning=binning)


def test_obi_binning_that_does_not_divide_is_refused() -> None:
    with pytest.raises(GeometryError):
        obi_geometry(binning=5)


# --- magnification and isocentre scaling ------------------------------------------------------


def test_magnification_is_sdd_over_sad() -> None:
    assert xvi_geometry().magnification == pytest.approx(1.536)
    assert obi_geometry().magnification == pytest.approx(1.5)


def test_panel_length_scales_to_the_isocentre_plane() -> None:
    g = xvi_geometry()
    assert float(g.isocentre_mm_from_detector_mm(15.36)) == pytest.approx(10.0)
    assert float(g.detector_mm_from_isocentre_mm(10.0)) == pytest.approx(15.36)
    assert float(obi_geometry().isocentre_mm_from_detector_mm(15.0)) == pytest.approx(10.0)


@DETERMINISTIC
@given(values=coordinates)
def test_isocentre_detector_round_trip(values: np.ndarray) -> None:
    g = obi_geometry()
    on_panel = g.detector_mm_from_isocentre_mm(values)
    np.testing.assert_allclose(on_panel, values * 1.5, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g.isocentre_mm_from_detector_mm(on_panel), values, atol=1e-9)
    np.testing.assert_allclose(
        g.detector_mm_from_isocentre_mm(g.isocentre_mm_from_detector_mm(values)), values, atol=1e-9
    )


# --- pixels <-> panel mm ----------------------------------------------------------------------


def test_panel_centre_is_at_the_offset() -> None:
    g = _geometry(rows=768, cols=1024, offset_u=115.0, offset_v=-3.0)
    u, v = g.detector_mm_from_pixel(511.5, 383.5)
    assert float(u) == pytest.approx(115.0)
    assert float(v) == pytest.approx(-3.0)


def test_first_pixel_centre_of_a_non_square_pitch_panel() -> None:
    # column -> u with pitch[0], row -> v with pitch[1]; pixel (0, 0) is a pixel *centre*.
    g = _geometry(pitch_u=0.5, pitch_v=0.25, rows=4, cols=10, offset_u=1.0, offset_v=2.0)
    u, v = g.detector_mm_from_pixel(0, 0)
    assert float(u) == pytest.approx(1.0 - 4.5 * 0.5)
    assert float(v) == pytest.approx(2.0 - 1.5 * 0.25)
    u, v = g.detector_mm_from_pixel(9, 3)
    assert float(u) == pytest.approx(1.0 + 4.5 * 0.5)
    assert float(v) == pytest.approx(2.0 + 1.5 * 0.25)


@DETERMINISTIC
@given(
    pitch_u=pitch_mm,
    pitch_v=pitch_mm,
    rows=panel_pixels,
    cols=panel_pixels,
    offset_u=offset_mm,
    offset_v=offset_mm,
    columns=coordinates,
    pixel_rows=coordinates,
)
def test_pixel_to_detector_mm_round_trip(
    pitch_u: float,
    pitch_v: float,
    rows: int,
    cols: int,
    offset_u: float,
    offset_v: float,
    columns: np.ndarray,
    pixel_rows: np.ndarray,
) -> None:
    g = _geometry(pitch_u, pitch_v, rows, cols, offset_u, offset_v)
    u, v = g.detector_mm_from_pixel(columns, pixel_rows)
    # Independent formula: centre pixel (n - 1) / 2 sits at the offset.
    np.testing.assert_allclose(u, (columns - (cols - 1) / 2) * pitch_u + offset_u, atol=1e-8)
    np.testing.assert_allclose(v, (pixel_rows - (rows - 1) / 2) * pitch_v + offset_v, atol=1e-8)
    column_back, row_back = g.pixel_from_detector_mm(u, v)
    np.testing.assert_allclose(column_back, columns, atol=1e-7)
    np.testing.assert_allclose(row_back, pixel_rows, atol=1e-7)


@DETERMINISTIC
@given(
    pitch_u=pitch_mm,
    pitch_v=pitch_mm,
    rows=panel_pixels,
    cols=panel_pixels,
    offset_u=offset_mm,
    offset_v=offset_mm,
    u_mm=coordinates,
    v_mm=coordinates,
)
def test_detector_mm_to_pixel_round_trip(
    pitch_u: float,
    pitch_v: float,
    rows: int,
    cols: int,
    offset_u: float,
    offset_v: float,
    u_mm: np.ndarray,
    v_mm: np.ndarray,
) -> None:
    g = _geometry(pitch_u, pitch_v, rows, cols, offset_u, offset_v)
    column, row = g.pixel_from_detector_mm(u_mm, v_mm)
    u_back, v_back = g.detector_mm_from_pixel(column, row)
    np.testing.assert_allclose(u_back, u_mm, atol=1e-8)
    np.testing.assert_allclose(v_back, v_mm, atol=1e-8)


def test_binned_pixel_centre_is_the_mean_of_its_unbinned_pixels() -> None:
    full = _geometry(pitch_u=0.4, pitch_v=0.3, rows=8, cols=12, offset_u=5.0, offset_v=-7.0)
    binned = full.binned(2)
    for column, row in [(0, 0), (3, 1), (5, 3)]:
        u_b, v_b = binned.detector_mm_from_pixel(column, row)
        u_f, v_f = full.detector_mm_from_pixel([2 * column, 2 * column + 1], [2 * row, 2 * row + 1])
        assert float(u_b) == pytest.approx(float(np.mean(u_f)))
        assert float(v_b) == pytest.approx(float(np.mean(v_f)))


# --- 3D axes and projection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gantry_deg", "expected"),
    [(0.0, (0.0, 0.0, 1.0)), (90.0, (1.0, 0.0, 0.0)), (180.0, (0.0, 0.0, -1.0)),
     (270.0, (-1.0, 0.0, 0.0))],
)  # fmt: skip
def test_source_position_follows_the_iec_gantry_angle(
    gantry_deg: float, expected: tuple[float, float, float]
) -> None:
    g = xvi_geometry(gantry_deg=gantry_deg)
    np.testing.assert_allclose(g.source_direction, expected, atol=1e-12)
    np.testing.assert_allclose(g.sad_mm * g.source_direction, np.multiply(expected, 1000.0),
                               atol=1e-9)  # fmt: skip


@DETERMINISTIC
@given(gantry_deg=finite_gantry)
def test_detector_axes_are_orthonormal_and_face_away_from_the_source(gantry_deg: float) -> None:
    g = xvi_geometry(gantry_deg=gantry_deg)
    s, u, v = g.source_direction, g.u_axis, g.v_axis
    radians = math.radians(gantry_deg)
    np.testing.assert_allclose(s, [math.sin(radians), 0.0, math.cos(radians)], atol=1e-12)
    np.testing.assert_allclose(u, [math.cos(radians), 0.0, -math.sin(radians)], atol=1e-12)
    np.testing.assert_allclose(v, [0.0, -1.0, 0.0])
    basis = np.vstack((u, v, s))
    np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-12)
    # u x v is the beam direction (source -> detector), so the image is the beam's-eye view.
    np.testing.assert_allclose(np.cross(u, v), -s, atol=1e-12)


@pytest.mark.parametrize("gantry_deg", [0.0, 33.0, 90.0, 180.0, 270.0])
def test_isocentre_projects_to_the_piercing_point(gantry_deg: float) -> None:
    u, v = xvi_geometry(gantry_deg=gantry_deg).project_iec_fixed([0.0, 0.0, 0.0])
    assert u.shape == (1,)
    assert float(u[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(v[0]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("gantry_deg", [0.0, 90.0, 215.0])
def test_superior_point_projects_towards_the_panel_top(gantry_deg: float) -> None:
    # IEC +Y is towards the gantry (superior for head-first); v points to the couch foot.
    u, v = xvi_geometry(gantry_deg=gantry_deg).project_iec_fixed([[0.0, 10.0, 0.0]])
    assert float(v[0]) == pytest.approx(-15.36)
    assert float(u[0]) == pytest.approx(0.0, abs=1e-12)


def test_lateral_point_at_gantry_zero_projects_to_positive_u() -> None:
    u, v = xvi_geometry(gantry_deg=0.0).project_iec_fixed([[10.0, 0.0, 0.0]])
    assert float(u[0]) == pytest.approx(15.36)
    assert float(v[0]) == pytest.approx(0.0, abs=1e-12)


def test_posterior_point_at_gantry_ninety_projects_to_positive_u() -> None:
    u, v = xvi_geometry(gantry_deg=90.0).project_iec_fixed([[0.0, 0.0, -10.0]])
    assert float(u[0]) == pytest.approx(15.36)
    assert float(v[0]) == pytest.approx(0.0, abs=1e-12)
    # ... and +X now points at the source: it lies on the central ray.
    u, _ = xvi_geometry(gantry_deg=90.0).project_iec_fixed([[10.0, 0.0, 0.0]])
    assert float(u[0]) == pytest.approx(0.0, abs=1e-12)


@DETERMINISTIC
@given(
    gantry_deg=finite_gantry,
    shift_mm=st.floats(min_value=-50.0, max_value=50.0),
    lateral_mm=st.floats(min_value=-100.0, max_value=100.0),
    start_y_mm=st.floats(min_value=-100.0, max_value=100.0),
)
def test_motion_in_the_isocentre_plane_is_magnified_by_sdd_over_sad(
    gantry_deg: float, shift_mm: float, lateral_mm: float, start_y_mm: float
) -> None:
    g = xvi_geometry(gantry_deg=gantry_deg)
    start = lateral_mm * g.u_axis + np.array([0.0, start_y_mm, 0.0])
    moved = start + np.array([0.0, shift_mm, 0.0])
    u, v = g.project_iec_fixed(np.vstack((start, moved)))
    assert v[1] - v[0] == pytest.approx(-shift_mm * 1536.0 / 1000.0, abs=1e-9)
    assert u[1] - u[0] == pytest.approx(0.0, abs=1e-9)
    assert u[0] == pytest.approx(lateral_mm * 1.536, abs=1e-9)


@DETERMINISTIC
@given(
    gantry_deg=finite_gantry,
    depth_mm=st.floats(min_value=-600.0, max_value=900.0),
    lateral_mm=st.floats(min_value=-100.0, max_value=100.0),
)
def test_magnification_depends_on_depth(
    gantry_deg: float, depth_mm: float, lateral_mm: float
) -> None:
    g = obi_geometry(gantry_deg=gantry_deg)
    point = depth_mm * g.source_direction + lateral_mm * g.u_axis
    u, _ = g.project_iec_fixed(point)
    assert float(u[0]) == pytest.approx(lateral_mm * 1500.0 / (1000.0 - depth_mm), abs=1e-9)


def test_a_point_nearer_the_source_is_magnified_more() -> None:
    g = xvi_geometry(gantry_deg=0.0)
    # Same 10 mm lateral offset at three heights: above the isocentre is nearer the source.
    u, _ = g.project_iec_fixed([[10.0, 0.0, -100.0], [10.0, 0.0, 0.0], [10.0, 0.0, 100.0]])
    assert u[0] < u[1] < u[2]
    assert float(u[2]) == pytest.approx(10.0 * 1536.0 / 900.0)
    assert float(u[0]) == pytest.approx(10.0 * 1536.0 / 1100.0)


@DETERMINISTIC
@given(
    gantry_deg=finite_gantry,
    points=hnp.arrays(np.float64, (4, 3), elements=st.floats(min_value=-300.0, max_value=300.0)),
)
def test_projection_matches_a_ray_plane_intersection(gantry_deg: float, points: np.ndarray) -> None:
    g = _geometry(gantry_deg=gantry_deg, offset_u=115.0)
    u, v = g.project_iec_fixed(points)
    u_ref, v_ref = _reference_projection(g, points)
    np.testing.assert_allclose(u, u_ref, atol=1e-8)
    np.testing.assert_allclose(v, v_ref, atol=1e-8)


@pytest.mark.parametrize("gantry_deg", [0.0, 90.0, 200.0])
@pytest.mark.parametrize("distance_factor", [1.0, 1.5])
def test_a_point_at_or_behind_the_source_cannot_be_projected(
    gantry_deg: float, distance_factor: float
) -> None:
    g = xvi_geometry(gantry_deg=gantry_deg)
    behind = distance_factor * g.sad_mm * g.source_direction
    with pytest.raises(GeometryError):
        g.project_iec_fixed(np.vstack(([0.0, 0.0, 0.0], behind)))


# --- derived geometries and immutability ------------------------------------------------------


def test_with_gantry_changes_only_the_angle() -> None:
    g = _geometry(pitch_u=0.4, pitch_v=0.5, offset_u=115.0, gantry_deg=10.0)
    turned = g.with_gantry(100)
    assert turned.gantry_deg == 100.0
    assert g.gantry_deg == 10.0
    assert dataclasses.replace(turned, gantry_deg=10.0) == g
    np.testing.assert_allclose(
        turned.source_direction, xvi_geometry(gantry_deg=100).source_direction
    )


def test_binned_keeps_offset_and_distances() -> None:
    g = _geometry(pitch_u=0.4, pitch_v=0.5, rows=16, cols=8, offset_u=115.0, offset_v=-2.0)
    binned = g.binned(4)
    assert binned.detector_shape == (4, 2)
    assert binned.pixel_pitch_mm == pytest.approx((1.6, 2.0))
    assert binned.detector_offset_mm == (115.0, -2.0)
    assert (binned.sad_mm, binned.sdd_mm, binned.gantry_deg) == (g.sad_mm, g.sdd_mm, g.gantry_deg)
    assert binned.detector_size_mm == pytest.approx(g.detector_size_mm)
    assert g.binned(1) == g


@pytest.mark.parametrize("factor", [0, -1, 3, 5])
def test_binning_that_does_not_divide_raises(factor: int) -> None:
    g = _geometry(rows=12, cols=8)
    with pytest.raises(GeometryError) as info:
        g.binned(factor)
    assert info.value.field == "binning"


def test_geometry_is_frozen() -> None:
    g = xvi_geometry()
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.sad_mm = 900.0  # type: ignore[misc]


def test_constructor_normalises_numeric_types() -> None:
    g = ProjectionGeometry(1000, 1536, (np.float32(0.5), 1), (np.int64(4), 6.0), (1, 2))
    assert g.detector_shape == (4, 6)
    assert all(type(n) is int for n in g.detector_shape)
    assert all(type(p) is float for p in g.pixel_pitch_mm)
    assert all(type(o) is float for o in g.detector_offset_mm)


# --- validation -------------------------------------------------------------------------------

_VALID = {
    "sad_mm": 1000.0,
    "sdd_mm": 1536.0,
    "pixel_pitch_mm": (0.4, 0.4),
    "detector_shape": (1024, 1024),
    "detector_offset_mm": (0.0, 0.0),
    "gantry_deg": 0.0,
}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sad_mm": math.nan}, "sad_mm"),
        ({"sad_mm": math.inf}, "sad_mm"),
        ({"sad_mm": 0.0}, "sad_mm"),
        ({"sad_mm": -1000.0}, "sad_mm"),
        ({"sdd_mm": math.nan}, "sdd_mm"),
        ({"sdd_mm": -1536.0}, "sdd_mm"),
        ({"sdd_mm": 999.0}, "sdd_mm"),
        ({"sdd_mm": 900.0}, "sdd_mm"),
        ({"pixel_pitch_mm": (0.0, 0.4)}, "pixel_pitch_mm"),
        ({"pixel_pitch_mm": (0.4, -0.4)}, "pixel_pitch_mm"),
        ({"pixel_pitch_mm": (0.4, math.nan)}, "pixel_pitch_mm"),
        ({"pixel_pitch_mm": (math.inf, 0.4)}, "pixel_pitch_mm"),
        ({"pixel_pitch_mm": (0.4,)}, "pixel_pitch_mm"),
        ({"pixel_pitch_mm": (0.4, 0.4, 0.4)}, "pixel_pitch_mm"),
        ({"detector_shape": (0, 1024)}, "detector_shape"),
        ({"detector_shape": (1024, -1)}, "detector_shape"),
        ({"detector_shape": (1024.5, 1024)}, "detector_shape"),
        ({"detector_shape": (1024,)}, "detector_shape"),
        ({"detector_shape": (2, 2, 2)}, "detector_shape"),
        ({"detector_offset_mm": (math.nan, 0.0)}, None),
        ({"detector_offset_mm": (0.0, math.inf)}, None),
        ({"detector_offset_mm": (0.0,)}, None),
        ({"gantry_deg": math.nan}, "gantry_deg"),
        ({"gantry_deg": math.inf}, "gantry_deg"),
    ],
)
def test_invalid_geometry_raises_geometry_error(changes: dict, field: str | None) -> None:
    with pytest.raises(GeometryError) as info:
        ProjectionGeometry(**{**_VALID, **changes})
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, IgrtError)
    if field is not None:
        assert info.value.field == field


def test_the_valid_baseline_is_accepted() -> None:
    # Guards the parametrised test above: only the changed argument makes it fail.
    assert ProjectionGeometry(**_VALID) == xvi_geometry(binning=1)


def test_image_plane_at_the_isocentre_is_accepted() -> None:
    # An RT Image (e.g. an Eclipse DRR) at RTImageSID == RadiationMachineSAD is a virtual image
    # plane through the isocentre: magnification 1, panel mm are isocentre mm. Only a detector
    # between the source and the isocentre (sdd < sad, refused above) is impossible.
    g = ProjectionGeometry(**{**_VALID, "sdd_mm": 1000.0})
    assert g.magnification == 1.0
    assert g.pixel_at_isocentre_mm == g.pixel_pitch_mm
    u, v = g.with_gantry(90.0).project_iec_fixed([[0.0, 10.0, 0.0], [100.0, 0.0, 20.0]])
    assert float(v[0]) == pytest.approx(-10.0)
    # A point 100 mm nearer the source is magnified by 1000 / 900 even on this plane.
    assert float(u[1]) == pytest.approx(-20.0 * 1000.0 / 900.0)


@pytest.mark.parametrize(
    "changes", [{"pixel_pitch_mm": 0.4}, {"detector_shape": 1024}, {"detector_offset_mm": 0.0}]
)
def test_scalar_where_a_pair_is_needed_raises_geometry_error(changes: dict) -> None:
    with pytest.raises(GeometryError):
        ProjectionGeometry(**{**_VALID, **changes})
