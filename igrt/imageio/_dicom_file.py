"""Opening one DICOM file: it must exist, parse, and carry a Transfer Syntax UID."""

from __future__ import annotations

import os
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import FileDataset

from igrt.errors import ImageReadError
from igrt.imageio._failures import foreign_errors

__all__ = ["read_dicom_file"]


def read_dicom_file(path: str | os.PathLike[str]) -> tuple[Path, FileDataset]:
    """The file's path and its dataset (values still unconverted: pydicom converts on access).

    Raises
    ------
    ImageReadError
        No such file, not DICOM, or no Transfer Syntax UID (truncated or corrupt); the message
        names the file.
    """
    source = Path(path)
    if not source.is_file():
        raise ImageReadError(f"no such file: {source}", field="path")
    with foreign_errors(source, "read DICOM file"):
        dataset = dcmread(source)
    if dataset.file_meta is None or "TransferSyntaxUID" not in dataset.file_meta:
        raise ImageReadError(
            f"{source} is a corrupt or truncated DICOM file (no Transfer Syntax UID)",
            field="path",
        )
    return source, dataset
