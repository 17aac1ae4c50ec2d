"""Varian TrueBeam kV projections: ``.xim`` files with the scan's ``Scan.xml`` geometry.

Layout of one ``.xim`` (little-endian): an 8-byte identifier holding ``VMS.XI``, then int32
version, width, height, bits per pixel, bytes per pixel and a compression flag; for a
compressed frame an int32 lookup-table size, the table, an int32 size of the compressed buffer
and the buffer (:mod:`igrt.imageio._varian_lossless`), an int32 uncompressed size; a histogram
(int32 bin count and the bins); and typed properties (name, type code, value). Only compressed
frames are read (what TrueBeam writes; RTK too decodes only those).

Geometry, per frame, as RTK's ``VarianProBeamGeometryReader`` reads it: gantry angle
``180 - KVSourceRtn`` degrees, detector offset ``KVDetectorLat`` and ``KVDetectorLng`` (cm, to
mm), pixel pitch ``PixelWidth``/``PixelHeight`` (cm, to mm); SAD and SDD (mm) from ``Scan.xml``
(``<SAD>``, ``<SID>``) when given, otherwise from the frame's own ``KVSourceVrt`` and
``KVDetectorVrt`` (cm above and below the isocentre; RTK does not use these). Frame time:
``StartTime`` (s) + ``StartTimeRemainder`` (ns), relative to the first frame.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError, ImageReadError
from igrt.geometry import ProjectionGeometry
from igrt.imageio._failures import with_file_context
from igrt.imageio._varian_lossless import decode_varian_lossless
from igrt.imageio._vendor_common import (
    MAX_FRAME_FILE_BYTES,
    check_panel,
    frame_times_s,
    local_name,
    parse_xml,
    read_bounded,
    recording_files,
    sequence_from_file_frames,
    xml_float,
)
from igrt.sequence import FluoroSequence

__all__ = ["XimFrame", "read_xim_frame", "read_xim_sequence"]

_MAX_PROPERTIES = 4096
_MAX_NAME_BYTES = 256
_MAX_HISTOGRAM_BINS = 1 << 20
_NUMERIC_PROPERTIES = frozenset(
    {
        "KVSourceRtn",
        "KVDetectorLat",
        "KVDetectorLng",
        "KVSourceVrt",
        "KVDetectorVrt",
        "PixelWidth",
        "PixelHeight",
        "StartTime",
        "StartTimeRemainder",
        "GantryRtn",
    }
)
"""The only properties kept; every other one is skipped by its declared length."""


@dataclass(frozen=True, eq=False)
class XimFrame:
    """One decoded ``.xim`` frame.

    Attributes
    ----------
    pixels : numpy.ndarray
        ``(rows, columns)`` uint32 in file row order (as RTK returns it).
    properties : dict of str to float
        The allow-listed numeric properties present in the file (vendor units).
    """

    pixels: npt.NDArray[np.uint32]
    properties: dict[str, float]


class _Cursor:
    """Bounds-checked little-endian reads from a byte string."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.offset = data, path, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.offset + n > len(self.data):
            raise ImageReadError(
                f"{self.path}: truncated file (at byte {self.offset})", field="path"
            )
        chunk = self.data[self.offset : self.offset + n]
        self.offset += n
        return chunk

    def int32(self) -> int:
        return int(struct.unpack("<i", self.take(4))[0])

    def float64(self) -> float:
        return float(struct.unpack("<d", self.take(8))[0])


def _header(cursor: _Cursor) -> tuple[int, int, int, int]:
    identifier = cursor.take(8)
    if b"VMS.XI" not in identifier:
        raise ImageReadError(f"{cursor.path} is not a Varian XIM file", field="path")
    cursor.int32()  # format version
    columns, rows = cursor.int32(), cursor.int32()
    cursor.int32()  # bits per pixel
    bytes_per_pixel, compressed = cursor.int32(), cursor.int32()
    check_panel(cursor.path, rows, columns)
    return rows, columns, bytes_per_pixel, compressed


def _pixels(cursor: _Cursor, rows: int, columns: int) -> npt.NDArray[np.uint32]:
    lut = cursor.take(cursor.int32())
    payload = cursor.take(cursor.int32())
    cursor.int32()  # uncompressed size
    return decode_varian_lossless(lut, payload, rows, columns, cursor.path)


def _skip_histogram(cursor: _Cursor) -> None:
    bins = cursor.int32()
    if not 0 <= bins <= _MAX_HISTOGRAM_BINS:
        raise ImageReadError(f"{cursor.path}: implausible histogram of {bins} bins", field="path")
    cursor.take(4 * bins)


def _properties(cursor: _Cursor) -> dict[str, float]:
    count = cursor.int32()
    if not 0 <= count <= _MAX_PROPERTIES:
        raise ImageReadError(f"{cursor.path}: implausible {count} properties", field="path")
    kept: dict[str, float] = {}
    for _ in range(count):
        length = cursor.int32()
        if not 0 < length <= _MAX_NAME_BYTES:
            raise ImageReadError(f"{cursor.path}: bad property name length", field="path")
        name = cursor.take(length).decode("ascii", errors="replace")
        kind = cursor.int32()
        if kind == 0:
            value: float | None = float(cursor.int32())
        elif kind == 1:
            value = cursor.float64()
        elif kind in (2, 4, 5):  # string, double array, int32 array: byte length first
            cursor.take(cursor.int32())
            value = None
        else:
            raise ImageReadError(
                f"{cursor.path}: property {name!r} has unknown type {kind}", field="path"
            )
        if value is not None and name in _NUMERIC_PROPERTIES:
            if not math.isfinite(value):
                raise ImageReadError(f"{cursor.path}: property {name} is not finite", field=name)
            kept[name] = value
    return kept


