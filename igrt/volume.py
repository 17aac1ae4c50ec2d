"""A 3D image that carries its own geometry in the DICOM patient (LPS) frame.

Array axes follow numpy order ``(k, j, i)`` = (slice, row, column); every geometric
quantity (spacing, origin, index triplets) follows ITK/DICOM order ``(i, j, k)`` = (x, y, z).
Keeping both orders explicit is the cure for pitfall 3 in ``STYLE.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError, InvalidInputError

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["Volume"]

_ORTHONORMAL_TOLERANCE = 1e-4


def _as_vector3(value: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    vector = np.asarray(value, dtype=np.float64)
    if vector.shape != (3,):
        raise GeometryError(f"{name} must have 3 components, got shape {vector.shape}", field=name)
    if not np.all(np.isfinite(vector)):
        raise GeometryError(f"{name} must be finite, got {vector.tolist()}", field=name)
    return vector


def _all_finite(array: npt.NDArray[np.floating[Any]]) -> bool:
    """Whether no voxel is NaN or infinite, without a mask the size of the volume.

    ``min`` and ``max`` propagate NaN, and an infinity is an extreme: both finite means every
    voxel is. ``np.isfinite`` would write a boolean per voxel first (54 MB for a CBCT, about
    0.03 s of page faults in a fresh process).
    """
    if array.size == 0:
        return True
    return bool(np.isfinite(array.min()) and np.isfinite(array.max()))


@dataclass(frozen=True, eq=False, init=False)
class Volume:
    """A scalar volume with spacing, origin and direction cosines.

    Parameters
    ----------
    array : numpy.ndarray
        Voxel values, shape ``(nk, nj, ni)`` (slices, rows, columns). Must be finite.
    spacing_mm : array_like of float
        Voxel spacing along ``(i, j, k)`` in mm, all positive.
    origin_lps_mm : array_like of float
        Position of the *centre* of voxel ``(0, 0, 0)`` in DICOM patient coordinates (LPS), mm.
    direction : array_like of float, optional
        3x3 matrix whose columns are the unit vectors of the ``i``, ``j`` and ``k`` axes in LPS
        (ITK's ``GetDirection()`` reshaped row-major). Identity by default.
    frame_of_reference_uid : str or None, optional
        DICOM Frame of Reference UID shared by images registered to the same patient frame.

    Raises
    ------
    InvalidInputError
        If the array is not 3D or holds NaN or infinity.
    GeometryError
        If spacing is not positive, or the direction matrix is not orthonormal.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((2, 3, 4), np.float32), (1.0, 1.0, 2.5), (0.0, 0.0, 0.0))
    >>> v.lps_from_index([[3, 2, 1]]).tolist()
    [[3.0, 2.0, 2.5]]
    """

    array: npt.NDArray[Any]
    spacing_mm: npt.NDArray[np.float64]
    origin_lps_mm: npt.NDArray[np.float64]
    direction: npt.NDArray[np.float64]
    frame_of_reference_uid: str | None

    def __init__(
        self,
        array: npt.ArrayLike,
        spacing_mm: npt.ArrayLike,
        origin_lps_mm: npt.ArrayLike,
        direction: npt.ArrayLike | None = None,
        frame_of_reference_uid: str | None = None,
    ) -> None:
        array = np.array(array, copy=None)
        if array.ndim != 3:
            raise InvalidInputError(
                f"a volume needs a 3D array, got {array.ndim}D {array.shape}", field="array"
            )
        if min(array.shape) < 1:
            raise InvalidInputError(f"volume has an empty axis: {array.shape}", field="array")
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise InvalidInputError(f"unsupported voxel dtype {array.dtype}", field="array")
        if np.issubdtype(array.dtype, np.floating) and not _all_finite(array):
            raise InvalidInputError("volume holds NaN or infinite voxels", field="array")
        spacing = _as_vector3(spacing_mm, "spacing_mm")
        if np.any(spacing <= 0):
            raise GeometryError(
                f"spacing_mm must be positive, got {spacing.tolist()}", field="spacing_mm"
            )
        origin = _as_vector3(origin_lps_mm, "origin_lps_mm")
        direction = np.array(np.eye(3) if direction is None else direction, dtype=np.float64)
        if direction.shape == (9,):
            direction = direction.reshape(3, 3)
        if direction.shape != (3, 3) or not np.all(np.isfinite(direction)):
            raise GeometryError("direction must be a finite 3x3 matrix", field="direction")
        if not np.allclose(direction.T @ direction, np.eye(3), atol=_ORTHONORMAL_TOLERANCE):
            raise GeometryError(
                "direction cosines must be orthonormal (a rotation or reflection)",
                field="direction",
            )
        # A read-only view: no copy, and the caller's own array keeps its flags.
        array = array.view()
        array.flags.writeable = False
        for value in (spacing, origin, direction):
            value.flags.writeable = False
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_lps_mm", origin)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "frame_of_reference_uid", frame_of_reference_uid)

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along ``(i, j, k)``."""
        nk, nj, ni = self.array.shape
        return (ni, nj, nk)

    @property
    def affine(self) -> npt.NDArray[np.float64]:
        """4x4 matrix mapping homogeneous ``(i, j, k, 1)`` indices to LPS mm (a copy)."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction * self.spacing_mm[np.newaxis, :]
        affine[:3, 3] = self.origin_lps_mm
        return affine

    def lps_from_index(self, index_ijk: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Map continuous voxel indices ``(N, 3)`` in ``(i, j, k)`` order to LPS mm ``(N, 3)``."""
        index = np.atleast_2d(np.asarray(index_ijk, dtype=np.float64))
        return index @ (self.direction * self.spacing_mm).T + self.origin_lps_mm

    def index_from_lps(self, points_lps_mm: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Map LPS points ``(N, 3)`` in mm to continuous ``(i, j, k)`` indices ``(N, 3)``."""
        points = np.atleast_2d(np.asarray(points_lps_mm, dtype=np.float64))
        return ((points - self.origin_lps_mm) @ self.direction) / self.spacing_mm

    @property
    def centre_lps_mm(self) -> npt.NDArray[np.float64]:
        """LPS position of the geometric centre of the voxel grid, mm."""
        centre_index = (np.asarray(self.shape_ijk, dtype=np.float64) - 1.0) / 2.0
        centre: npt.NDArray[np.float64] = self.lps_from_index(centre_index)[0]
        return centre

    def with_array(self, array: npt.NDArray[Any]) -> Volume:
        """Return a volume on the same grid holding ``array`` (same shape required)."""
        if np.shape(array) != self.array.shape:
            raise InvalidInputError(
                f"replacement array has shape {np.shape(array)}, grid needs {self.array.shape}",
                field="array",
            )
        return Volume(
            array, self.spacing_mm, self.origin_lps_mm, self.direction, self.frame_of_reference_uid
        )

    def same_grid(self, other: Volume, *, tolerance_mm: float = 1e-3) -> bool:
        """Whether ``other`` samples exactly the same voxel positions."""
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tolerance_mm)
            and np.allclose(self.origin_lps_mm, other.origin_lps_mm, atol=tolerance_mm)
            and np.allclose(self.direction, other.direction, atol=_ORTHONORMAL_TOLERANCE)
        )

    def to_sitk(self) -> sitk.Image:
        """Convert to a SimpleITK image (copies the voxels)."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(tuple(float(s) for s in self.spacing_mm))
        image.SetOrigin(tuple(float(o) for o in self.origin_lps_mm))
        image.SetDirection(tuple(float(d) for d in self.direction.ravel()))
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, *, frame_of_reference_uid: str | None = None) -> Volume:
        """Build from a 3D SimpleITK image; its geometry is already LPS by ITK convention."""
        import SimpleITK as sitk

        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise InvalidInputError(
                "expected a 3D scalar image, got "
                f"{image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} components"
            )
        return cls(
            sitk.GetArrayFromImage(image),
            spacing_mm=image.GetSpacing(),
            origin_lps_mm=image.GetOrigin(),
            direction=np.asarray(image.GetDirection()).reshape(3, 3),
            frame_of_reference_uid=frame_of_reference_uid,
        )
