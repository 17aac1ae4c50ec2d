"""Voxel-grid helpers: the fast paths give the values of the plain ones they replaced."""

from __future__ import annotations

import numpy as np

from igrt.volume import Volume
from registration._grid import (
    SampledImage,
    block_mean,
    coarsened_volume,
    crop_volume,
    map_points,
)
from registration.clip_box import volume_bounds_lps_mm
from registration.transforms import rigid_about, rotation_from_vector


def _oblique_ct() -> Volume:
    """A small int16 CT with padding, anisotropic voxels and oblique direction cosines."""
    rng = np.random.default_rng(7)
    array = rng.integers(-1000, 400, size=(13, 22, 21)).astype(np.int16)
    array[:, :3, :] = -2048  # padding rows
    array[4:8, 8:16, 8:16] = -3024  # a padded patch inside
    direction = rotation_from_vector((0.1, -0.2, 0.3))
    return Volume(array, (0.7, 0.8, 2.5), (-40.0, 12.0, -150.0), direction)


def _plain_coarsened(
    volume: Volume, spacing_mm: float, padding: float | None, below: float | None
) -> SampledImage:
    """What the dome search did before: float32 crop of everything, block means, masked."""
    lower, upper = volume_bounds_lps_mm(volume)
    crop = crop_volume(volume, lower, upper, margin_voxels=0)
    assert crop is not None
    small = crop.coarsened(spacing_mm)
    invalid = np.zeros(crop.array.shape, np.float32)
    if padding is not None:
        invalid[crop.array == np.float32(padding)] = 1.0
    if below is not None:
        invalid[crop.array < np.float32(below)] = 1.0
    factors = tuple(max(1, round(spacing_mm / float(s))) for s in crop.spacing_mm[::-1])
    mostly_invalid = block_mean(invalid, (factors[0], factors[1], factors[2])) > 0.5
    array = np.where(mostly_invalid, np.float32(np.nan), small.array)
    return SampledImage(array, small.origin_lps_mm, small.spacing_mm, small.direction)


def test_slab_wise_coarsening_equals_crop_then_coarsen() -> None:
    volume = _oblique_ct()
    for spacing, padding, below in ((3.0, None, -1050.0), (5.0, -3024.0, None), (2.0, None, None)):
        fast = coarsened_volume(volume, spacing, padding_value=padding, invalid_below=below)
        plain = _plain_coarsened(volume, spacing, padding, below)
        np.testing.assert_array_equal(fast.array, plain.array)  # NaN in the same places
        np.testing.assert_allclose(fast.origin_lps_mm, plain.origin_lps_mm, atol=1e-12)
        np.testing.assert_allclose(fast.spacing_mm, plain.spacing_mm, atol=1e-12)
        np.testing.assert_allclose(fast.direction, plain.direction, atol=1e-12)
        assert np.isnan(fast.array).any() == (padding is not None or below is not None)


def test_sampling_through_a_transform_equals_mapping_then_sampling() -> None:
    volume = _oblique_ct()
    lower, upper = volume_bounds_lps_mm(volume)
    crop = crop_volume(volume, lower, upper, margin_voxels=0, invalid_below=-1050.0)
    assert crop is not None
    rng = np.random.default_rng(3)
    points = rng.uniform(lower - 3.0, upper + 3.0, size=(5000, 3))
    transform = rigid_about(
        rotation_from_vector((0.02, -0.03, 0.01)), points.mean(axis=0), (1.5, -2.0, 0.7)
    )
    direct = crop.sample_transformed(points, transform)
    mapped = crop.sample(map_points(points, transform[:3, :3], transform[:3, 3]))
    np.testing.assert_array_equal(np.isnan(direct), np.isnan(mapped))
    assert 0 < np.count_nonzero(~np.isnan(direct)) < direct.size  # inside, outside, padding
    np.testing.assert_allclose(direct, mapped, rtol=0, atol=1e-6)
