"""Private voxel-grid helpers: cropping, resampling, block averaging, trilinear sampling.

Two kinds of grid appear in the registration:

- :class:`IsoGrid`: an isotropic, identity-direction grid laid on the clip box (the planning
  CT's template lives on it; the metric's domain).
- :class:`SampledImage`: a crop of a volume on its *own* grid (any spacing and direction
  cosines), holding NaN where there is no valid data (outside the field of view, padding). It is
  sampled at arbitrary LPS points by trilinear interpolation; a NaN anywhere in the eight
  neighbours, or a point outside the crop, gives NaN, so invalid data never enters the metric.

Array axes are numpy ``(k, j, i)``; every geometric triplet is ``(x, y, z)`` = ``(i, j, k)``
(``STYLE.md`` pitfall 3). Block averaging by ``f`` voxels moves the voxel centre by
``(f - 1) / 2`` voxels (pitfall 6: origins are voxel centres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from igrt.volume import Volume
from registration.errors import foreign_errors_mapped

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

CT_PADDING_BELOW_HU = -1050.0
"""Planning-CT voxels below this value are padding (-2048, -3024 ...), not air, and are invalid."""


def map_points(points: FloatArray, linear: FloatArray, offset: FloatArray) -> FloatArray:
    """``points @ linear.T + offset`` for ``(N, 3)`` points, without BLAS.

    OpenBLAS parallelises even a ``(N, 3) @ (3, 3)`` product and its spinning threads can slow
    it a hundredfold on a busy two-core machine; nine vectorised multiply-adds are fast,
    single-threaded and bit-reproducible.
    """
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    mapped = np.empty_like(points, dtype=np.float64)
    for row in range(3):
        mapped[:, row] = x * linear[row, 0] + y * linear[row, 1] + z * linear[row, 2] + offset[row]
    return mapped


def map_points_rows(points: FloatArray, linear: FloatArray, offset: FloatArray) -> FloatArray:
    """``(points @ linear.T + offset).T``: the mapped points as ``(3, N)`` rows, without BLAS."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    mapped = np.empty((3, points.shape[0]), dtype=np.float64)
    for row in range(3):
        mapped[row] = x * linear[row, 0] + y * linear[row, 1] + z * linear[row, 2] + offset[row]
    return mapped


def gram(columns: FloatArray) -> FloatArray:
    """``columns.T @ columns`` for a tall ``(N, m)`` array, single-threaded (see map_points)."""
    product: FloatArray = np.einsum("ni,nj->ij", columns, columns)
    return product


def project(columns: FloatArray, values: FloatArray) -> FloatArray:
    """``columns.T @ values`` for a tall ``(N, m)`` array and ``(N,)`` values, single-threaded."""
    product: FloatArray = np.einsum("ni,n->i", columns, values)
    return product


def inner(a: FloatArray, b: FloatArray) -> float:
    """``a @ b`` for two long vectors, single-threaded."""
    return float(np.einsum("n,n->", a, b))


