"""What a file is, from its first bytes (magic numbers), whatever its name or declared format.

A file's name or a client's declared format is a claim; readers that pick a decoder by content
(SimpleITK tries every ImageIO it knows) would otherwise read a PNG sent as MetaImage, or a
fluoroscopy DICOM sent as MetaImage and so skip the DICOM identity checks. Callers compare
:func:`detect_format` with what they were told and refuse a mismatch
(:func:`require_format`).
"""

from __future__ import annotations

import enum
import re
from pathlib import Path

from igrt.errors import FormatMismatchError, ImageReadError

__all__ = ["FileFormatValues", "detect_format", "require_format"]

_HEAD_BYTES = 512


class FileFormatValues(enum.StrEnum):
    """File formats told apart by their content."""

    DICOM = "DICOM"
    METAIMAGE = "MetaImage"
    NRRD = "NRRD"
    NIFTI = "NIfTI"
    GZIP = "gzip"
    ZIP = "zip"
    PNG = "PNG"
    TIFF = "TIFF"
    JPEG = "JPEG"
    JPEG2000 = "JPEG 2000"


_PREFIXES: tuple[tuple[bytes, FileFormatValues], ...] = (
    (b"\x89PNG\r\n\x1a\n", FileFormatValues.PNG),
    (b"II*\x00", FileFormatValues.TIFF),
    (b"MM\x00*", FileFormatValues.TIFF),
    (b"II+\x00", FileFormatValues.TIFF),  # BigTIFF
    (b"MM\x00+", FileFormatValues.TIFF),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", FileFormatValues.JPEG2000),  # JP2 box
    (b"\xff\x4f\xff\x51", FileFormatValues.JPEG2000),  # raw codestream
    (b"\xff\xd8\xff", FileFormatValues.JPEG),
    (b"PK\x03\x04", FileFormatValues.ZIP),
    (b"PK\x05\x06", FileFormatValues.ZIP),  # an empty archive
    (b"\x1f\x8b", FileFormatValues.GZIP),
    (b"NRRD000", FileFormatValues.NRRD),
)
_METAIMAGE = re.compile(rb"[ \t]*[A-Za-z][A-Za-z0-9_]*[ \t]*=")


def detect_format_of_head(head: bytes) -> FileFormatValues | None:
    """The format the leading bytes of a file announce, or ``None`` when unrecognised."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return FileFormatValues.DICOM
    for prefix, fmt in _PREFIXES:
        if head.startswith(prefix):
            return fmt
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return FileFormatValues.NIFTI
    if _METAIMAGE.match(head):
        return FileFormatValues.METAIMAGE
    return None


def detect_format(path: str | Path) -> FileFormatValues | None:
    """The format the first bytes of ``path`` announce, or ``None`` when unrecognised.

    DICOM is recognised by its Part 10 preamble (``DICM`` at byte 128) only: a file without it
    (a bare data set) is not accepted as DICOM.
    """
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {type(exc).__name__}", field="path") from exc
    return detect_format_of_head(head)


def require_format(
    path: str | Path, *expected: FileFormatValues, field: str = "path", label: str | None = None
) -> FileFormatValues:
    """The detected format of ``path`` when it is one of ``expected``, else an error.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.
    *expected : FileFormatValues
        The formats the caller was told to expect.
    field : str, optional
        The error's ``field``.
    label : str or None, optional
        How to name the file in the message (``path`` by default).

    Raises
    ------
    FormatMismatchError
        The content is of another (or no recognised) format.
    """
    found = detect_format(path)
    if found in expected:
        return found
    wanted = " or ".join(fmt.value for fmt in expected)
    what = f"{found.value} content" if found is not None else "content of no recognised format"
    raise FormatMismatchError(
        f"{label or path} was declared {wanted} but holds {what}", field=field
    )
