"""Opening one DICOM file: it must exist, use an accepted transfer syntax and parse.

The transfer syntax is checked from the File Meta Information alone, before the data set is
parsed, so that a Deflated data set is never inflated.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from igrt.errors import ImageReadError
from igrt.imageio._failures import FOREIGN_ERRORS, foreign_errors

__all__ = ["ACCEPTED_TRANSFER_SYNTAXES", "check_transfer_syntax", "read_dicom_file"]

_META_ERRORS = tuple(e for e in FOREIGN_ERRORS if e is not InvalidDicomError)

ACCEPTED_TRANSFER_SYNTAXES = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
        JPEG2000Lossless,
        JPEG2000,
        HTJ2KLossless,
        HTJ2KLosslessRPCL,
        HTJ2K,
        RLELossless,
    }
)
"""Transfer syntaxes read. Left out on purpose: Deflated Explicit VR Little Endian (pydicom
inflates the whole data set before any attribute can be checked: a 65 KB file can take
hundreds of MB), JPIP (pixel data fetched from a URL) and the video syntaxes."""


def check_transfer_syntax(path: Path) -> None:
    """Refuse a file whose File Meta Information names a transfer syntax not accepted.

    Reads the File Meta group only (a few hundred bytes), before the data set is parsed. A
    file with no File Meta Information passes: the data set parser decides.

    Raises
    ------
    ImageReadError
        Deflated, JPIP, video or unknown transfer syntax (``field`` ``TransferSyntaxUID``).
    """
    try:
        with foreign_errors(path, "read DICOM file meta information of", catch=_META_ERRORS):
            meta = read_file_meta_info(path)
    except InvalidDicomError:
        return  # no Part 10 preamble: dcmread refuses it as well
    text = str(meta.get("TransferSyntaxUID", "") or "").strip()
    if not text:
        return
    syntax = UID(text)
    if syntax == DeflatedExplicitVRLittleEndian:
        raise ImageReadError(
            f"{path} uses the Deflated transfer syntax, which is not accepted (it must be "
            "inflated whole before it can be checked); send it uncompressed or with a pixel "
            "compression (JPEG 2000, JPEG-LS, RLE)",
            field="TransferSyntaxUID",
        )
    if syntax not in ACCEPTED_TRANSFER_SYNTAXES:
        raise ImageReadError(
            f"{path} uses transfer syntax {syntax} ({syntax.name}), which is not accepted",
            field="TransferSyntaxUID",
        )


def read_dicom_file(path: str | os.PathLike[str]) -> tuple[Path, FileDataset]:
    """The file's path and its dataset (values still unconverted: pydicom converts on access).

    Raises
    ------
    ImageReadError
        No such file, not DICOM, a transfer syntax not accepted, or no Transfer Syntax UID
        (truncated or corrupt); the message names the file.
    """
    source = Path(path)
    if not source.is_file():
        raise ImageReadError(f"no such file: {source}", field="path")
    check_transfer_syntax(source)
    with foreign_errors(source, "read DICOM file"):
        dataset = dcmread(source)
    if dataset.file_meta is None or "TransferSyntaxUID" not in dataset.file_meta:
        raise ImageReadError(
            f"{source} is a corrupt or truncated DICOM file (no Transfer Syntax UID)",
            field="path",
        )
    return source, dataset
