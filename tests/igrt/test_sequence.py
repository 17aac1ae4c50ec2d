"""Tests for igrt.sequence: fluoroscopy frames with per-frame times and geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from igrt.errors import GeometryError, InvalidInputError
from igrt.geometry import ProjectionGeometry, xvi_geometry
from igrt.sequence import FluoroSequence, IntensityValues

ROWS, COLS = 8, 6


def _geometry(gantry_deg: float = 0.0) -> ProjectionGeometry:
    return ProjectionGeometry(
        sad_mm=1000.0,
        sdd_mm=1536.0,
        pixel_pitch_mm=(0.8, 0.8),
        detector_shape=(ROWS, COLS),
        gantry_deg=gantry_deg,
    )


def _frames(n: int = 5, dtype: type = np.uint16) -> np.ndarray:
    return np.arange(n * ROWS * COLS).reshape(n, ROWS, COLS).astype(dtype)


def _timestamps(n: int = 5) -> np.ndarray:
    return 0.2 * np.arange(n) + 10.0


# --- construction -----------------------------------------------------------------------------


def test_construction_with_per_frame_geometry() -> None:
    angles = [180.0, 180.5, 181.0, 181.5, 182.0]
    frames = _frames()
    sequence = FluoroSequence(frames, _timestamps(), [_geometry(a) for a in angles])
    assert sequence.n_frames == 5
    assert isinstance(sequence.geometries, tuple)
    np.testing.assert_array_equal(sequence.gantry_deg, angles)
    assert sequence.gantry_deg.dtype == np.float64
    np.testing.assert_array_equal(sequence.frames, frames)
    assert sequence.timestamps_s.dtype == np.float64
    assert sequence.intensity is IntensityValues.RAW
    assert sequence.duration_s == pytest.approx(0.8)


def test_with_fixed_geometry_shares_one_geometry() -> None:
    geometry = _geometry(90.0)
    sequence = FluoroSequence.with_fixed_geometry(
        _frames(3, np.float32), [0.0, 0.5, 1.5], geometry, IntensityValues.LINE_INTEGRAL
    )
    assert sequence.geometries == (geometry, geometry, geometry)
    np.testing.assert_array_equal(sequence.gantry_deg, [90.0, 90.0, 90.0])
    assert sequence.intensity is IntensityValues.LINE_INTEGRAL
    assert sequence.duration_s == pytest.approx(1.5)


def test_single_frame_has_zero_duration() -> None:
    sequence = FluoroSequence.with_fixed_geometry(_frames(1), [3.0], _geometry())
    assert sequence.n_frames == 1
    assert sequence.duration_s == 0.0


def test_works_with_a_real_preset_panel() -> None:
    geometry = xvi_geometry(binning=2)
    frames = np.zeros((2, 512, 512), np.uint16)
    sequence = FluoroSequence.with_fixed_geometry(frames, [0.0, 0.1], geometry)
    assert sequence.frames.shape == (2, 512, 512)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])
def test_supported_dtypes_are_kept(dtype: type) -> None:
    sequence = FluoroSequence.with_fixed_geometry(_frames(2, dtype), [0.0, 1.0], _geometry())
    assert sequence.frames.dtype == dtype


def test_intensity_values() -> None:
    assert IntensityValues("raw") is IntensityValues.RAW
    assert IntensityValues("line_integral") is IntensityValues.LINE_INTEGRAL


# --- subset -----------------------------------------------------------------------------------


def test_subset_with_a_slice_keeps_geometry_and_times() -> None:
    angles = [0.0, 1.0, 2.0, 3.0, 4.0]
    sequence = FluoroSequence(
        _frames(), _timestamps(), [_geometry(a) for a in angles], IntensityValues.LINE_INTEGRAL
    )
    part = sequence.subset(slice(1, 5, 2))
    assert part.n_frames == 2
    np.testing.assert_array_equal(part.frames, sequence.frames[[1, 3]])
    np.testing.assert_allclose(part.timestamps_s, [10.2, 10.6])
    np.testing.assert_array_equal(part.gantry_deg, [1.0, 3.0])
    assert part.intensity is IntensityValues.LINE_INTEGRAL
    assert part.duration_s == pytest.approx(0.4)
    assert sequence.n_frames == 5


def test_subset_with_indices() -> None:
    sequence = FluoroSequence(_frames(), _timestamps(), [_geometry(a) for a in range(5)])
    part = sequence.subset([0, 2, -1])
    np.testing.assert_array_equal(part.gantry_deg, [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(part.frames, sequence.frames[[0, 2, 4]])
    np.testing.assert_allclose(part.timestamps_s, [10.0, 10.4, 10.8])


def test_subset_that_reverses_time_is_refused() -> None:
    sequence = FluoroSequence.with_fixed_geometry(_frames(), _timestamps(), _geometry())
    with pytest.raises(InvalidInputError):
        sequence.subset([3, 1])


def test_empty_subset_is_refused() -> None:
    sequence = FluoroSequence.with_fixed_geometry(_frames(), _timestamps(), _geometry())
    with pytest.raises(InvalidInputError):
        sequence.subset([])


# --- immutability -----------------------------------------------------------------------------


def test_sequence_is_immutable() -> None:
    sequence = FluoroSequence.with_fixed_geometry(_frames(), _timestamps(), _geometry())
    with pytest.raises(ValueError, match="read-only"):
        sequence.frames[0, 0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        sequence.timestamps_s[0] = -1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        sequence.intensity = IntensityValues.LINE_INTEGRAL  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        sequence.frames = _frames()  # type: ignore[misc]
    with pytest.raises(TypeError):
        sequence.geometries[0] = _geometry(5.0)  # type: ignore[index]


def test_subset_is_immutable_too() -> None:
    sequence = FluoroSequence.with_fixed_geometry(_frames(), _timestamps(), _geometry())
    part = sequence.subset(slice(0, 2))
    with pytest.raises(ValueError, match="read-only"):
        part.frames[0, 0, 0] = 1


# --- typed errors -----------------------------------------------------------------------------


def test_empty_sequence() -> None:
    with pytest.raises(InvalidInputError) as info:
        FluoroSequence(np.zeros((0, ROWS, COLS), np.uint16), [], ())
    assert info.value.field == "frames"
    with pytest.raises(InvalidInputError):
        FluoroSequence.with_fixed_geometry(np.zeros((0, ROWS, COLS)), [], _geometry())


@pytest.mark.parametrize("shape", [(ROWS, COLS), (2, ROWS, COLS, 1), (ROWS * COLS,)])
def test_frames_of_the_wrong_dimensionality(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInputError) as info:
        FluoroSequence(np.zeros(shape, np.uint16), [0.0], (_geometry(),))
    assert not isinstance(info.value, GeometryError)
    assert info.value.field == "frames"


@pytest.mark.parametrize("dtype", [bool, np.complex64, np.complex128, np.float16, np.int64])
def test_unsupported_dtype(dtype: type) -> None:
    with pytest.raises(InvalidInputError) as info:
        FluoroSequence.with_fixed_geometry(_frames(2, dtype), [0.0, 1.0], _geometry())
    assert info.value.field == "frames"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_frames(bad: float, dtype: type) -> None:
    frames = _frames(3, dtype)
    frames[2, 4, 1] = bad
    with pytest.raises(InvalidInputError) as info:
        FluoroSequence.with_fixed_geometry(frames, [0.0, 1.0, 2.0], _geometry())
    assert info.value.field == "frames"


@pytest.mark.parametrize(
    "timestamps",
    [[0.0, 1.0], [0.0, 1.0, 2.0, 3.0], [[0.0], [1.0], [2.0]], 0.0],
    ids=["too-few", "too-many", "column", "scalar"],
)
def test_timestamp_count_mismatch(timestamps: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        FluoroSequence(_frames(3), timestamps, (_geometry(),) * 3)  # type: ignore[arg-type]
    assert info.value.field == "timestamps_s"


@pytest.mark.parametrize(
    "timestamps",
    [[0.0, 2.0, 1.0], [0.0, 1.0, 1.0], [2.0, 1.0, 0.0], [0.0, np.nan, 2.0], [0.0, 1.0, np.inf]],
    ids=["non-monotonic", "repeated", "decreasing", "nan", "inf"],
)
def test_bad_timestamps(timestamps: list[float]) -> None:
    with pytest.raises(InvalidInputError) as info:
        FluoroSequence.with_fixed_geometry(_frames(3), timestamps, _geometry())
    assert not isinstance(info.value, GeometryError)
    assert info.value.field == "timestamps_s"


@pytest.mark.parametrize("count", [0, 2, 4])
def test_geometry_count_mismatch(count: int) -> None:
    with pytest.raises(GeometryError) as info:
        FluoroSequence(_frames(3), [0.0, 1.0, 2.0], (_geometry(),) * count)
    assert isinstance(info.value, InvalidInputError)
    assert info.value.field == "geometries"


def test_missing_geometry() -> None:
    with pytest.raises(GeometryError):
        FluoroSequence(_frames(3), [0.0, 1.0, 2.0], None)  # type: ignore[arg-type]


def test_geometry_shape_mismatch() -> None:
    transposed = dataclasses.replace(_geometry(), detector_shape=(COLS, ROWS))
    with pytest.raises(GeometryError) as info:
        FluoroSequence(_frames(2), [0.0, 1.0], (_geometry(), transposed))
    assert info.value.field == "geometries"
    with pytest.raises(GeometryError):
        FluoroSequence.with_fixed_geometry(_frames(2), [0.0, 1.0], xvi_geometry())


@pytest.mark.parametrize("entry", [None, "xvi", {"sad_mm": 1000.0}])
def test_non_geometry_entry(entry: object) -> None:
    with pytest.raises(GeometryError):
        FluoroSequence(_frames(2), [0.0, 1.0], (_geometry(), entry))  # type: ignore[arg-type]


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        FluoroSequence.with_fixed_geometry(_frames(2), [1.0, 1.0], _geometry())
