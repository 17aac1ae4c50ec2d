"""X-ray frame sequences in plain image files: a folder of PNG/TIFF frames, or one 3D MetaImage.

MetaImage layout (:func:`write_fluoro_mha`)
-------------------------------------------
The image is 3D, ``(columns, rows, n_frames)`` in ITK order (numpy ``(n, rows, columns)``), with
the pixel type of the frames kept. Spacing and origin are cosmetic (pitch and panel position of
frame 0 in mm, frame interval and first time in s) so that viewers show sensible units; the
authoritative values are header keys holding ``repr`` floats, which round-trip exactly:

==========================  =============================================================
``IGRT_Intensity``          ``raw`` or ``line_integral`` (:class:`IntensityValues` value)
``IGRT_TimestampsS``        frame times, s
``IGRT_GantryDeg``          kV source angle per frame, IEC 61217, deg
``IGRT_SadMm``              source-axis distance, mm
``IGRT_SddMm``              source-detector distance, mm
``IGRT_PixelPitchUMm``      pixel pitch along ``u``, mm
``IGRT_PixelPitchVMm``      pixel pitch along ``v``, mm
``IGRT_DetectorOffsetUMm``  panel centre offset from the piercing point along ``u``, mm
``IGRT_DetectorOffsetVMm``  panel centre offset from the piercing point along ``v``, mm
==========================  =============================================================

Each array key holds either one value (the same for every frame) or one per frame, and is split
into chunks of at most 256 numbers (keys ``IGRT_GantryDeg_000``, ``IGRT_GantryDeg_001``, ...)
because MetaIO cannot read very long header lines.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError, ImageReadError, InvalidInputError
from igrt.geometry import ProjectionGeometry
from igrt.imageio._failures import foreign_errors, with_file_context
from igrt.imageio.header_allowlist import read_image_header, read_image_voxels
from igrt.imageio.sniff import FileFormatValues, detect_format
from igrt.sequence import FluoroSequence, IntensityValues

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["FRAME_SUFFIXES", "read_fluoro_frames", "read_fluoro_mha", "write_fluoro_mha"]

_LOG = logging.getLogger(__name__)

FRAME_SUFFIXES = (".png", ".tif", ".tiff")
"""File endings taken as frames when a folder is given to :func:`read_fluoro_frames`."""

_KEY_INTENSITY = "IGRT_Intensity"
_KEY_TIMESTAMPS = "IGRT_TimestampsS"
_GEOMETRY_KEYS = (
    "IGRT_GantryDeg",
    "IGRT_SadMm",
    "IGRT_SddMm",
    "IGRT_PixelPitchUMm",
    "IGRT_PixelPitchVMm",
    "IGRT_DetectorOffsetUMm",
    "IGRT_DetectorOffsetVMm",
)
_CHUNK = 256


# --- PNG / TIFF frames ----------------------------------------------------------------------


def _natural_key(path: Path) -> tuple[Any, ...]:
    """Sort key putting ``frame2`` before ``frame10``."""
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts))


def _frame_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(source, str | Path):
        folder = Path(source)
        if not folder.exists():
            raise ImageReadError(f"no such file or folder: {folder}", field="source")
        if folder.is_file():
            return [folder]
        with foreign_errors(folder, "list folder"):
            files = [
                p
                for p in folder.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in FRAME_SUFFIXES
            ]
        if not files:
            raise ImageReadError(
                f"no frame files ({', '.join(FRAME_SUFFIXES)}) in folder {folder}", field="source"
            )
        return sorted(files, key=_natural_key)
    files = [Path(p) for p in source]
    if not files:
        raise ImageReadError("no frame files given", field="source")
    return files


def _read_frame(path: Path) -> npt.NDArray[Any]:
    import cv2

    if not path.is_file():
        raise ImageReadError(f"no such frame file: {path}", field="source")
    with foreign_errors(path, "read image file"):
        try:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        except cv2.error as exc:
            raise ImageReadError(f"cannot read image file {path}: {exc}", field="source") from exc
    if image is None:
        raise ImageReadError(
            f"cannot read image file {path}: not a PNG/TIFF image, or corrupt", field="source"
        )
    frame = np.asarray(image)
    if frame.ndim != 2:
        raise ImageReadError(
            f"{path} is a {frame.shape[2] if frame.ndim == 3 else frame.ndim}-channel image; "
            "frames must be greyscale",
            field="source",
        )
    return frame


def _timestamps_from(
    n_frames: int, fps: float | None, timestamps_s: npt.ArrayLike | None
) -> npt.NDArray[np.float64]:
    if (fps is None) == (timestamps_s is None):
        raise InvalidInputError("give exactly one of fps and timestamps_s", field="fps")
    if timestamps_s is not None:
        return np.asarray(timestamps_s, dtype=np.float64)
    if fps is None or not math.isfinite(fps) or fps <= 0:
        raise InvalidInputError(f"fps must be a positive number, got {fps!r}", field="fps")
    return np.arange(n_frames, dtype=np.float64) / float(fps)


def _geometries_for(
    geometry: ProjectionGeometry | Sequence[ProjectionGeometry], n_frames: int
) -> tuple[ProjectionGeometry, ...]:
    if isinstance(geometry, ProjectionGeometry):
        return (geometry,) * n_frames
    return tuple(geometry)


def read_fluoro_frames(
    source: str | Path | Sequence[str | Path],
    geometry: ProjectionGeometry | Sequence[ProjectionGeometry],
    *,
    fps: float | None = None,
    timestamps_s: npt.ArrayLike | None = None,
    intensity: IntensityValues = IntensityValues.RAW,
) -> FluoroSequence:
    """Read greyscale PNG/TIFF frames (read unchanged: 8/16-bit or float) as a sequence.

    Parameters
    ----------
    source : str, pathlib.Path or sequence of them
        A folder (its ``.png``/``.tif``/``.tiff`` files, hidden files skipped, in natural
        order: ``f2`` before ``f10``), one file, or a list of files read in the given order.
        Only the first page of a multi-page TIFF is read.
    geometry : ProjectionGeometry or sequence of ProjectionGeometry
        One geometry for every frame, or one per frame; these files carry none.
    fps : float or None, optional
        Frame rate; frame ``n`` is at ``n / fps`` s. Give this or ``timestamps_s``.
    timestamps_s : array_like or None, optional
        Time of every frame, s, strictly increasing.
    intensity : IntensityValues, optional
        Meaning of the pixel values; raw panel signal by default.

    Returns
    -------
    FluoroSequence

    Raises
    ------
    ImageReadError
        Missing or empty folder, unreadable or colour frame, frames of different sizes
        (messages name the file).
    GeometryError
        A geometry whose detector shape differs from the frames.
    InvalidInputError
        Both or neither of ``fps`` and ``timestamps_s``; bad timestamps.
    """
    files = _frame_files(source)
    frames = [_read_frame(path) for path in files]
    for path, frame in zip(files[1:], frames[1:], strict=True):
        if frame.shape != frames[0].shape or frame.dtype != frames[0].dtype:
            raise ImageReadError(
                f"{path} is {frame.shape} {frame.dtype} but {files[0]} is "
                f"{frames[0].shape} {frames[0].dtype}: not one sequence",
                field="source",
            )
    geometries = _geometries_for(geometry, len(frames))
    for geometry_item in geometries[:1]:
        if geometry_item.detector_shape != frames[0].shape:
            raise GeometryError(
                f"the geometry describes a {geometry_item.detector_shape} panel but {files[0]} "
                f"is {frames[0].shape}",
                field="geometry",
            )
    timestamps = _timestamps_from(len(frames), fps, timestamps_s)
    return FluoroSequence(np.stack(frames), timestamps, geometries, intensity)


# --- MetaImage ------------------------------------------------------------------------------


def _set_array(image: sitk.Image, key: str, values: Sequence[float]) -> None:
    numbers = [float(v) for v in values]
    if all(v == numbers[0] for v in numbers):
        numbers = numbers[:1]
    for chunk, start in enumerate(range(0, len(numbers), _CHUNK)):
        text = " ".join(repr(v) for v in numbers[start : start + _CHUNK])
        image.SetMetaData(f"{key}_{chunk:03d}", text)


def _get_array(
    metadata: dict[str, str], key: str, n_frames: int, path: Path
) -> npt.NDArray[np.float64] | None:
    if f"{key}_000" not in metadata:
        return None
    tokens: list[str] = []
    chunk = 0
    while f"{key}_{chunk:03d}" in metadata:
        tokens.extend(metadata[f"{key}_{chunk:03d}"].split())
        chunk += 1
    try:
        values = np.array([float(token) for token in tokens], dtype=np.float64)
    except ValueError as exc:
        raise ImageReadError(
            f"{path}: header key {key} is not a list of numbers", field=key
        ) from exc
    if values.size not in (1, n_frames) or not np.all(np.isfinite(values)):
        raise ImageReadError(
            f"{path}: header key {key} holds {values.size} values for {n_frames} frames "
            "(or non-finite values)",
            field=key,
        )
    return np.broadcast_to(values, (n_frames,)).copy()


def write_fluoro_mha(sequence: FluoroSequence, path: str | Path, *, compress: bool = True) -> Path:
    """Write a sequence as one 3D MetaImage whose third axis is the frame index.

    Frames keep their dtype; timestamps, per-frame geometry and intensity go into header keys
    (module docstring), so :func:`read_fluoro_mha` restores the sequence exactly.

    Parameters
    ----------
    sequence : FluoroSequence
        The sequence.
    path : str or pathlib.Path
        Destination ending in ``.mha`` (or ``.mhd``).
    compress : bool, optional
        zlib-compress the pixels (default).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    InvalidInputError
        Wrong file ending, or the file cannot be written.
    """
    import SimpleITK as sitk

    destination = Path(path)
    if not destination.name.lower().endswith((".mha", ".mhd")):
        raise InvalidInputError(
            f"a MetaImage path must end in .mha or .mhd, got {destination.name}", field="path"
        )
    geometries = sequence.geometries
    first = geometries[0]
    image = sitk.GetImageFromArray(np.ascontiguousarray(sequence.frames))
    interval_s = float(np.median(np.diff(sequence.timestamps_s))) if sequence.n_frames > 1 else 1.0
    image.SetSpacing((first.pixel_pitch_mm[0], first.pixel_pitch_mm[1], interval_s))
    u0, v0 = first.detector_mm_from_pixel(0.0, 0.0)
    image.SetOrigin((float(u0), float(v0), float(sequence.timestamps_s[0])))
    image.SetMetaData(_KEY_INTENSITY, sequence.intensity.value)
    _set_array(image, _KEY_TIMESTAMPS, sequence.timestamps_s.tolist())
    columns: dict[str, list[float]] = {
        "IGRT_GantryDeg": [g.gantry_deg for g in geometries],
        "IGRT_SadMm": [g.sad_mm for g in geometries],
        "IGRT_SddMm": [g.sdd_mm for g in geometries],
        "IGRT_PixelPitchUMm": [g.pixel_pitch_mm[0] for g in geometries],
        "IGRT_PixelPitchVMm": [g.pixel_pitch_mm[1] for g in geometries],
        "IGRT_DetectorOffsetUMm": [g.detector_offset_mm[0] for g in geometries],
        "IGRT_DetectorOffsetVMm": [g.detector_offset_mm[1] for g in geometries],
    }
    for key, values in columns.items():
        _set_array(image, key, values)
    with foreign_errors(destination, "write image file", error=InvalidInputError):
        sitk.WriteImage(image, str(destination), useCompression=compress)
    return destination


def _mha_geometries(
    metadata: dict[str, str],
    path: Path,
    n_frames: int,
    shape: tuple[int, int],
    fallback_geometry: ProjectionGeometry | None,
) -> tuple[ProjectionGeometry, ...]:
    arrays = {key: _get_array(metadata, key, n_frames, path) for key in _GEOMETRY_KEYS}
    present = {key: values for key, values in arrays.items() if values is not None}
    missing = [key for key in _GEOMETRY_KEYS if key not in present]
    if not missing:
        try:
            return tuple(
                ProjectionGeometry(
                    sad_mm=float(present["IGRT_SadMm"][i]),
                    sdd_mm=float(present["IGRT_SddMm"][i]),
                    pixel_pitch_mm=(
                        float(present["IGRT_PixelPitchUMm"][i]),
                        float(present["IGRT_PixelPitchVMm"][i]),
                    ),
                    detector_shape=shape,
                    detector_offset_mm=(
                        float(present["IGRT_DetectorOffsetUMm"][i]),
                        float(present["IGRT_DetectorOffsetVMm"][i]),
                    ),
                    gantry_deg=float(present["IGRT_GantryDeg"][i]),
                )
                for i in range(n_frames)
            )
        except GeometryError as exc:
            raise with_file_context(exc, path) from exc
    if len(missing) < len(_GEOMETRY_KEYS):
        raise GeometryError(
            f"{path}: the header has some igrt geometry keys but lacks {', '.join(missing)}",
            field=missing[0],
        )
    if fallback_geometry is None:
        raise GeometryError(
            f"{path} carries no projection geometry (header keys {', '.join(_GEOMETRY_KEYS)}): "
            "pass fallback_geometry",
            field=missing[0],
        )
    if fallback_geometry.detector_shape != shape:
        raise GeometryError(
            f"{path}: fallback_geometry describes a {fallback_geometry.detector_shape} panel but "
            f"the frames are {shape}",
            field="fallback_geometry",
        )
    _LOG.warning("%s carries no geometry; using the caller's fallback_geometry", path)
    return (fallback_geometry,) * n_frames


def _mha_timestamps(
    metadata: dict[str, str], path: Path, n_frames: int, fallback_fps: float | None
) -> npt.NDArray[np.float64]:
    timestamps = _get_array(metadata, _KEY_TIMESTAMPS, n_frames, path)
    if timestamps is not None:
        return timestamps
    if n_frames == 1:
        return np.zeros(1)
    if fallback_fps is None:
        raise ImageReadError(
            f"{path} holds {n_frames} frames but no {_KEY_TIMESTAMPS} header key: pass "
            "fallback_fps",
            field=_KEY_TIMESTAMPS,
        )
    if not math.isfinite(fallback_fps) or fallback_fps <= 0:
        raise InvalidInputError(
            f"fallback_fps must be positive, got {fallback_fps}", field="fallback_fps"
        )
    _LOG.warning("%s has no frame times; using fallback_fps=%s", path, fallback_fps)
    return np.arange(n_frames, dtype=np.float64) / float(fallback_fps)


def _mha_intensity(
    metadata: dict[str, str], path: Path, requested: IntensityValues | None
) -> IntensityValues:
    text = metadata.get(_KEY_INTENSITY, "").strip()
    stated: IntensityValues | None = None
    if text:
        try:
            stated = IntensityValues(text)
        except ValueError:
            raise ImageReadError(
                f"{path}: unknown {_KEY_INTENSITY} {text!r}", field=_KEY_INTENSITY
            ) from None
    if requested is not None:
        if stated is not None and stated is not requested:
            raise InvalidInputError(
                f"{path} states {stated.name} pixels but intensity={requested.name} was passed",
                field="intensity",
            )
        return requested
    if stated is None:
        raise ImageReadError(
            f"{path} does not say what its pixels mean (no {_KEY_INTENSITY} key): pass intensity",
            field=_KEY_INTENSITY,
        )
    return stated


def _nifti_frames(source: Path, max_decoded_bytes: int | None) -> npt.NDArray[Any]:
    """A NIfTI frame stack, through SimpleITK's NIfTI reader only (never one picked by content).

    A NIfTI header cannot name another file; its voxel count is checked before decoding.
    """
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("NiftiImageIO")
    reader.SetFileName(str(source))
    with foreign_errors(source, "read image file"):
        reader.ReadImageInformation()
        components = reader.GetNumberOfComponents()
        size = [int(n) for n in reader.GetSize()]
    if components != 1 or len(size) not in (2, 3):
        raise ImageReadError(
            f"{source} holds a {len(size)}D image with {components} component(s); expected a "
            "scalar 2D frame or 3D frame stack",
            field="path",
        )
    if max_decoded_bytes is not None and math.prod(size) * 8 > max_decoded_bytes:
        raise ImageReadError(
            f"{source}: {' x '.join(map(str, size))} pixels may take more than the limit of "
            f"{max_decoded_bytes} bytes decoded",
            field="path",
        )
    with foreign_errors(source, "read image file"):
        return np.asarray(sitk.GetArrayFromImage(reader.Execute()))


def read_fluoro_mha(
    path: str | Path,
    *,
    fallback_geometry: ProjectionGeometry | None = None,
    fallback_fps: float | None = None,
    intensity: IntensityValues | None = None,
    max_decoded_bytes: int | None = None,
) -> FluoroSequence:
    """Read a frame stack from a 3D MetaImage whose third axis is the frame index.

    The reader is chosen by the file's content. A MetaImage or NRRD header is read with an
    allow-list (:mod:`igrt.imageio.header_allowlist`): the frames must follow it in the same
    file (a ``.mhd`` may name a data file beside it), and a header naming any other file, or a
    key off the list, is refused before anything else is read.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.mha``/``.mhd`` (or NRRD, or NIfTI) holding a 2D (one frame) or 3D scalar image.
    fallback_geometry : ProjectionGeometry or None, optional
        Used for every frame only when the file carries no igrt geometry keys (logged).
    fallback_fps : float or None, optional
        Used only when a multi-frame file has no ``IGRT_TimestampsS`` key.
    intensity : IntensityValues or None, optional
        Needed when the file has no ``IGRT_Intensity`` key; must agree when it has.
    max_decoded_bytes : int or None, optional
        Refuse, before reading the frames, a header declaring more decoded bytes.

    Returns
    -------
    FluoroSequence

    Raises
    ------
    ImageReadError
        Missing, unreadable or non-scalar file; malformed keys; missing times or intensity
        without a fallback; over ``max_decoded_bytes``.
    UnsafeHeaderError
        A header key off the allow-list, or voxels in another file.
    GeometryError
        No (or incomplete) geometry keys and no ``fallback_geometry``.
    """
    source = Path(path)
    if not source.is_file():
        raise ImageReadError(f"no such file: {source}", field="path")
    metadata: dict[str, str] = {}
    if detect_format(source) in (FileFormatValues.NIFTI, FileFormatValues.GZIP):
        frames = _nifti_frames(source, max_decoded_bytes)
    else:
        sibling_allowed = source.name.lower().endswith(".mhd")
        header = read_image_header(source, allow_sibling_data_file=sibling_allowed)
        metadata.update(header.metadata)
        frames = read_image_voxels(header, max_decoded_bytes=max_decoded_bytes)
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    n_frames, rows, columns = (int(n) for n in frames.shape)
    geometries = _mha_geometries(metadata, source, n_frames, (rows, columns), fallback_geometry)
    timestamps = _mha_timestamps(metadata, source, n_frames, fallback_fps)
    meaning = _mha_intensity(metadata, source, intensity)
    try:
        return FluoroSequence(frames, timestamps, geometries, meaning)
    except InvalidInputError as exc:
        raise with_file_context(exc, source) from exc
