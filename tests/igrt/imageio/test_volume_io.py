"""MetaImage volumes, NIfTI/NRRD through SimpleITK, and what read_volume refuses."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from igrt.errors import FrameOfReferenceError, ImageReadError, InvalidInputError
from igrt.imageio import read_volume, write_volume_mha
from igrt.volume import Volume
from tests.fresh_imports import heavy_modules_imported_by


@pytest.mark.parametrize("compress", [True, False])
def test_mha_round_trip_is_exact(oblique_volume: Volume, tmp_path: Path, compress: bool) -> None:
    path = write_volume_mha(
        oblique_volume, tmp_path / "ct.mha", patient_position="HFP", compress=compress
    )
    loaded = read_volume(path)
    volume = loaded.volume
    assert volume.array.dtype == oblique_volume.array.dtype
    np.testing.assert_array_equal(volume.array, oblique_volume.array)
    np.testing.assert_array_equal(volume.spacing_mm, oblique_volume.spacing_mm)
    np.testing.assert_array_equal(volume.origin_lps_mm, oblique_volume.origin_lps_mm)
    np.testing.assert_array_equal(volume.direction, oblique_volume.direction)
    assert volume.frame_of_reference_uid == oblique_volume.frame_of_reference_uid
    assert loaded.patient_position == "HFP"
    assert loaded.source_files == (path,)


def test_mha_without_frame_of_reference_or_position(integer_volume: Volume, tmp_path: Path) -> None:
    loaded = read_volume(write_volume_mha(integer_volume, tmp_path / "ct.mhd"))
    np.testing.assert_array_equal(loaded.volume.array, integer_volume.array)
    assert loaded.volume.frame_of_reference_uid is None
    assert loaded.patient_position is None


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.nrrd"])
def test_nifti_and_nrrd_come_back_in_lps(oblique_volume: Volume, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    sitk.WriteImage(oblique_volume.to_sitk(), str(path))  # NIfTI stores RAS; ITK converts back
    volume = read_volume(path).volume
    np.testing.assert_allclose(volume.origin_lps_mm, oblique_volume.origin_lps_mm, atol=1e-4)
    np.testing.assert_allclose(volume.direction, oblique_volume.direction, atol=1e-5)
    np.testing.assert_allclose(volume.spacing_mm, oblique_volume.spacing_mm, atol=1e-5)
    np.testing.assert_array_equal(volume.array, oblique_volume.array)


@pytest.mark.shared_data
def test_real_nifti_ct(shared_data: Path) -> None:
    volume = read_volume(shared_data / "ct" / "chest_ct.nii.gz").volume
    assert volume.array.shape == (133, 512, 512)
    np.testing.assert_allclose(volume.spacing_mm, (0.703125, 0.703125, 2.5), atol=1e-3)


def test_unreadable_and_unsuitable_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.mha"
    text.write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.mha"):
        read_volume(text)
    unknown = tmp_path / "data.bin"
    unknown.write_bytes(b"\x00\x01\x02")
    with pytest.raises(ImageReadError, match=r"data\.bin"):
        read_volume(unknown)
    picture = tmp_path / "frame.png"
    cv2.imwrite(str(picture), np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageReadError, match="holds PNG"):  # chosen by content, not by name
        read_volume(picture)
    vector = tmp_path / "field.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 3), np.float32)), str(vector))
    with pytest.raises(ImageReadError, match="components"):
        read_volume(vector)
    nan_volume = tmp_path / "nan.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 2, 2), np.nan, np.float32)), str(nan_volume))
    with pytest.raises(InvalidInputError, match=r"nan\.mha.*NaN"):
        read_volume(nan_volume)


def test_writer_arguments(integer_volume: Volume, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"\.mha or \.mhd"):
        write_volume_mha(integer_volume, tmp_path / "ct.nii.gz")
    with pytest.raises(FrameOfReferenceError):
        write_volume_mha(integer_volume, tmp_path / "ct.mha", patient_position="standing")
    with pytest.raises(InvalidInputError, match="cannot write"):
        write_volume_mha(integer_volume, tmp_path / "missing" / "folder" / "ct.mha")


def test_reading_an_mha_volume_needs_neither_pydicom_nor_simpleitk(
    integer_volume: Volume, tmp_path: Path
) -> None:
    # Each costs a fresh `igrt register` about 0.2 s; the allow-list reader needs neither.
    path = write_volume_mha(integer_volume, tmp_path / "ct.mha")
    code = "import sys\nfrom igrt.imageio import read_volume\nread_volume(sys.argv[1])"
    assert heavy_modules_imported_by(code, str(path)) == []
