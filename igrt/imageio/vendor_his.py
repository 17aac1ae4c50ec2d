"""Elekta XVI kV projections: Heimann ``.his`` frames with the ``_Frames.xml`` of XVI 5.

A ``.his`` file is a 68-byte header, an image header of the size the file header states, and
``n_frames`` frames of little-endian uint16 pixels. From the header: the magic bytes
``00 70 44 00``, the image-header size (bytes 10-11), the panel corners ``ulx, uly, brx, bry``
(bytes 12-19, inclusive, so ``columns = brx - ulx + 1``), the frame count (bytes 20-21) and the
pixel type (bytes 32-33; only 4, unsigned 16-bit, is read). RTK's ``HisImageIO`` takes the
column count from the rows' corners; the two agree on XVI's square panels, and a non-square
file is read here by its corners.

``_Frames.xml`` (XVI 5) holds one ``<Frame>`` per projection, in acquisition order: ``<Seq>``,
``<DeltaMs>`` (ms since the first projection), ``<GantryAngle>`` (deg; negative values are
taken modulo 360), ``<UCentre>``/``<VCentre>`` (panel centre, mm), ``<Exposed>`` and
``<Inactive>``. As RTK's ``ElektaXVI5GeometryXMLFileReader`` reads it: SAD 1000 mm and SDD
1536 mm (the file states neither), the gantry angle as given, and the projection offset
``(-UCentre, -VCentre)``. Frames are paired with the ``.his`` frames in order (files in natural
order, frames within a file in order), and the counts must agree.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError, ImageReadError
from igrt.geometry import ProjectionGeometry
from igrt.imageio._failures import with_file_context
from igrt.imageio._vendor_common import (
    MAX_FRAME_FILE_BYTES,
    MAX_FRAMES,
    check_panel,
    local_name,
    parse_xml,
    read_bounded,
    recording_files,
    sequence_from_file_frames,
    xml_float,
)
from igrt.sequence import FluoroSequence

__all__ = ["XviFrameInfo", "read_his_frames", "read_his_sequence", "read_xvi_frames_xml"]

FILE_HEADER_BYTES = 68
_MAGIC = b"\x00\x70\x44\x00"
_MAX_IMAGE_HEADER_BYTES = 64 * 1024
_UNSIGNED_16 = 4
XVI_SAD_MM = 1000.0
XVI_SDD_MM = 1536.0


@dataclass(frozen=True)
class XviFrameInfo:
    """One ``<Frame>`` of ``_Frames.xml``.

    Time (s since the first frame), gantry (deg, 0..360), panel centre ``(UCentre, VCentre)``
    (mm), and whether the frame was exposed and active.
    """

    time_s: float
    gantry_deg: float
    u_centre_mm: float
    v_centre_mm: float
    usable: bool


def read_his_frames(path: str | Path) -> npt.NDArray[np.uint16]:
    """The frames of one ``.his`` file, ``(n_frames, rows, columns)`` uint16 in file order.

    Raises
    ------
    ImageReadError
        Not a HIS file, too large, an unsupported pixel type, sizes beyond the ceilings or
        beyond the file's length.
    """
    source = Path(path)
    data = read_bounded(source, MAX_FRAME_FILE_BYTES, "HIS file")
    if len(data) < FILE_HEADER_BYTES or data[:4] != _MAGIC:
        raise ImageReadError(f"{source} is not a Heimann HIS file", field="path")
    image_header, ulx, uly, brx, bry, n_frames = struct.unpack_from("<6H", data, 10)
    pixel_type = struct.unpack_from("<H", data, 32)[0]
    if pixel_type != _UNSIGNED_16:
        raise ImageReadError(
            f"{source}: HIS pixel type {pixel_type} is not supported (only 4, unsigned 16-bit)",
            field="path",
        )
    if image_header > _MAX_IMAGE_HEADER_BYTES:
        raise ImageReadError(f"{source}: implausible image header size", field="path")
    rows, columns = bry - uly + 1, brx - ulx + 1
    check_panel(source, rows, columns, n_frames)
    start = FILE_HEADER_BYTES + image_header
    needed = n_frames * rows * columns * 2
    if len(data) < start + needed:
        raise ImageReadError(
            f"{source}: truncated ({len(data) - start} of {needed} pixel bytes)", field="path"
        )
    pixels = np.frombuffer(data, dtype="<u2", count=needed // 2, offset=start)
    return pixels.reshape(n_frames, rows, columns).astype(np.uint16)


def _flag(frame: object, name: str, default: bool) -> bool:
    for child in frame:  # type: ignore[attr-defined]
        if local_name(child) == name:
            return (child.text or "").strip().lower() == "true"
    return default


def read_xvi_frames_xml(path: str | Path) -> tuple[XviFrameInfo, ...]:
    """The frames listed in an XVI 5 ``_Frames.xml``, in document order.

    Raises
    ------
    ImageReadError
        Too large, not well-formed, with a DTD, or too many frames.
    GeometryError
        No ``<Frame>`` elements, or one without a numeric gantry angle, centre or time.
    """
    source = Path(path)
    root = parse_xml(source)
    elements = [e for e in root.iter() if local_name(e) == "Frame"]
    if not elements:
        raise GeometryError(f"{source} lists no <Frame>", field="frames_xml")
    if len(elements) > MAX_FRAMES:
        raise ImageReadError(f"{source}: more than {MAX_FRAMES} frames", field="frames_xml")
    frames = []
    for element in elements:
        try:
            gantry = xml_float(element, "GantryAngle", source)
            info = XviFrameInfo(
                time_s=xml_float(element, "DeltaMs", source) / 1000.0,
                gantry_deg=gantry + 360.0 if gantry < 0 else gantry,
                u_centre_mm=xml_float(element, "UCentre", source),
                v_centre_mm=xml_float(element, "VCentre", source),
                usable=_flag(element, "Exposed", True) and not _flag(element, "Inactive", False),
            )
        except ImageReadError as exc:
            raise GeometryError(str(exc), field=exc.field) from exc
        frames.append(info)
    return tuple(frames)


def _geometry(info: XviFrameInfo, shape: tuple[int, int], path: Path) -> ProjectionGeometry:
    try:
        return ProjectionGeometry(
            sad_mm=XVI_SAD_MM,
            sdd_mm=XVI_SDD_MM,
            pixel_pitch_mm=(409.6 / shape[1], 409.6 / shape[0]),
            detector_shape=shape,
            detector_offset_mm=(-info.u_centre_mm, info.v_centre_mm),
            gantry_deg=info.gantry_deg,
        )
    except GeometryError as exc:
        raise with_file_context(exc, path) from exc


def read_his_sequence(
    source: str | Path | Sequence[str | Path],
    *,
    frames_xml: str | Path | None = None,
    skip_unusable: bool = True,
) -> FluoroSequence:
    """Read XVI ``.his`` frames with their ``_Frames.xml`` as a raw-signal sequence.

    The pixel pitch is the XVI panel's 409.6 mm over the frame size (0.4 mm at 1024, 0.8 mm
    binned 2x), as RTK assumes.

    Parameters
    ----------
    source : str, pathlib.Path or sequence of them
        A folder of ``.his`` files with its ``_Frames.xml`` (natural order), one file, or a
        list in order.
    frames_xml : str or pathlib.Path, optional
        The ``_Frames.xml``; found beside the frames when not given.
    skip_unusable : bool, optional
        Drop frames the XML marks not exposed or inactive (default).

    Raises
    ------
    ImageReadError
        Unreadable or hostile files, frames of different sizes.
    GeometryError
        No ``_Frames.xml``, or one listing a different number of frames than the files hold.
    """
    files, found_xml, anchor = recording_files(
        source, ".his", lambda path: path.name.lower() == "_frames.xml"
    )
    xml_path = Path(frames_xml) if frames_xml is not None else found_xml
    if xml_path is None:
        raise GeometryError(
            f"{anchor}: XVI frames need their _Frames.xml for gantry angles and times",
            field="frames_xml",
        )
    infos = read_xvi_frames_xml(xml_path)
    frames = [frame for path in files for frame in read_his_frames(path)]
    if len(frames) != len(infos):
        raise GeometryError(
            f"{xml_path} lists {len(infos)} frames but the .his files hold {len(frames)}",
            field="frames_xml",
        )
    kept = [i for i, info in enumerate(infos) if info.usable or not skip_unusable]
    if not kept:
        raise ImageReadError(f"{xml_path}: no exposed, active frame", field="frames_xml")
    shape = (int(frames[0].shape[0]), int(frames[0].shape[1]))
    geometries = [_geometry(infos[i], shape, xml_path) for i in kept]
    times = np.array([infos[i].time_s for i in kept], dtype=np.float64)
    return sequence_from_file_frames([frames[i] for i in kept], times, geometries, anchor)