@dataclass(frozen=True, eq=False)
class IsoGrid:
    """An isotropic, identity-direction voxel grid in LPS.

    Parameters
    ----------
    origin_lps_mm : numpy.ndarray
        Centre of voxel ``(0, 0, 0)``, LPS mm.
    spacing_mm : float
        Voxel edge, mm.
    shape_kji : tuple of int
        Number of voxels along ``(k, j, i)`` (numpy order).
    """

    origin_lps_mm: FloatArray
    spacing_mm: float
    shape_kji: tuple[int, int, int]

    @classmethod
    def covering(
        cls, lower_lps_mm: FloatArray, upper_lps_mm: FloatArray, spacing_mm: float, multiple: int
    ) -> IsoGrid:
        """Voxel centres from ``lower`` on, a multiple of ``multiple`` voxels along each axis."""
        extent = np.asarray(upper_lps_mm, np.float64) - np.asarray(lower_lps_mm, np.float64)
        counts = [
            max(multiple, multiple * math.ceil(float(e) / spacing_mm / multiple)) for e in extent
        ]
        return cls(
            np.asarray(lower_lps_mm, np.float64).copy(),
            float(spacing_mm),
            (counts[2], counts[1], counts[0]),
        )

    @property
    def size_voxels(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape_kji))

    @property
    def upper_lps_mm(self) -> FloatArray:
        """Centre of the last voxel, LPS mm."""
        upper: FloatArray = (
            self.origin_lps_mm
            + (np.asarray(self.shape_kji[::-1], np.float64) - 1.0) * self.spacing_mm
        )
        return upper

    def coarsened(self, factor: int) -> IsoGrid:
        """The grid of ``factor``-cubed block means of this grid's voxels."""
        shape = (
            self.shape_kji[0] // factor,
            self.shape_kji[1] // factor,
            self.shape_kji[2] // factor,
        )
        origin = self.origin_lps_mm + (factor - 1) / 2.0 * self.spacing_mm
        return IsoGrid(origin, self.spacing_mm * factor, shape)

    def expanded(self, margin_voxels: int) -> IsoGrid:
        """The same lattice grown by ``margin_voxels`` on every face."""
        shape = (
            self.shape_kji[0] + 2 * margin_voxels,
            self.shape_kji[1] + 2 * margin_voxels,
            self.shape_kji[2] + 2 * margin_voxels,
        )
        return IsoGrid(self.origin_lps_mm - margin_voxels * self.spacing_mm, self.spacing_mm, shape)

    def points_lps_mm(self, flat_indices: npt.NDArray[np.intp] | None = None) -> FloatArray:
        """LPS centres ``(N, 3)`` of all voxels (C order) or of the given flat indices."""
        if flat_indices is None:
            flat_indices = np.arange(self.size_voxels)
        k, j, i = np.unravel_index(flat_indices, self.shape_kji)
        points: FloatArray = (
            np.stack([i, j, k], axis=1).astype(np.float64) * self.spacing_mm + self.origin_lps_mm
        )
        return points

    def reference_image(self) -> sitk.Image:
        """An empty SimpleITK image with this geometry (a resampling reference)."""
        image = sitk.Image([int(n) for n in self.shape_kji[::-1]], sitk.sitkFloat32)
        image.SetOrigin(tuple(float(v) for v in self.origin_lps_mm))
        image.SetSpacing((self.spacing_mm,) * 3)
        return image


@dataclass(frozen=True, eq=False)
class SampledImage:
    """A crop of a volume on its own grid; NaN where the data is invalid.

    Parameters
    ----------
    array : numpy.ndarray
        float32 ``(k, j, i)`` values; NaN marks invalid voxels.
    origin_lps_mm : numpy.ndarray
        Centre of voxel ``(0, 0, 0)`` of the crop, LPS mm.
    spacing_mm : numpy.ndarray
        Voxel spacing along ``(i, j, k)``, mm.
    direction : numpy.ndarray
        3x3 direction cosines (columns: the ``i``, ``j``, ``k`` axes in LPS).
    """

    array: Float32Array
    origin_lps_mm: FloatArray
    spacing_mm: FloatArray
    direction: FloatArray

    def index_from_lps(self, points_lps_mm: FloatArray) -> FloatArray:
        """Continuous ``(i, j, k)`` indices ``(N, 3)`` of LPS points ``(N, 3)``."""
        linear = self.direction.T / self.spacing_mm[:, np.newaxis]
        return map_points(points_lps_mm, linear, -(linear @ self.origin_lps_mm))

    def sample(self, points_lps_mm: FloatArray) -> FloatArray:
        """Trilinear values at LPS points ``(N, 3)``; NaN outside the crop or near invalid data."""
        return trilinear(self.array, self.index_from_lps(points_lps_mm))

    def sample_transformed(self, points_lps_mm: FloatArray, transform: FloatArray) -> FloatArray:
        """Trilinear values at ``transform`` (4x4, LPS mm) applied to LPS points ``(N, 3)``.

        The transform and this crop's LPS-to-index map are composed first, so every point is
        mapped once, straight to the ``(k, j, i)`` rows the interpolation reads (the
        Gauss-Newton iterations sample about 2e5 points at every step).
        """
        linear = self.direction.T / self.spacing_mm[:, np.newaxis]
        index_linear = linear @ transform[:3, :3]
        index_offset = linear @ (transform[:3, 3] - self.origin_lps_mm)
        # Rows in (k, j, i) order: map_coordinates' coordinate order.
        return trilinear_kji(
            self.array, map_points_rows(points_lps_mm, index_linear[::-1], index_offset[::-1])
        )

    def coarsened(self, target_spacing_mm: float) -> SampledImage:
        """Block means approaching ``target_spacing_mm`` along each axis (NaN propagates)."""
        factors = tuple(
            max(1, round(target_spacing_mm / float(s))) for s in self.spacing_mm[::-1]
        )  # (k, j, i)
        if factors == (1, 1, 1):
            return self
        array = block_mean(self.array, (factors[0], factors[1], factors[2]))
        factors_ijk = np.asarray(factors[::-1], np.float64)
        origin = self.origin_lps_mm + self.direction @ ((factors_ijk - 1.0) / 2.0 * self.spacing_mm)
        return SampledImage(array, origin, self.spacing_mm * factors_ijk, self.direction)

    def valid_fraction(self) -> float:
        """Fraction of voxels holding data."""
        return float(np.mean(~np.isnan(self.array)))


