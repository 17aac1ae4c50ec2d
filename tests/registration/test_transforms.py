"""Rotation conventions and transform helpers (pitfall 7: Euler order)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from fixtures.cbct import rotation_matrix_lps
from igrt.errors import GeometryError
from registration.transforms import (
    apply_transform,
    euler_deg_from_rotation,
    rigid_about,
    rotation_from_euler_deg,
    rotation_from_vector,
)

angles = st.floats(min_value=-60.0, max_value=60.0, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(angles, angles, angles)
def test_euler_round_trip_and_agreement_with_the_simulator(a: float, b: float, c: float) -> None:
    rotation = rotation_from_euler_deg([a, b, c])
    np.testing.assert_allclose(rotation, rotation_matrix_lps([a, b, c]), atol=1e-12)
    np.testing.assert_allclose(
        rotation, Rotation.from_euler("xyz", [a, b, c], degrees=True).as_matrix(), atol=1e-12
    )
    np.testing.assert_allclose(euler_deg_from_rotation(rotation), [a, b, c], atol=1e-9)


def test_simpleitk_euler_order_differs() -> None:
    import SimpleITK as sitk

    transform = sitk.Euler3DTransform()
    transform.SetRotation(*np.radians([10.0, 20.0, 30.0]))
    sitk_matrix = np.asarray(transform.GetMatrix()).reshape(3, 3)
    assert not np.allclose(sitk_matrix, rotation_from_euler_deg([10.0, 20.0, 30.0]), atol=1e-3)
    # SimpleITK composes Z X Y: R = Rz Rx Ry (about fixed y, then x, then z).
    expected = Rotation.from_euler("yxz", [20.0, 10.0, 30.0], degrees=True).as_matrix()
    np.testing.assert_allclose(sitk_matrix, expected, atol=1e-12)


def test_rotation_vector_and_rigid_about_a_centre() -> None:
    rotation = rotation_from_vector([0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(rotation @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    matrix = rigid_about(rotation, centre_lps_mm=(10.0, 0.0, 0.0), translation_mm=(0.0, 0.0, 5.0))
    # The centre only translates; a point 1 mm along x from it turns to +y.
    np.testing.assert_allclose(apply_transform(matrix, [10.0, 0.0, 0.0]), [10.0, 0.0, 5.0])
    np.testing.assert_allclose(
        apply_transform(matrix, [[11.0, 0.0, 0.0]]), [[10.0, 1.0, 5.0]], atol=1e-12
    )


def test_not_a_rotation_is_refused() -> None:
    with pytest.raises(GeometryError):
        euler_deg_from_rotation(np.diag([1.0, 1.0, -1.0]))
