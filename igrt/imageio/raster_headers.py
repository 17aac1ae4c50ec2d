"""Size, channels and bit depth of a PNG or TIFF frame, read from its header without decoding.

A decoder allocates what the header declares; reading the header first lets a caller refuse a
frame of 60000 x 60000 RGBA pixels in a few bytes of zip before OpenCV allocates 14 GB. PNG
states its size in the IHDR chunk (always first); TIFF in the first image file directory (IFD),
which may lie anywhere in the file, so the whole file must be at hand (it is: callers extract a
zip member within a byte budget before asking).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from igrt.errors import ImageReadError

__all__ = ["RasterSize", "read_raster_size"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # palette images decode to colour
_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_BITS, _TIFF_SAMPLES = 256, 257, 258, 277
_TIFF_SHORT, _TIFF_LONG = 3, 4
_MAX_IFD_ENTRIES = 4096


@dataclass(frozen=True)
class RasterSize:
    """What a frame will take once decoded.

    Attributes
    ----------
    rows, columns : int
        Pixels.
    channels : int
        Values per pixel (1 = greyscale).
    bits : int
        Bits per value.
    """

    rows: int
    columns: int
    channels: int
    bits: int

    @property
    def bytes_per_pixel(self) -> int:
        """Decoded bytes per pixel, every channel counted (at least one byte per value)."""
        return self.channels * max(1, (self.bits + 7) // 8)


def _png_size(head: bytes, path: Path) -> RasterSize:
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise ImageReadError(f"{path}: a PNG without its IHDR header", field="path")
    columns, rows = struct.unpack(">II", head[16:24])
    bits, colour = head[24], head[25]
    if colour not in _PNG_CHANNELS:
        raise ImageReadError(f"{path}: PNG colour type {colour} is not valid", field="path")
    channels = _PNG_CHANNELS[colour]
    return RasterSize(int(rows), int(columns), channels, 8 if colour == 3 else int(bits))


def _tiff_size(data: bytes, path: Path) -> RasterSize:
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8 or struct.unpack(order + "H", data[2:4])[0] != 42:
        raise ImageReadError(f"{path}: not a classic TIFF file (BigTIFF is not read)", field="path")
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset + 2 > len(data):
        raise ImageReadError(f"{path}: the TIFF directory lies beyond the file", field="path")
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    if count > _MAX_IFD_ENTRIES or offset + 2 + 12 * count > len(data):
        raise ImageReadError(f"{path}: a truncated or oversized TIFF directory", field="path")
    values: dict[int, tuple[int, int]] = {}
    for index in range(count):
        start = offset + 2 + 12 * index
        tag, kind, n = struct.unpack(order + "HHI", data[start : start + 8])
        if kind == _TIFF_SHORT:
            (value,) = struct.unpack(order + "H", data[start + 8 : start + 10])
        elif kind == _TIFF_LONG:
            (value,) = struct.unpack(order + "I", data[start + 8 : start + 12])
        else:
            continue
        values[tag] = (int(value), int(n))
    if _TIFF_WIDTH not in values or _TIFF_LENGTH not in values:
        raise ImageReadError(f"{path}: the TIFF directory has no image size", field="path")
    samples = values.get(_TIFF_SAMPLES, (1, 1))[0]
    bits, bits_count = values.get(_TIFF_BITS, (1, 1))
    if bits_count > 1:  # one value per sample, stored at this offset
        if bits + 2 > len(data):
            raise ImageReadError(f"{path}: BitsPerSample lies beyond the file", field="path")
        (bits,) = struct.unpack(order + "H", data[bits : bits + 2])
    return RasterSize(values[_TIFF_LENGTH][0], values[_TIFF_WIDTH][0], max(1, samples), bits)


def read_raster_size(path: str | Path) -> RasterSize:
    """The decoded size of the PNG or (first page of the) TIFF image in ``path``.

    Raises
    ------
    ImageReadError
        Not a PNG or classic TIFF file, or a header that cannot be parsed.
    """
    source = Path(path)
    try:
        with source.open("rb") as handle:
            head = handle.read(32)
            if head.startswith(_PNG_SIGNATURE):
                return _png_size(head, source)
            if head[:4] in (b"II*\x00", b"MM\x00*"):
                return _tiff_size(head + handle.read(), source)
    except (OSError, struct.error) as exc:
        raise ImageReadError(f"cannot read the header of {source}", field="path") from exc
    raise ImageReadError(f"{source} is neither a PNG nor a TIFF image", field="path")