def block_mean(array: Float32Array, factors: tuple[int, int, int]) -> Float32Array:
    """Mean over ``factors`` blocks along ``(k, j, i)``; trailing partial blocks are dropped.

    Summed one axis at a time from strided slices (much faster than a 6D reshape mean); NaN
    propagates to every block it touches.
    """
    result = array
    for axis, factor in enumerate(factors):
        if factor == 1:
            continue
        n = result.shape[axis] // factor
        parts = []
        for offset in range(factor):
            index = [slice(None)] * 3
            index[axis] = slice(offset, offset + n * factor, factor)
            parts.append(result[tuple(index)])
        total = parts[0].astype(np.float32, copy=True)
        for part in parts[1:]:
            total += part
        result = total
    mean: Float32Array = (result / np.float32(factors[0] * factors[1] * factors[2])).astype(
        np.float32, copy=False
    )
    return mean


def coarsened_volume(
    volume: Volume,
    target_spacing_mm: float,
    *,
    padding_value: float | None = None,
    invalid_below: float | None = None,
) -> SampledImage:
    """Block means of a whole volume approaching ``target_spacing_mm``, NaN where mostly invalid.

    The same values as ``crop_volume`` of the whole volume followed by
    :meth:`SampledImage.coarsened`, with blocks whose voxels are more than half invalid
    (``padding_value``, below ``invalid_below``) set to NaN; but computed one slab of
    ``k`` blocks at a time from the stored voxels (int16 for most CTs), so that no float32
    copy or mask of the whole volume is made (a 512 x 512 x 141 CT is 150 MB as float32, and
    writing it took most of the planning CT's preparation).
    """
    spacing = np.asarray(volume.spacing_mm, np.float64)
    fk, fj, fi = (max(1, round(target_spacing_mm / float(s))) for s in spacing[::-1])
    factors = (fk, fj, fi)
    source = volume.array
    counts = tuple(source.shape[axis] // factors[axis] for axis in range(3))
    if min(counts) < 1:
        raise ValueError("the volume is smaller than one block")
    array = np.empty(counts, np.float32)
    # One slab of blocks at a time: it stays in cache (chunks of 8 slices took twice as long).
    for first in range(counts[0]):
        last = first + 1
        slab = np.asarray(source[first * fk : last * fk], dtype=np.float32)
        means = block_mean(slab, factors)
        if padding_value is not None or invalid_below is not None:
            invalid = np.zeros(slab.shape, bool)
            if padding_value is not None:
                invalid |= slab == np.float32(padding_value)
            if invalid_below is not None:
                invalid |= slab < np.float32(invalid_below)
            means[block_mean(invalid.astype(np.float32), factors) > 0.5] = np.nan
        array[first:last] = means
    factors_ijk = np.asarray(factors[::-1], np.float64)
    direction = np.asarray(volume.direction, np.float64)
    origin = np.asarray(volume.origin_lps_mm, np.float64) + direction @ (
        (factors_ijk - 1.0) / 2.0 * spacing
    )
    return SampledImage(array, origin, spacing * factors_ijk, direction.copy())


def trilinear(array: Float32Array, index_ijk: FloatArray) -> FloatArray:
    """Trilinear interpolation of ``array`` ``(k, j, i)`` at continuous indices ``(N, 3)``.

    Points whose eight neighbours are not all inside the array get NaN, as do points next to a
    NaN voxel (NaN propagates through the interpolation weights).
    """
    return trilinear_kji(array, index_ijk[:, ::-1].T)


def trilinear_kji(array: Float32Array, index_kji: FloatArray) -> FloatArray:
    """:func:`trilinear` at continuous indices given as ``(3, N)`` rows ``(k, j, i)``."""
    values: FloatArray = ndimage.map_coordinates(
        array,
        index_kji,
        output=np.float64,
        order=1,
        mode="constant",
        cval=np.nan,
        prefilter=False,
    )
    return values


def crop_volume(
    volume: Volume,
    lower_lps_mm: FloatArray,
    upper_lps_mm: FloatArray,
    *,
    margin_voxels: int = 1,
    padding_value: float | None = None,
    invalid_below: float | None = None,
) -> SampledImage | None:
    """The voxels of ``volume`` covering an LPS box (plus a margin), as float32 with NaN.

    Parameters
    ----------
    volume : igrt.volume.Volume
        Source volume (any direction cosines).
    lower_lps_mm, upper_lps_mm : numpy.ndarray
        The LPS box to cover, mm.
    margin_voxels : int, optional
        Extra voxels on each side of the covering index range.
    padding_value : float, optional
        Voxels exactly equal to this value are invalid (a CBCT's outside-field-of-view fill).
    invalid_below : float, optional
        Voxels below this value are invalid (a planning CT's padding).

    Returns
    -------
    SampledImage or None
        The crop (a copy), or ``None`` if the box misses the volume.
    """
    corners = np.array(
        [
            [x, y, z]
            for x in (lower_lps_mm[0], upper_lps_mm[0])
            for y in (lower_lps_mm[1], upper_lps_mm[1])
            for z in (lower_lps_mm[2], upper_lps_mm[2])
        ]
    )
    index = volume.index_from_lps(corners)
    start = np.floor(index.min(axis=0)).astype(np.int64) - margin_voxels
    stop = np.ceil(index.max(axis=0)).astype(np.int64) + margin_voxels + 1
    start = np.maximum(start, 0)
    stop = np.minimum(stop, np.asarray(volume.shape_ijk, np.int64))
    if np.any(stop - start < 2):
        return None
    array = np.array(
        volume.array[start[2] : stop[2], start[1] : stop[1], start[0] : stop[0]],
        dtype=np.float32,
        copy=True,
    )
    if padding_value is not None:
        array[array == np.float32(padding_value)] = np.nan
    if invalid_below is not None:
        array[array < np.float32(invalid_below)] = np.nan
    origin: FloatArray = volume.lps_from_index(start[np.newaxis].astype(np.float64))[0]
    return SampledImage(array, origin, volume.spacing_mm.copy(), volume.direction.copy())


def resample_onto(image: SampledImage, grid: IsoGrid, *, threads: int) -> Float32Array:
    """Linear resampling of a crop onto an iso grid; NaN outside the crop or near invalid data."""
    source = sitk.GetImageFromArray(image.array)
    source.SetOrigin(tuple(float(v) for v in image.origin_lps_mm))
    source.SetSpacing(tuple(float(v) for v in image.spacing_mm))
    source.SetDirection(tuple(float(v) for v in image.direction.ravel()))
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(grid.reference_image())
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(float("nan"))
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    resampler.SetNumberOfThreads(threads)
    with foreign_errors_mapped("resampling onto the registration grid"):
        output = resampler.Execute(source)
    values: Float32Array = sitk.GetArrayFromImage(output)
    return values


def nan_gaussian(values: FloatArray, sigma_voxels: float) -> FloatArray:
    """Gaussian smoothing that keeps NaN where the input had NaN (normalised convolution)."""
    valid = ~np.isnan(values)
    if valid.all():
        smoothed: FloatArray = ndimage.gaussian_filter(values, sigma_voxels)
        return smoothed
    filled = np.where(valid, values, 0.0)
    numerator = ndimage.gaussian_filter(filled, sigma_voxels)
    weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma_voxels)
    with np.errstate(invalid="ignore", divide="ignore"):
        result: FloatArray = np.where(valid & (weight > 0.5), numerator / weight, np.nan)
    return result


