"""Decoding DICOM pixel data: pydicom first, SimpleITK (GDCM) when pydicom lacks a decoder.

pydicom decodes compressed transfer syntaxes (JPEG 2000, JPEG-LS, ...) only with optional
plugins (``pylibjpeg`` + ``pylibjpeg-openjpeg``); SimpleITK ships GDCM, which decodes them
itself. GDCM applies the Modality LUT (Rescale Slope/Intercept) as it reads, so the fallback
reports that its values are already rescaled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from igrt.errors import ImageReadError
from igrt.imageio._failures import FOREIGN_ERRORS, describe

__all__ = ["DecodedPixels", "decode_pixels"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DecodedPixels:
    """Pixel values of one DICOM file, always shaped ``(n_frames, rows, columns)``.

    Attributes
    ----------
    array : numpy.ndarray
        The pixels.
    rescaled : bool
        ``True`` when the Modality LUT (slope/intercept) has already been applied (SimpleITK
        fallback); ``False`` when these are the stored values.
    """

    array: npt.NDArray[Any]
    rescaled: bool


def _decode_with_pydicom(dataset: Dataset) -> npt.NDArray[Any]:
    return np.asarray(dataset.pixel_array)


def _decode_with_simpleitk(path: Path) -> npt.NDArray[Any]:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    return np.asarray(sitk.GetArrayFromImage(reader.Execute()))


def decode_pixels(dataset: Dataset, path: Path) -> DecodedPixels:
    """Decode the pixel data of ``dataset`` (read from ``path``).

    Raises
    ------
    ImageReadError
        If the file has no pixel data, is truncated or corrupt, or no decoder can handle its
        transfer syntax. The message names the file.
    """
    if "PixelData" not in dataset:
        raise ImageReadError(f"{path} holds no pixel data (not an image, or truncated)")
    rows = int(dataset.get("Rows", 0) or 0)
    columns = int(dataset.get("Columns", 0) or 0)
    n_frames = int(dataset.get("NumberOfFrames", 1) or 1)
    transfer_syntax = dataset.file_meta.get("TransferSyntaxUID") if dataset.file_meta else None
    compressed = bool(transfer_syntax is not None and transfer_syntax.is_compressed)
    rescaled = False
    try:
        array = _decode_with_pydicom(dataset)
    except FOREIGN_ERRORS as exc:
        if not compressed:
            raise ImageReadError(f"cannot decode pixel data of {path}: {describe(exc)}") from exc
        _LOG.info("pydicom cannot decode %s (%s); trying SimpleITK", path, describe(exc))
        try:
            array = _decode_with_simpleitk(path)
        except FOREIGN_ERRORS as fallback_exc:
            raise ImageReadError(
                f"cannot decode pixel data of {path}: pydicom: {describe(exc)}; "
                f"SimpleITK: {describe(fallback_exc)}"
            ) from fallback_exc
        rescaled = True
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.shape != (n_frames, rows, columns):
        raise ImageReadError(
            f"{path}: decoded pixel data has shape {array.shape}, the header says "
            f"{n_frames} frame(s) of {rows}x{columns} (colour or corrupt image?)"
        )
    return DecodedPixels(array, rescaled)
