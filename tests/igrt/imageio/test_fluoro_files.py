"""PNG/TIFF frame folders and MetaImage frame stacks."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from igrt.errors import GeometryError, ImageReadError, InvalidInputError
from igrt.geometry import ProjectionGeometry
from igrt.imageio import read_fluoro_frames, read_fluoro_mha, write_fluoro_mha
from igrt.sequence import FluoroSequence, IntensityValues
from tests.igrt.imageio.builders import fixed_sequence, rotating_sequence


def _write_frames(folder: Path, frames: np.ndarray, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    for frame, name in zip(frames, names, strict=True):
        assert cv2.imwrite(str(folder / name), frame)


# --- PNG / TIFF -------------------------------------------------------------------------------


def test_png_folder_is_read_in_natural_order(panel: ProjectionGeometry, tmp_path: Path) -> None:
    n = 12
    frames = np.stack([np.full(panel.detector_shape, 1000 * i, np.uint16) for i in range(n)])
    _write_frames(tmp_path, frames, [f"frame_{i}.png" for i in range(n)])
    (tmp_path / "acquisition.xml").write_text("<frames/>")  # not a frame: ignored
    sequence = read_fluoro_frames(tmp_path, panel, fps=7.5)
    assert sequence.frames.dtype == np.uint16
    np.testing.assert_array_equal(sequence.frames, frames)  # frame_10 after frame_9
    np.testing.assert_allclose(sequence.timestamps_s, np.arange(n) / 7.5)
    assert sequence.geometries == (panel,) * n
    assert sequence.intensity is IntensityValues.RAW


def test_float_tiff_files_with_timestamps_and_per_frame_geometry(
    panel: ProjectionGeometry, tmp_path: Path
) -> None:
    rng = np.random.default_rng(6)
    frames = rng.normal(1.0, 0.5, (3, *panel.detector_shape)).astype(np.float32)
    _write_frames(tmp_path, frames, ["b.tif", "a.tif", "c.tiff"])
    files = [tmp_path / "b.tif", tmp_path / "a.tif", tmp_path / "c.tiff"]  # caller's order kept
    geometries = [replace(panel, gantry_deg=g) for g in (0.0, 10.0, 20.0)]
    sequence = read_fluoro_frames(
        files,
        geometries,
        timestamps_s=[0.0, 0.2, 0.5],
        intensity=IntensityValues.LINE_INTEGRAL,
    )
    np.testing.assert_array_equal(sequence.frames, frames)
    np.testing.assert_array_equal(sequence.gantry_deg, [0.0, 10.0, 20.0])
    assert sequence.intensity is IntensityValues.LINE_INTEGRAL


def test_frame_errors_name_the_file(panel: ProjectionGeometry, tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file or folder"):
        read_fluoro_frames(tmp_path / "absent", panel, fps=10)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageReadError, match="no frame files"):
        read_fluoro_frames(empty, panel, fps=10)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "frame_0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ImageReadError, match=r"frame_0\.png"):
        read_fluoro_frames(corrupt, panel, fps=10)
    colour = tmp_path / "colour"
    _write_frames(colour, np.zeros((1, *panel.detector_shape, 3), np.uint8), ["rgb.png"])
    with pytest.raises(ImageReadError, match="3-channel"):
        read_fluoro_frames(colour, panel, fps=10)
    mixed = tmp_path / "mixed"
    _write_frames(mixed, np.zeros((1, *panel.detector_shape), np.uint16), ["a.png"])
    _write_frames(mixed, np.zeros((1, 8, 8), np.uint16), ["b.png"])
    with pytest.raises(ImageReadError, match=r"b\.png"):
        read_fluoro_frames(mixed, panel, fps=10)


def test_frame_geometry_and_timing_arguments(panel: ProjectionGeometry, tmp_path: Path) -> None:
    _write_frames(tmp_path, np.zeros((2, *panel.detector_shape), np.uint16), ["0.png", "1.png"])
    with pytest.raises(GeometryError, match="panel"):
        read_fluoro_frames(tmp_path, replace(panel, detector_shape=(10, 10)), fps=10)
    with pytest.raises(InvalidInputError, match="exactly one"):
        read_fluoro_frames(tmp_path, panel)
    with pytest.raises(InvalidInputError, match="exactly one"):
        read_fluoro_frames(tmp_path, panel, fps=10, timestamps_s=[0, 1])
    with pytest.raises(InvalidInputError, match="positive"):
        read_fluoro_frames(tmp_path, panel, fps=0)


# --- MetaImage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("intensity", list(IntensityValues))
def test_mha_round_trip_is_exact(
    panel: ProjectionGeometry, tmp_path: Path, intensity: IntensityValues
) -> None:
    sequence = rotating_sequence(panel, intensity=intensity)
    read = read_fluoro_mha(write_fluoro_mha(sequence, tmp_path / "cbct.mha"))
    assert read.frames.dtype == sequence.frames.dtype
    np.testing.assert_array_equal(read.frames, sequence.frames)
    np.testing.assert_array_equal(read.timestamps_s, sequence.timestamps_s)
    assert read.geometries == sequence.geometries
    assert read.intensity is intensity


def test_mha_stores_frames_along_the_third_axis(panel: ProjectionGeometry, tmp_path: Path) -> None:
    sequence = fixed_sequence(panel)
    image = sitk.ReadImage(str(write_fluoro_mha(sequence, tmp_path / "f.mha")))
    assert image.GetSize() == (32, 24, sequence.n_frames)  # (columns, rows, frames)
    assert image.GetSpacing()[:2] == pytest.approx(panel.pixel_pitch_mm)


def test_long_mha_sequence_splits_its_header_keys(tmp_path: Path) -> None:
    geometry = ProjectionGeometry(1000.0, 1500.0, (1.0, 1.0), (4, 4))
    n = 700  # more than MetaIO's header line can hold in one key
    geometries = tuple(replace(geometry, gantry_deg=0.51 * i) for i in range(n))
    frames = np.arange(n * 16, dtype=np.uint16).reshape(n, 4, 4)
    sequence = FluoroSequence(frames, np.arange(n) / 11.0, geometries)
    read = read_fluoro_mha(write_fluoro_mha(sequence, tmp_path / "long.mha"))
    assert read.geometries == sequence.geometries
    np.testing.assert_array_equal(read.timestamps_s, sequence.timestamps_s)


def test_foreign_mha_needs_fallbacks(
    panel: ProjectionGeometry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "plain.mha"
    frames = np.zeros((5, *panel.detector_shape), np.uint16)
    sitk.WriteImage(sitk.GetImageFromArray(frames), str(path))
    with pytest.raises(GeometryError, match="IGRT_GantryDeg"):
        read_fluoro_mha(path)
    with pytest.raises(ImageReadError, match="fallback_fps"):
        read_fluoro_mha(path, fallback_geometry=panel)
    with pytest.raises(ImageReadError, match="pass intensity"):
        read_fluoro_mha(path, fallback_geometry=panel, fallback_fps=5.0)
    with caplog.at_level(logging.WARNING, logger="igrt.imageio.fluoro_files"):
        read = read_fluoro_mha(
            path, fallback_geometry=panel, fallback_fps=5.0, intensity=IntensityValues.RAW
        )
    assert "fallback_geometry" in caplog.text
    assert read.geometries == (panel,) * 5
    np.testing.assert_allclose(read.timestamps_s, np.arange(5) / 5.0)


def test_single_2d_mha_is_one_frame(panel: ProjectionGeometry, tmp_path: Path) -> None:
    path = tmp_path / "frame.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones(panel.detector_shape, np.float32)), str(path))
    read = read_fluoro_mha(path, fallback_geometry=panel, intensity=IntensityValues.LINE_INTEGRAL)
    assert read.frames.shape == (1, *panel.detector_shape)
    np.testing.assert_array_equal(read.timestamps_s, [0.0])


def test_mha_errors(panel: ProjectionGeometry, tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_fluoro_mha(tmp_path / "absent.mha")
    corrupt = tmp_path / "corrupt.mha"
    corrupt.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4\nElementDataFile = LOCAL\n")
    with pytest.raises(ImageReadError, match=r"corrupt\.mha"):
        read_fluoro_mha(corrupt)
    path = write_fluoro_mha(fixed_sequence(panel), tmp_path / "f.mha")
    image = sitk.ReadImage(str(path))
    image.EraseMetaData("IGRT_SddMm_000")
    sitk.WriteImage(image, str(tmp_path / "partial.mha"))
    with pytest.raises(GeometryError, match="IGRT_SddMm"):
        read_fluoro_mha(tmp_path / "partial.mha", fallback_geometry=panel)
    with pytest.raises(InvalidInputError, match="intensity=LINE_INTEGRAL"):
        read_fluoro_mha(path, intensity=IntensityValues.LINE_INTEGRAL)
    with pytest.raises(InvalidInputError, match=r"\.mha or \.mhd"):
        write_fluoro_mha(fixed_sequence(panel), tmp_path / "f.nii")


def test_mha_whose_header_points_at_another_file_is_refused(tmp_path: Path) -> None:
    from igrt.errors import UnsafeHeaderError

    hostile = tmp_path / "hostile.mha"
    hostile.write_text(
        "ObjectType = Image\nNDims = 2\nDimSize = 4 4\nElementType = MET_UCHAR\n"
        "ElementDataFile = /etc/passwd\n"
    )
    with pytest.raises(UnsafeHeaderError, match="ElementDataFile"):
        read_fluoro_mha(hostile, intensity=IntensityValues.RAW)


@pytest.mark.parametrize("name", ["stack.nii", "stack.nii.gz"])
def test_a_nifti_frame_stack_is_read_with_the_nifti_reader(
    panel: ProjectionGeometry, tmp_path: Path, name: str
) -> None:
    frames = np.random.default_rng(5).integers(0, 4000, (3, *panel.detector_shape), np.uint16)
    sitk.WriteImage(sitk.GetImageFromArray(frames), str(tmp_path / name))
    sequence = read_fluoro_mha(
        tmp_path / name,
        fallback_geometry=panel,
        fallback_fps=5.0,
        intensity=IntensityValues.RAW,
    )
    np.testing.assert_array_equal(sequence.frames, frames)