def padding_value_of(volume: Volume) -> float | None:
    """The fill value outside a CBCT's reconstructed field of view, if there is one.

    A reconstruction writes one constant outside its cylinder, and the corners of every axial
    slice lie outside the cylinder. The value is taken as padding when all eight corner voxels
    hold the same value, that value is at most -500 (air or lower), and at least 1 % of the
    voxels hold exactly it (noise makes exact repeats inside the field of view rare). A CBCT
    stored uncalibrated (air near 0, no negative HU) fills with its air or its minimum value:
    such a value is also taken when at least 10 % of the voxels hold it exactly (the corners
    outside an inscribed cylinder are 21 % of a grid) and at most 5 % lie below it (air noise).
    Missing the fill would put the field-of-view edge, which does not move with the anatomy,
    into the metric. A volume without such a fill keeps all its voxels.
    """
    array = volume.array
    corners = np.array(
        [array[k, j, i] for k in (0, -1) for j in (0, -1) for i in (0, -1)], dtype=np.float64
    )
    value = float(corners[0])
    if not np.all(corners == value):
        return None
    step = max(1, array.shape[0] // 16)
    sample = array[::step]
    repeats = float(np.mean(sample == sample.dtype.type(value)))
    if value <= -500.0:
        return value if repeats >= 0.01 else None
    below = float(np.mean(sample < sample.dtype.type(value)))
    return value if repeats >= 0.1 and below <= 0.05 else None
