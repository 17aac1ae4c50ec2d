"""File formats told apart by content, and a declared format checked against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from igrt.errors import FormatMismatchError
from igrt.imageio.sniff import FileFormatValues, detect_format, require_format


def _written(tmp_path: Path, name: str) -> Path:
    import cv2

    path = tmp_path / name
    if name.endswith((".png", ".tif", ".jp2")):
        cv2.imwrite(str(path), np.zeros((64, 64), np.uint16))
    else:
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 2, 2), np.int16)), str(path))
    return path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.png", FileFormatValues.PNG),
        ("a.tif", FileFormatValues.TIFF),
        ("a.jp2", FileFormatValues.JPEG2000),
        ("a.mha", FileFormatValues.METAIMAGE),
        ("a.nrrd", FileFormatValues.NRRD),
        ("a.nii", FileFormatValues.NIFTI),
        ("a.nii.gz", FileFormatValues.GZIP),
    ],
)
def test_formats_are_recognised_by_content(
    tmp_path: Path, name: str, expected: FileFormatValues
) -> None:
    path = _written(tmp_path, name)
    renamed = path.rename(tmp_path / "no-suffix")
    assert detect_format(renamed) is expected


def test_dicom_needs_its_preamble(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    assert detect_format(path) is FileFormatValues.DICOM
    path.write_bytes(b"\x08\x00\x05\x00CS")
    assert detect_format(path) is None


def test_a_mismatch_names_what_was_declared_and_what_was_found(tmp_path: Path) -> None:
    path = _written(tmp_path, "frame.png")
    with pytest.raises(FormatMismatchError, match="declared MetaImage but holds PNG content"):
        require_format(path, FileFormatValues.METAIMAGE, label="the file")
    assert require_format(path, FileFormatValues.PNG) is FileFormatValues.PNG
