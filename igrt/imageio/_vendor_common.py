"""Shared discipline for the vendor projection readers: size bounds, safe XML, frame order.

Every vendor file is hostile until its header says otherwise: sizes are checked against the
file length and against fixed ceilings *before* anything is allocated, XML is parsed only after
refusing document type declarations (entity expansion), and only allow-listed elements and
properties are read.

Pixel layout and geometry follow RTK's reading of each format (``rtk::HisImageIO``,
``HndImageIO``, ``XimImageIO`` and its geometry readers), which :mod:`igrt.geometry` shares: an
RTK projection's row index runs along its detector ``+y`` (IEC ``+Y``, towards the gantry), ours
along ``v = -Y``, so each file frame is flipped upside down, and an RTK projection offset
``(x, y)`` is our ``detector_offset_mm = (x, -y)`` (``tests/fixtures/test_projector_vs_rtk.py``
checks that correspondence by projecting the same volume with both).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from igrt.errors import ImageReadError, InvalidInputError
from igrt.geometry import ProjectionGeometry
from igrt.imageio._failures import with_file_context
from igrt.sequence import FluoroSequence, IntensityValues

__all__ = [
    "MAX_FRAMES",
    "MAX_FRAME_FILE_BYTES",
    "MAX_PANEL_SIDE",
    "MAX_XML_BYTES",
    "check_panel",
    "frame_times_s",
    "local_name",
    "natural_key",
    "parse_xml",
    "read_bounded",
    "recording_files",
    "sequence_from_file_frames",
    "xml_float",
]

MAX_FRAME_FILE_BYTES = 128 * 1024 * 1024
"""Largest vendor frame file read, bytes (a 4096 x 4096 panel at 4 bytes is 64 MiB)."""

MAX_XML_BYTES = 8 * 1024 * 1024
"""Largest vendor XML file read, bytes."""

MAX_PANEL_SIDE = 4096
"""Largest panel side accepted, pixels."""

MAX_FRAMES = 20_000
"""Most frames accepted in one vendor recording."""

_DECLARATION = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def natural_key(path: Path) -> tuple[Any, ...]:
    """Sort key putting ``f2`` before ``f10``."""
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts))


def recording_files(
    source: str | Path | Sequence[str | Path], suffix: str, is_geometry_file: Callable[[Path], bool]
) -> tuple[list[Path], Path | None, Path]:
    """The frame files of a recording, its geometry file, and the path to name in messages.

    The geometry file is the one file beside the frames that ``is_geometry_file`` accepts
    (``None`` when there is none, or several); the path named is the folder or single file.
    ``source`` is one frame file (a geometry file beside it is looked for), a folder (frames
    with ``suffix`` in natural order, hidden files skipped) or a list of frame files in order
    (no geometry file looked for).
    """
    if not isinstance(source, str | Path):
        files = [Path(p) for p in source]
        if not files:
            raise ImageReadError(f"no {suffix} files given", field="source")
        return files, None, files[0].parent if len(files) > 1 else files[0]
    given = Path(source)
    folder = given.parent if given.is_file() else given
    if not folder.is_dir():
        raise ImageReadError(f"no such file or folder: {given}", field="source")
    entries = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    if given.is_file():
        files = [given]
    else:
        files = sorted((p for p in entries if p.suffix.lower() == suffix), key=natural_key)
    if not files:
        raise ImageReadError(f"no {suffix} files in {folder}", field="source")
    geometry = [p for p in entries if is_geometry_file(p)]
    return files, geometry[0] if len(geometry) == 1 else None, given


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refused when the file is larger than ``limit``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(f"cannot open {what} {path}: {exc.strerror}", field="path") from exc
    if size > limit:
        raise ImageReadError(
            f"{path} is {size} bytes, more than the {limit} bytes a {what} may have",
            field="path",
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read {what} {path}: {exc.strerror}", field="path") from exc


def check_panel(path: Path, rows: int, columns: int, n_frames: int = 1) -> None:
    """Refuse panel sizes and frame counts beyond the ceilings (before allocating)."""
    if not (1 <= rows <= MAX_PANEL_SIDE and 1 <= columns <= MAX_PANEL_SIDE):
        raise ImageReadError(
            f"{path}: a {rows} x {columns} panel is outside 1..{MAX_PANEL_SIDE} pixels a side",
            field="path",
        )
    if not 1 <= n_frames <= MAX_FRAMES:
        raise ImageReadError(f"{path}: {n_frames} frames is outside 1..{MAX_FRAMES}", field="path")


def parse_xml(path: Path) -> ET.Element:
    """Parse a vendor XML file after refusing DTDs and entities (no expansion attacks)."""
    data = read_bounded(path, MAX_XML_BYTES, "vendor XML file")
    if _DECLARATION.search(data):
        raise ImageReadError(
            f"{path}: XML with a DOCTYPE or ENTITY declaration is refused", field="path"
        )
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise ImageReadError(f"{path} is not well-formed XML: {exc}", field="path") from exc


def local_name(element: ET.Element) -> str:
    """Tag without its XML namespace."""
    return element.tag.rsplit("}", 1)[-1]


def xml_float(element: ET.Element, name: str, path: Path) -> float:
    """The finite number held by the child element ``name`` (namespace ignored)."""
    for child in element:
        if local_name(child) == name:
            text = (child.text or "").strip()
            try:
                value = float(text)
            except ValueError:
                raise ImageReadError(
                    f"{path}: <{name}> holds {text[:40]!r}, not a number", field=name
                ) from None
            if not math.isfinite(value):
                raise ImageReadError(f"{path}: <{name}> is not finite", field=name)
            return value
    raise ImageReadError(f"{path}: <{local_name(element)}> has no <{name}>", field=name)


def frame_times_s(
    n_frames: int, stated_s: Sequence[float] | None, fps: float | None, path: Path
) -> npt.NDArray[np.float64]:
    """Frame times from the files when they state them, otherwise from ``fps``."""
    if stated_s is not None:
        return np.asarray(stated_s, dtype=np.float64)
    if fps is None:
        if n_frames == 1:
            return np.zeros(1)
        raise ImageReadError(
            f"{path}: the files state no frame times; give the frame rate (fps)", field="fps"
        )
    if not math.isfinite(fps) or fps <= 0:
        raise ImageReadError(f"fps must be a positive number, got {fps!r}", field="fps")
    return np.arange(n_frames, dtype=np.float64) / float(fps)


def sequence_from_file_frames(
    frames: Sequence[npt.NDArray[Any]],
    timestamps_s: npt.NDArray[np.float64],
    geometries: Sequence[ProjectionGeometry],
    path: Path,
) -> FluoroSequence:
    """A raw-signal sequence from frames in file row order (flipped into ``v`` order).

    Varian's 32-bit unsigned pixels (20 significant bits on TrueBeam) become ``int32``, which
    :class:`~igrt.sequence.FluoroSequence` holds, without changing any value; a pixel beyond
    ``int32`` is refused rather than wrapped.
    """
    stack = np.stack([frame[::-1] for frame in frames])
    if stack.dtype == np.uint32:
        if stack.size and int(stack.max()) > np.iinfo(np.int32).max:
            raise ImageReadError(f"{path}: pixel values beyond 2**31 - 1", field="path")
        stack = stack.astype(np.int32)
    try:
        return FluoroSequence(stack, timestamps_s, tuple(geometries), IntensityValues.RAW)
    except InvalidInputError as exc:
        raise with_file_context(exc, path) from exc