def read_xim_frame(path: str | Path) -> XimFrame:
    """Read one compressed ``.xim`` frame and its allow-listed properties.

    Raises
    ------
    ImageReadError
        Not an XIM file, too large, truncated, uncompressed, or a malformed header,
        compression table or property list.
    """
    source = Path(path)
    cursor = _Cursor(read_bounded(source, MAX_FRAME_FILE_BYTES, "XIM file"), source)
    rows, columns, bytes_per_pixel, compressed = _header(cursor)
    if compressed != 1:
        raise ImageReadError(
            f"{source}: uncompressed XIM frames ({bytes_per_pixel} bytes per pixel) are not "
            "supported; TrueBeam writes compressed ones",
            field="path",
        )
    pixels = _pixels(cursor, rows, columns)
    _skip_histogram(cursor)
    return XimFrame(pixels, _properties(cursor))


def _scan_distances(scan_xml: Path) -> tuple[float, float]:
    root = parse_xml(scan_xml)
    for element in root.iter():
        names = {local_name(child) for child in element}
        if {"SAD", "SID"} <= names:
            return xml_float(element, "SAD", scan_xml), xml_float(element, "SID", scan_xml)
    raise GeometryError(f"{scan_xml} states no <SAD> and <SID>", field="scan_xml")


def _required(frame: XimFrame, name: str, path: Path) -> float:
    if name not in frame.properties:
        raise GeometryError(f"{path} lacks the {name} property", field=name)
    return frame.properties[name]


def _geometry(
    frame: XimFrame, distances: tuple[float, float] | None, path: Path
) -> ProjectionGeometry:
    if distances is None:
        source_cm = _required(frame, "KVSourceVrt", path)
        detector_cm = _required(frame, "KVDetectorVrt", path)
        distances = (10.0 * source_cm, 10.0 * (source_cm - detector_cm))
    rows, columns = frame.pixels.shape
    try:
        return ProjectionGeometry(
            sad_mm=distances[0],
            sdd_mm=distances[1],
            pixel_pitch_mm=(
                10.0 * _required(frame, "PixelWidth", path),
                10.0 * _required(frame, "PixelHeight", path),
            ),
            detector_shape=(rows, columns),
            detector_offset_mm=(
                10.0 * _required(frame, "KVDetectorLat", path),
                -10.0 * _required(frame, "KVDetectorLng", path),
            ),
            gantry_deg=(180.0 - _required(frame, "KVSourceRtn", path)) % 360.0,
        )
    except GeometryError as exc:
        raise with_file_context(exc, path) from exc


def _stated_times(frames: Sequence[XimFrame]) -> list[float] | None:
    names = ("StartTime", "StartTimeRemainder")
    if not all(all(n in f.properties for n in names) for f in frames):
        return None
    # Whole seconds and nanoseconds apart: 1.7e9 s plus a fraction loses microseconds in float.
    seconds = [f.properties["StartTime"] - frames[0].properties["StartTime"] for f in frames]
    nanoseconds = [
        f.properties["StartTimeRemainder"] - frames[0].properties["StartTimeRemainder"]
        for f in frames
    ]
    return [s + 1e-9 * ns for s, ns in zip(seconds, nanoseconds, strict=True)]


def read_xim_sequence(
    source: str | Path | Sequence[str | Path],
    *,
    scan_xml: str | Path | None = None,
    fps: float | None = None,
) -> FluoroSequence:
    """Read TrueBeam ``.xim`` frames as a raw-signal sequence with per-frame geometry.

    Parameters
    ----------
    source : str, pathlib.Path or sequence of them
        One ``.xim`` file, a folder of them (natural order; a ``Scan.xml`` found beside them,
        case-insensitively, is used unless ``scan_xml`` is given), or a list in order.
    scan_xml : str or pathlib.Path, optional
        The scan's ``Scan.xml`` with ``<SAD>`` and ``<SID>``, mm.
    fps : float, optional
        Frame rate, used only when the frames state no start times.

    Returns
    -------
    FluoroSequence
        Frames flipped into ``v`` order (module :mod:`igrt.imageio._vendor_common`).

    Raises
    ------
    ImageReadError
        Unreadable or hostile files, frames of different sizes, no frame times and no fps.
    GeometryError
        A frame without the geometry properties, or a ``Scan.xml`` without SAD/SID.
    """
    files, found_xml, anchor = recording_files(
        source, ".xim", lambda path: path.name.lower() == "scan.xml"
    )
    xml_path = Path(scan_xml) if scan_xml is not None else found_xml
    distances = _scan_distances(xml_path) if xml_path is not None else None
    frames = [read_xim_frame(path) for path in files]
    geometries = [_geometry(f, distances, p) for f, p in zip(frames, files, strict=True)]
    times = frame_times_s(len(frames), _stated_times(frames), fps, anchor)
    return sequence_from_file_frames([f.pixels for f in frames], times, geometries, anchor)
