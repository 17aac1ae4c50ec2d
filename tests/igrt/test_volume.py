"""Tests for igrt.volume: voxel indices <-> LPS mm, axis order and the SimpleITK bridge."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from igrt.errors import GeometryError, InvalidInputError
from igrt.volume import Volume

DETERMINISTIC = settings(derandomize=True, max_examples=60, deadline=None)

angle_rad = st.floats(min_value=-math.pi, max_value=math.pi)
spacing = hnp.arrays(np.float64, 3, elements=st.floats(min_value=0.1, max_value=5.0))
origin = hnp.arrays(np.float64, 3, elements=st.floats(min_value=-500.0, max_value=500.0))
indices = hnp.arrays(np.float64, (6, 3), elements=st.floats(min_value=-20.0, max_value=300.0))
points = hnp.arrays(np.float64, (6, 3), elements=st.floats(min_value=-800.0, max_value=800.0))


def _rotation(alpha: float, beta: float, gamma: float) -> np.ndarray:
    ca, sa, cb, sb, cg, sg = (
        math.cos(alpha), math.sin(alpha), math.cos(beta), math.sin(beta),
        math.cos(gamma), math.sin(gamma),
    )  # fmt: skip
    rz = np.array([[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cg, -sg], [0.0, sg, cg]])
    rotation = rz @ ry @ rx
    # ITK's direction inverse (vnl SVD) returns NaN for subnormal cosines such as sin(1e-311);
    # no scanner writes those, so keep the generated matrices out of that corner.
    rotation[np.abs(rotation) < 1e-200] = 0.0
    return rotation


OBLIQUE = _rotation(0.3, -0.5, 1.1)


def _volume(
    shape: tuple[int, int, int] = (2, 3, 4),
    spacing_mm: tuple[float, float, float] = (0.8, 1.2, 2.5),
    origin_lps_mm: tuple[float, float, float] = (-10.0, 20.0, 30.0),
    direction: np.ndarray = OBLIQUE,
    uid: str | None = "1.2.3",
) -> Volume:
    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(array, spacing_mm, origin_lps_mm, direction, uid)


# --- index <-> LPS ----------------------------------------------------------------------------


@DETERMINISTIC
@given(
    alpha=angle_rad,
    beta=angle_rad,
    gamma=angle_rad,
    reflect=st.booleans(),
    spacing_mm=spacing,
    origin_lps_mm=origin,
    index_ijk=indices,
    points_lps_mm=points,
)
def test_index_lps_round_trip_with_oblique_direction(
    alpha: float,
    beta: float,
    gamma: float,
    reflect: bool,
    spacing_mm: np.ndarray,
    origin_lps_mm: np.ndarray,
    index_ijk: np.ndarray,
    points_lps_mm: np.ndarray,
) -> None:
    direction = _rotation(alpha, beta, gamma)
    if reflect:
        direction[:, 2] *= -1.0
    volume = Volume(np.zeros((2, 2, 2)), spacing_mm, origin_lps_mm, direction)
    lps = volume.lps_from_index(index_ijk)
    # Independent formula: p = origin + sum_n index_n * spacing_n * (column n of direction).
    expected = origin_lps_mm + sum(
        index_ijk[:, [n]] * spacing_mm[n] * direction[:, n] for n in range(3)
    )
    np.testing.assert_allclose(lps, expected, atol=1e-9)
    np.testing.assert_allclose(volume.index_from_lps(lps), index_ijk, atol=1e-8)
    np.testing.assert_allclose(
        volume.lps_from_index(volume.index_from_lps(points_lps_mm)), points_lps_mm, atol=1e-8
    )


def test_direction_columns_are_the_index_axes() -> None:
    # i runs posterior (+y), j runs superior (+z), k runs left (+x).
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    volume = Volume(np.zeros((2, 3, 4)), (0.5, 2.0, 3.0), (1.0, 2.0, 3.0), direction)
    np.testing.assert_allclose(volume.lps_from_index([1, 0, 0]), [[1.0, 2.5, 3.0]])
    np.testing.assert_allclose(volume.lps_from_index([0, 1, 0]), [[1.0, 2.0, 5.0]])
    np.testing.assert_allclose(volume.lps_from_index([0, 0, 1]), [[4.0, 2.0, 3.0]])
    np.testing.assert_allclose(volume.index_from_lps([4.0, 2.5, 5.0]), [[1.0, 1.0, 1.0]])


def test_flat_itk_direction_is_read_row_major() -> None:
    direction = OBLIQUE
    flat = Volume(np.zeros((2, 2, 2)), (1, 1, 1), (0, 0, 0), direction.ravel())
    np.testing.assert_array_equal(flat.direction, direction)


def test_affine_matches_lps_from_index_and_is_a_copy() -> None:
    volume = _volume()
    affine = volume.affine
    assert affine.shape == (4, 4)
    np.testing.assert_array_equal(affine[3], [0.0, 0.0, 0.0, 1.0])
    index = np.array([[0.0, 0.0, 0.0], [3.0, 2.0, 1.0], [-0.5, 1.25, 7.0]])
    homogeneous = np.hstack((index, np.ones((3, 1))))
    np.testing.assert_allclose((affine @ homogeneous.T).T[:, :3], volume.lps_from_index(index))
    affine[:3, 3] = 999.0
    affine[0, 0] = 999.0
    np.testing.assert_allclose(volume.affine[:3, 3], [-10.0, 20.0, 30.0])
    np.testing.assert_allclose(volume.lps_from_index([0, 0, 0]), [[-10.0, 20.0, 30.0]])
    assert volume.affine[0, 0] != 999.0


def test_origin_is_the_centre_of_the_first_voxel() -> None:
    volume = _volume(spacing_mm=(1.0, 2.0, 4.0), origin_lps_mm=(5.0, 6.0, 7.0))
    np.testing.assert_allclose(volume.lps_from_index([0, 0, 0]), [[5.0, 6.0, 7.0]])
    corner = volume.origin_lps_mm - OBLIQUE @ (0.5 * np.array([1.0, 2.0, 4.0]))
    np.testing.assert_allclose(volume.index_from_lps(corner), [[-0.5, -0.5, -0.5]], atol=1e-12)
    # SimpleITK shares the convention: its origin is the first voxel's centre too.
    image = volume.to_sitk()
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((0, 0, 0)), [5.0, 6.0, 7.0])


def test_centre_of_the_grid() -> None:
    volume = Volume(np.zeros((2, 3, 4)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    np.testing.assert_allclose(volume.centre_lps_mm, [1.5, 1.0, 0.5])


# --- axis order -------------------------------------------------------------------------------


def test_numpy_kji_against_geometric_ijk() -> None:
    volume = _volume(shape=(2, 3, 4))
    assert volume.array.shape == (2, 3, 4)
    assert volume.shape_ijk == (4, 3, 2)
    image = volume.to_sitk()
    assert image.GetSize() == (4, 3, 2)
    for i, j, k in [(3, 0, 0), (0, 2, 1), (3, 2, 1), (1, 1, 0)]:
        assert image.GetPixel(i, j, k) == volume.array[k, j, i]
        np.testing.assert_allclose(
            image.TransformIndexToPhysicalPoint((i, j, k)), volume.lps_from_index([i, j, k])[0]
        )


# --- SimpleITK bridge -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8])
def test_sitk_round_trip_preserves_everything(dtype: type) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 50).astype(dtype)
    volume = Volume(array, (0.8, 1.2, 2.5), (-10.0, 20.0, 30.0), OBLIQUE, "1.2.3")
    image = volume.to_sitk()
    np.testing.assert_allclose(image.GetSpacing(), (0.8, 1.2, 2.5))
    np.testing.assert_allclose(image.GetOrigin(), (-10.0, 20.0, 30.0))
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), OBLIQUE, atol=1e-12)
    back = Volume.from_sitk(image, frame_of_reference_uid="1.2.3")
    assert back.array.dtype == dtype
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.spacing_mm, volume.spacing_mm)
    np.testing.assert_allclose(back.origin_lps_mm, volume.origin_lps_mm)
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-12)
    assert back.frame_of_reference_uid == "1.2.3"
    assert back.same_grid(volume)


def test_to_sitk_copies_the_voxels() -> None:
    volume = _volume()
    image = volume.to_sitk()
    image.SetPixel(0, 0, 0, 1234.0)
    assert volume.array[0, 0, 0] == 0.0


@DETERMINISTIC
@given(
    alpha=angle_rad,
    beta=angle_rad,
    gamma=angle_rad,
    spacing_mm=spacing,
    origin_lps_mm=origin,
    points_lps_mm=points,
)
def test_physical_point_maps_to_the_same_index_as_simpleitk(
    alpha: float,
    beta: float,
    gamma: float,
    spacing_mm: np.ndarray,
    origin_lps_mm: np.ndarray,
    points_lps_mm: np.ndarray,
) -> None:
    volume = Volume(np.zeros((2, 3, 4)), spacing_mm, origin_lps_mm, _rotation(alpha, beta, gamma))
    image = volume.to_sitk()
    ours = volume.index_from_lps(points_lps_mm)
    for point, index in zip(points_lps_mm, ours, strict=True):
        itk_index = image.TransformPhysicalPointToContinuousIndex(tuple(float(c) for c in point))
        np.testing.assert_allclose(index, itk_index, atol=1e-6)
        np.testing.assert_allclose(
            image.TransformContinuousIndexToPhysicalPoint(tuple(float(c) for c in index)),
            point,
            atol=1e-6,
        )


def test_from_sitk_refuses_a_2d_image() -> None:
    with pytest.raises(InvalidInputError):
        Volume.from_sitk(sitk.Image(4, 3, sitk.sitkFloat32))


def test_from_sitk_refuses_a_vector_image() -> None:
    with pytest.raises(InvalidInputError):
        Volume.from_sitk(sitk.Image([4, 3, 2], sitk.sitkVectorFloat32, 3))


# --- immutability, with_array, same_grid ------------------------------------------------------


def test_volume_is_immutable() -> None:
    volume = _volume()
    for attribute in ("array", "spacing_mm", "origin_lps_mm", "direction"):
        value = getattr(volume, attribute)
        with pytest.raises(ValueError, match="read-only"):
            value.flat[0] = 7.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        volume.spacing_mm = np.ones(3)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        volume.frame_of_reference_uid = "9.9"  # type: ignore[misc]


def test_with_array_keeps_the_grid() -> None:
    volume = _volume()
    replaced = volume.with_array(np.full((2, 3, 4), 5, np.int16))
    assert replaced.array.dtype == np.int16
    assert np.all(replaced.array == 5)
    assert replaced.same_grid(volume)
    assert replaced.frame_of_reference_uid == "1.2.3"
    np.testing.assert_array_equal(replaced.affine, volume.affine)
    assert volume.array[0, 0, 1] == 1.0


@pytest.mark.parametrize("shape", [(4, 3, 2), (2, 3), (2, 3, 4, 1)])
def test_with_array_refuses_another_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInputError):
        _volume().with_array(np.zeros(shape))


def test_same_grid() -> None:
    volume = _volume()
    assert volume.same_grid(_volume())
    assert volume.same_grid(_volume(origin_lps_mm=(-10.0, 20.0, 30.0005)))
    assert not volume.same_grid(_volume(origin_lps_mm=(-10.0, 20.0, 30.01)))
    assert volume.same_grid(_volume(origin_lps_mm=(-10.0, 20.0, 30.01)), tolerance_mm=0.02)
    assert not volume.same_grid(_volume(spacing_mm=(0.8, 1.2, 2.6)))
    assert not volume.same_grid(_volume(shape=(2, 4, 3)))
    assert not volume.same_grid(_volume(direction=_rotation(0.3, -0.5, 1.2)))
    assert not volume.same_grid(_volume(direction=np.eye(3)))


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((3, 4)),
        np.zeros((2, 3, 4, 1)),
        np.zeros((0, 3, 4)),
        np.full((2, 3, 4), np.nan),
        np.where(np.arange(24).reshape(2, 3, 4) == 5, np.inf, 0.0),
        # One bad voxel among finite ones, in float32 (a CBCT's type) and at either extreme.
        np.where(np.arange(24).reshape(2, 3, 4) == 7, np.nan, 1.0).astype(np.float32),
        np.where(np.arange(24).reshape(2, 3, 4) == 23, -np.inf, 1.0).astype(np.float32),
        np.zeros((2, 3, 4), dtype=bool),
        np.zeros((2, 3, 4), dtype=complex),
    ],
    ids=["2d", "4d", "empty", "nan", "inf", "one nan", "minus inf", "bool", "complex"],
)
def test_bad_arrays_raise_invalid_input(array: np.ndarray) -> None:
    with pytest.raises(InvalidInputError) as info:
        Volume(array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    assert not isinstance(info.value, GeometryError)
    assert isinstance(info.value, ValueError)
    assert info.value.field == "array"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"spacing_mm": (1.0, 0.0, 1.0)}, "spacing_mm"),
        ({"spacing_mm": (1.0, 1.0, -2.0)}, "spacing_mm"),
        ({"spacing_mm": (1.0, np.nan, 1.0)}, "spacing_mm"),
        ({"spacing_mm": (1.0, 1.0)}, "spacing_mm"),
        ({"spacing_mm": (1.0, 1.0, 1.0, 1.0)}, "spacing_mm"),
        ({"origin_lps_mm": (0.0, 0.0)}, "origin_lps_mm"),
        ({"origin_lps_mm": (0.0, np.inf, 0.0)}, "origin_lps_mm"),
        ({"direction": np.diag([1.0, 1.0, 2.0])}, "direction"),
        ({"direction": np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])},
         "direction"),
        ({"direction": np.eye(3) * (1 + 1e-3)}, "direction"),
        ({"direction": np.zeros((3, 3))}, "direction"),
        ({"direction": np.eye(2)}, "direction"),
        ({"direction": np.ones(8)}, "direction"),
        ({"direction": np.full((3, 3), np.nan)}, "direction"),
    ],
)  # fmt: skip
def test_bad_geometry_raises_geometry_error(changes: dict, field: str) -> None:
    arguments = {"spacing_mm": (1.0, 1.0, 1.0), "origin_lps_mm": (0.0, 0.0, 0.0)} | changes
    with pytest.raises(GeometryError) as info:
        Volume(np.zeros((2, 3, 4)), **arguments)
    assert isinstance(info.value, ValueError)
    assert info.value.field == field


def test_nearly_orthonormal_direction_from_a_dicom_header_is_accepted() -> None:
    rounded = np.round(OBLIQUE, 6)  # DICOM stores direction cosines with limited precision
    volume = Volume(np.zeros((2, 3, 4)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), rounded)
    np.testing.assert_array_equal(volume.direction, rounded)


def test_integer_voxels_need_no_finiteness_check() -> None:
    volume = Volume(np.full((2, 3, 4), -1024, np.int16), (1, 1, 1), (0, 0, 0))
    assert volume.array.dtype == np.int16
