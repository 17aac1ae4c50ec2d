"""Rigid transforms as 4x4 matrices named by direction, and the rotation conventions used.

Naming (``STYLE.md`` pitfall 2): a matrix ``b_from_a`` maps homogeneous points of frame or
image ``a`` to ``b``: ``p_b = b_from_a @ p_a``. ``cbct_from_ct`` maps a planning-CT anatomical
point (LPS mm) to where that point lies in the CBCT (LPS mm, the same planning frame of
reference); ITK's resampling of the CBCT onto the CT grid needs that same map, because ITK
transforms map *output* (fixed) points to *input* (moving) points.

Rotation convention (pitfall 7), shared with :mod:`fixtures.cbct`: ``(a_x, a_y, a_z)`` in
degrees are active, right-handed rotations of the anatomy about the LPS x, y and z axes, applied
x first, then y, then z, about fixed axes: ``R = Rz(a_z) @ Ry(a_y) @ Rx(a_x)`` (scipy's
``Rotation.from_euler("xyz", ...)``). SimpleITK's ``Euler3DTransform`` composes Z·X·Y instead;
:func:`euler_deg_from_rotation` never reads SimpleITK's angles.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError

__all__ = [
    "apply_transform",
    "euler_deg_from_rotation",
    "rigid_about",
    "rotation_from_euler_deg",
    "rotation_from_vector",
]

FloatArray = npt.NDArray[np.float64]


def rotation_from_euler_deg(angles_deg: npt.ArrayLike) -> FloatArray:
    """``R = Rz(a_z) @ Ry(a_y) @ Rx(a_x)`` from ``(a_x, a_y, a_z)`` in degrees (see module).

    Examples
    --------
    >>> np.round(rotation_from_euler_deg([0.0, 0.0, 90.0]) @ [1.0, 0.0, 0.0], 6).tolist()
    [0.0, 1.0, 0.0]
    """
    a_x, a_y, a_z = np.radians(np.asarray(angles_deg, dtype=np.float64))
    cx, sx, cy, sy, cz, sz = (
        math.cos(a_x),
        math.sin(a_x),
        math.cos(a_y),
        math.sin(a_y),
        math.cos(a_z),
        math.sin(a_z),
    )
    r_x = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    r_y = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    r_z = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    rotation: FloatArray = r_z @ r_y @ r_x
    return rotation


def euler_deg_from_rotation(rotation: npt.ArrayLike) -> FloatArray:
    """Inverse of :func:`rotation_from_euler_deg` for ``|a_y| < 90`` degrees.

    Raises
    ------
    GeometryError
        If ``rotation`` is not a 3x3 proper rotation.

    Examples
    --------
    >>> np.round(euler_deg_from_rotation(rotation_from_euler_deg([1.0, -2.0, 3.0])), 9).tolist()
    [1.0, -2.0, 3.0]
    """
    matrix = np.asarray(rotation, dtype=np.float64)
    if (
        matrix.shape != (3, 3)
        or not np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-6)
        or np.linalg.det(matrix) < 0
    ):
        raise GeometryError("expected a 3x3 proper rotation matrix", field="rotation")
    # R = Rz Ry Rx: R[2,0] = -sin(a_y), R[2,1] = cos(a_y) sin(a_x), R[1,0] = sin(a_z) cos(a_y)
    a_y = math.asin(float(np.clip(-matrix[2, 0], -1.0, 1.0)))
    a_x = math.atan2(float(matrix[2, 1]), float(matrix[2, 2]))
    a_z = math.atan2(float(matrix[1, 0]), float(matrix[0, 0]))
    angles: FloatArray = np.degrees(np.array([a_x, a_y, a_z])) + 0.0
    return angles


def rotation_from_vector(rotation_vector_rad: npt.ArrayLike) -> FloatArray:
    """Rotation matrix of a rotation vector (axis times angle, radians; Rodrigues' formula)."""
    vector = np.asarray(rotation_vector_rad, dtype=np.float64)
    angle = float(np.linalg.norm(vector))
    if angle < 1e-15:
        return np.eye(3)
    axis = vector / angle
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    rotation: FloatArray = (
        np.eye(3) + math.sin(angle) * cross + (1.0 - math.cos(angle)) * (cross @ cross)
    )
    return rotation


def rigid_about(
    rotation: npt.ArrayLike, centre_lps_mm: npt.ArrayLike, translation_mm: npt.ArrayLike
) -> FloatArray:
    """4x4 matrix of ``p -> R (p - c) + c + t``: rotate about ``c``, then translate by ``t``."""
    matrix = np.eye(4)
    r = np.asarray(rotation, dtype=np.float64)
    c = np.asarray(centre_lps_mm, dtype=np.float64)
    matrix[:3, :3] = r
    matrix[:3, 3] = c + np.asarray(translation_mm, dtype=np.float64) - r @ c
    return matrix


def apply_transform(matrix: npt.ArrayLike, points_lps_mm: npt.ArrayLike) -> FloatArray:
    """Apply a 4x4 matrix to a point ``(3,)`` or points ``(N, 3)``."""
    m = np.asarray(matrix, dtype=np.float64)
    points = np.asarray(points_lps_mm, dtype=np.float64)
    # Elementwise rather than a BLAS product: see registration._grid.map_points.
    mapped: FloatArray = (
        points[..., 0:1] * m[:3, 0] + points[..., 1:2] * m[:3, 1] + points[..., 2:3] * m[:3, 2]
    ) + m[:3, 3]
    return mapped
