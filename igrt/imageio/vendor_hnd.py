"""Varian OBI kV projections: ``.hnd`` files with the scan's ``ImgParameters`` XML geometry.

An ``.hnd`` frame is a fixed 1024-byte header (the fields below, little-endian, packed) and the
pixels compressed as in :mod:`igrt.imageio._varian_lossless`, whose lookup table holds
``(rows - 1) * columns / 4`` bytes. Read from the header: the panel size, the pixel pitch
(``dIDUResolutionX/Y``, mm) and the kV projection angle ``dCTProjectionAngle`` (deg), RTK's
gantry angle for OBI (``rtk::VarianObiGeometryReader``).

The scan's XML (``ImgParameters.xml`` / ``Scan.xml`` of an OBI acquisition) gives, as RTK reads
it: ``CalibratedSAD`` and ``CalibratedSID`` (mm), ``CalibratedDetectorOffsetY`` and
``CalibratedDetectorOffsetX`` plus, for ``FanType`` ``HalfFan``, ``DetectorPosLat`` (mm).
OBI headers carry no usable frame time, so a sequence needs the frame rate.
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
)
from igrt.sequence import FluoroSequence

__all__ = ["HndFrame", "ObiScanGeometry", "read_hnd_frame", "read_hnd_sequence", "read_obi_xml"]

HEADER_BYTES = 1024
_LAYOUT = struct.Struct("<32sI4sI8s8s16sI16sI16sIIId16sIII4s" + "d" * 40)
_DOUBLES = (
    "dGantryRtn",
    "dSAD",
    "dSFD",
    "dCollX1",
    "dCollX2",
    "dCollY1",
    "dCollY2",
    "dCollRtn",
    "dFieldX",
    "dFieldY",
    "dBladeX1",
    "dBladeX2",
    "dBladeY1",
    "dBladeY2",
    "dIDUPosLng",
    "dIDUPosLat",
    "dIDUPosVrt",
    "dIDUPosRtn",
    "dPatientSupportAngle",
    "dTableTopEccentricAngle",
    "dCouchVrt",
    "dCouchLng",
    "dCouchLat",
    "dIDUResolutionX",
    "dIDUResolutionY",
    "dImageResolutionX",
    "dImageResolutionY",
    "dEnergy",
    "dDoseRate",
    "dXRayKV",
    "dXRayMA",
    "dMetersetExposure",
    "dAcqAdjustment",
    "dCTProjectionAngle",
    "dCTNormChamber",
    "dGatingTimeTag",
    "dGating4DInfoX",
    "dGating4DInfoY",
    "dGating4DInfoZ",
    "dGating4DInfoTime",
)
_SIZE_X, _SIZE_Y, _FIRST_DOUBLE = 12, 13, 20
_KEPT = ("dCTProjectionAngle", "dIDUResolutionX", "dIDUResolutionY")


@dataclass(frozen=True, eq=False)
class HndFrame:
    """One decoded ``.hnd`` frame.

    uint32 pixels in file row order and the allow-listed header values
    (``dCTProjectionAngle`` deg, ``dIDUResolutionX/Y`` mm).
    """

    pixels: npt.NDArray[np.uint32]
    header: dict[str, float]


@dataclass(frozen=True)
class ObiScanGeometry:
    """The fixed geometry of an OBI scan, mm (RTK's ``VarianObiGeometryReader`` reading)."""

    sad_mm: float
    sdd_mm: float
    detector_offset_x_mm: float
    detector_offset_y_mm: float


def read_hnd_frame(path: str | Path) -> HndFrame:
    """Read one ``.hnd`` frame.

    Raises
    ------
    ImageReadError
        Too large, truncated, a panel size outside the ceilings, a malformed compression table
        or non-finite header values.
    """
    source = Path(path)
    data = read_bounded(source, MAX_FRAME_FILE_BYTES, "HND file")
    if len(data) < HEADER_BYTES:
        raise ImageReadError(f"{source}: shorter than the 1024-byte HND header", field="path")
    fields = _LAYOUT.unpack_from(data)
    columns, rows = int(fields[_SIZE_X]), int(fields[_SIZE_Y])
    check_panel(source, rows, columns)
    if ((rows - 1) * columns) % 4:
        raise ImageReadError(
            f"{source}: a {rows} x {columns} frame does not fill whole compression-table bytes",
            field="path",
        )
    doubles = dict(zip(_DOUBLES, fields[_FIRST_DOUBLE:], strict=True))
    header = {name: float(doubles[name]) for name in _KEPT}
    if not all(np.isfinite(list(header.values()))):
        raise ImageReadError(
            f"{source}: non-finite angle or pixel size in the header", field="path"
        )
    lut_bytes = (rows - 1) * columns // 4
    lut = data[HEADER_BYTES : HEADER_BYTES + lut_bytes]
    if len(lut) < lut_bytes:
        raise ImageReadError(f"{source}: truncated compression table", field="path")
    payload = data[HEADER_BYTES + lut_bytes :]
    return HndFrame(decode_varian_lossless(lut, payload, rows, columns, source), header)


def read_obi_xml(path: str | Path) -> ObiScanGeometry:
    """The scan geometry from an OBI ``ImgParameters``/``Scan`` XML file.

    Raises
    ------
    ImageReadError
        Too large, not well-formed, or with a DTD.
    GeometryError
        A required element is missing or not a number.
    """
    source = Path(path)
    root = parse_xml(source)
    values: dict[str, str] = {}
    wanted = {
        "CalibratedSAD",
        "CalibratedSID",
        "CalibratedDetectorOffsetX",
        "CalibratedDetectorOffsetY",
        "DetectorPosLat",
        "FanType",
    }
    for element in root.iter():
        name = local_name(element)
        if name in wanted and name not in values:
            values[name] = (element.text or "").strip()

    def number(name: str) -> float:
        if name not in values:
            raise GeometryError(f"{source} has no <{name}>", field=name)
        try:
            value = float(values[name])
        except ValueError:
            raise GeometryError(
                f"{source}: <{name}> holds {values[name][:40]!r}, not a number", field=name
            ) from None
        if not math.isfinite(value):
            raise GeometryError(f"{source}: <{name}> is not finite", field=name)
        return value

    offset_x = number("CalibratedDetectorOffsetX")
    if values.get("FanType", "").lower() == "halffan":
        offset_x += number("DetectorPosLat")
    return ObiScanGeometry(
        sad_mm=number("CalibratedSAD"),
        sdd_mm=number("CalibratedSID"),
        detector_offset_x_mm=offset_x,
        detector_offset_y_mm=number("CalibratedDetectorOffsetY"),
    )


def _geometry(frame: HndFrame, scan: ObiScanGeometry, path: Path) -> ProjectionGeometry:
    rows, columns = frame.pixels.shape
    try:
        return ProjectionGeometry(
            sad_mm=scan.sad_mm,
            sdd_mm=scan.sdd_mm,
            pixel_pitch_mm=(frame.header["dIDUResolutionX"], frame.header["dIDUResolutionY"]),
            detector_shape=(rows, columns),
            detector_offset_mm=(scan.detector_offset_x_mm, -scan.detector_offset_y_mm),
            gantry_deg=frame.header["dCTProjectionAngle"] % 360.0,
        )
    except GeometryError as exc:
        raise with_file_context(exc, path) from exc


def _is_scan_xml(path: Path) -> bool:
    return path.suffix.lower() == ".xml"


def read_hnd_sequence(
    source: str | Path | Sequence[str | Path],
    *,
    geometry_xml: str | Path | None = None,
    fps: float | None = None,
) -> FluoroSequence:
    """Read OBI ``.hnd`` frames as a raw-signal sequence with per-frame geometry.

    Parameters
    ----------
    source : str, pathlib.Path or sequence of them
        One ``.hnd``, a folder of them (natural order; one ``.xml`` beside them holding
        ``CalibratedSAD`` is used unless ``geometry_xml`` is given), or a list in order.
    geometry_xml : str or pathlib.Path, optional
        The scan's XML (module docstring).
    fps : float, optional
        Frame rate (OBI headers state no usable frame time); not needed for one frame.

    Raises
    ------
    ImageReadError
        Unreadable or hostile files; several frames and no fps.
    GeometryError
        No scan XML, or one without the calibrated distances.
    """
    files, found_xml, anchor = recording_files(source, ".hnd", _is_scan_xml)
    xml_path = Path(geometry_xml) if geometry_xml is not None else found_xml
    if xml_path is None:
        raise GeometryError(
            f"{anchor}: OBI frames need the scan's XML (CalibratedSAD/SID) for their geometry",
            field="geometry_xml",
        )
    scan = read_obi_xml(xml_path)
    frames = [read_hnd_frame(path) for path in files]
    geometries = [_geometry(f, scan, p) for f, p in zip(frames, files, strict=True)]
    times = frame_times_s(len(frames), None, fps, anchor)
    return sequence_from_file_frames([f.pixels for f in frames], times, geometries, anchor)
