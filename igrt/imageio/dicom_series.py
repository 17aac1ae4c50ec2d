"""DICOM image series, one slice per file: read into a :class:`~igrt.volume.Volume`, write as CT.

Geometry (PS3.3 C.7.6.2)
------------------------
ImageOrientationPatient (0020,0037)
    Row direction ``r`` (towards increasing column index ``i``) then column direction ``c``
    (towards increasing row index ``j``), unit vectors in DICOM patient LPS. Never assumed
    axial.
ImagePositionPatient (0020,0032)
    LPS position in mm of the *centre* of the first voxel of the slice (``STYLE.md`` pitfall 6).
PixelSpacing (0028,0030)
    ``(row spacing, column spacing)`` = spacing along ``j`` then along ``i`` (pitfall 3).

Slices are ordered along the normal ``n = r x c`` by the projection of their position on it,
whatever the file names or Instance Numbers say. The volume's ``k`` axis is ``+n``, so a volume
read here always has a right-handed direction matrix with columns ``(r, c, n)``; the slice
spacing is measured from the positions (SliceThickness is ignored for a stack of slices).

The writer places slice ``k`` at ``origin + k * spacing_k * direction[:, 2]``. For a volume
with a left-handed direction matrix (third column ``-(r x c)``) the file geometry is still
exact, but reading it back yields ``k`` reversed and a right-handed direction: the same voxel
positions in another index order.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, CTImageStorage

from igrt.errors import FrameOfReferenceError, GeometryError, ImageReadError, InvalidInputError
from igrt.frame_of_reference import PatientPositionValues
from igrt.imageio._dicom_attributes import (
    attribute_label,
    ds_string,
    make_uid,
    new_part10_dataset,
    optional_float,
    optional_floats,
    optional_text,
    patient_identity,
    validated_uid,
)
from igrt.imageio._dicom_file import check_transfer_syntax
from igrt.imageio._dicom_pixels import decode_pixels
from igrt.imageio._failures import (
    FOREIGN_ERRORS,
    MALFORMED_VALUE_ERRORS,
    describe,
    foreign_errors,
)
from igrt.imageio._rescale import encode_as_integers
from igrt.imageio.results import LoadedVolume, WrittenDicom
from igrt.patient_identity import PatientIdentity, check_same_patient
from igrt.volume import Volume

__all__ = ["read_dicom_file", "read_dicom_folder", "write_ct_series"]

ORIENTATION_TOLERANCE = 1e-4
"""Largest accepted difference between direction cosines of slices of one series."""

SLICE_TOLERANCE_MM = 0.01
"""Largest accepted deviation of a slice from the regular grid (gap or in-plane drift), mm."""

_WRITTEN_NAME = re.compile(r"CT_\d{4,}\.dcm")
_GEOMETRY_KEYWORDS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")

DICOM_LIKE_SUFFIXES = frozenset({"", ".dcm", ".dicom", ".dic", ".ima"})
"""File endings (besides purely numeric ones, ``CT.1.2.3``) that promise a DICOM file.

A file so named that has no DICOM header is reported as corrupt rather than skipped, so that a
slice truncated before its header ends cannot silently drop out of a series.
"""


@dataclass(frozen=True, eq=False)
class _Slice:
    path: Path
    header: Dataset
    position_lps_mm: npt.NDArray[np.float64]
    orientation: npt.NDArray[np.float64]
    pixel_spacing_mm: tuple[float, float]
    rows: int
    columns: int


# --- scanning -------------------------------------------------------------------------------


def _read_header(path: Path) -> Dataset | None:
    """The header of a DICOM file, or ``None`` when the file is not DICOM at all."""
    check_transfer_syntax(path)
    try:
        return dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return None
    except FOREIGN_ERRORS as exc:
        raise ImageReadError(
            f"cannot read DICOM file {path}: {describe(exc)}", field="path"
        ) from exc


def _require_well_formed(header: Dataset, path: Path) -> None:
    meta = header.file_meta
    if meta is None or "TransferSyntaxUID" not in meta or "SOPClassUID" not in header:
        raise ImageReadError(
            f"{path} is a corrupt or truncated DICOM file: no SOP Class UID or Transfer Syntax "
            "UID could be read",
            field="path",
        )


def _is_image(header: Dataset, path: Path) -> bool:
    sop_class = UID(str(header.SOPClassUID))
    looks_like_image = "Image Storage" in sop_class.name
    if "Rows" in header and "Columns" in header:
        return True
    if looks_like_image:
        raise ImageReadError(
            f"{path} claims to be a {sop_class.name} instance but has no image size "
            "(Rows/Columns): corrupt or truncated",
            field="path",
        )
    return False


def _slice_from_header(path: Path, header: Dataset) -> _Slice:
    n_frames = int(header.get("NumberOfFrames", 1) or 1)
    if n_frames != 1:
        raise ImageReadError(
            f"{path} is a multi-frame image ({n_frames} frames); volumes are read from one "
            "slice per file (use read_fluoro_dicom for an X-ray frame sequence)",
            field="path",
        )
    position = optional_floats(header, "ImagePositionPatient", path)
    orientation = optional_floats(header, "ImageOrientationPatient", path)
    spacing = optional_floats(header, "PixelSpacing", path)
    if position is None or orientation is None or spacing is None:
        found = (position, orientation, spacing)
        missing = [kw for kw, value in zip(_GEOMETRY_KEYWORDS, found, strict=True) if value is None]
        labels = ", ".join(attribute_label(keyword) for keyword in missing)
        raise GeometryError(
            f"{path} lacks {labels}: it cannot be placed in the patient frame", field=missing[0]
        )
    if len(position) != 3 or len(orientation) != 6 or len(spacing) != 2:
        raise GeometryError(
            f"{path}: ImagePositionPatient needs 3 values, ImageOrientationPatient 6 and "
            f"PixelSpacing 2; got {len(position)}, {len(orientation)} and {len(spacing)}",
            field="ImageOrientationPatient",
        )
    if min(spacing) <= 0:
        raise GeometryError(
            f"{path}: {attribute_label('PixelSpacing')} must be positive, got {spacing}",
            field="PixelSpacing",
        )
    samples = int(header.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise ImageReadError(
            f"{path} is a colour image ({samples} samples per pixel); expected greyscale",
            field="path",
        )
    return _Slice(
        path=path,
        header=header,
        position_lps_mm=np.asarray(position, np.float64),
        orientation=np.asarray(orientation, np.float64),
        pixel_spacing_mm=(spacing[0], spacing[1]),
        rows=int(header.Rows),
        columns=int(header.Columns),
    )


def _named_like_dicom(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in DICOM_LIKE_SUFFIXES or suffix[1:].isdigit()


def _scan_folder(folder: Path) -> tuple[dict[str, list[tuple[Path, Dataset]]], list[str]]:
    """Image headers grouped by Series Instance UID, and notes on the files left out."""
    series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    not_dicom: list[str] = []
    not_image: list[str] = []
    with foreign_errors(folder, "list folder"):
        entries = sorted(folder.iterdir())
    for path in entries:
        if path.name.startswith(".") or not path.is_file():
            continue
        header = _read_header(path)
        if header is None:
            if _named_like_dicom(path):
                raise ImageReadError(
                    f"{path} is named like a DICOM file but has no DICOM header "
                    "(truncated or corrupt?)",
                    field="path",
                )
            not_dicom.append(path.name)
            continue
        _require_well_formed(header, path)
        if not _is_image(header, path):
            not_image.append(f"{path.name} ({UID(str(header.SOPClassUID)).name})")
            continue
        uid = optional_text(header, "SeriesInstanceUID") or ""
        series[uid].append((path, header))
    notes = []
    if not_dicom:
        notes.append(f"ignored {len(not_dicom)} non-DICOM file(s): {', '.join(not_dicom)}")
    if not_image:
        notes.append(f"ignored {len(not_image)} non-image DICOM file(s): {', '.join(not_image)}")
    return series, notes


def _choose_series(
    series: dict[str, list[tuple[Path, Dataset]]],
    folder: Path,
    series_instance_uid: str | None,
    notes: list[str],
) -> list[tuple[Path, Dataset]]:
    if not series:
        detail = f" ({'; '.join(notes)})" if notes else ""
        raise ImageReadError(f"no DICOM image files in folder {folder}{detail}", field="path")

    def summary() -> str:
        parts = []
        for uid, members in sorted(series.items()):
            modality = optional_text(members[0][1], "Modality") or "?"
            parts.append(f"{uid or '<no SeriesInstanceUID>'} ({modality}, {len(members)} files)")
        return "; ".join(parts)

    if series_instance_uid is not None:
        if series_instance_uid not in series:
            raise ImageReadError(
                f"folder {folder} holds no series {series_instance_uid}; it holds {summary()}",
                field="series_instance_uid",
            )
        return series[series_instance_uid]
    if len(series) > 1:
        raise ImageReadError(
            f"folder {folder} mixes {len(series)} image series: {summary()}; pass "
            "series_instance_uid to choose one",
            field="series_instance_uid",
        )
    return next(iter(series.values()))


# --- assembling -----------------------------------------------------------------------------


def _common_text(slices: list[_Slice], keyword: str) -> str | None:
    values = {text for s in slices if (text := optional_text(s.header, keyword)) is not None}
    if len(values) > 1:
        raise FrameOfReferenceError(
            f"slices of one series disagree on {attribute_label(keyword)}: {sorted(values)} "
            f"(first file {slices[0].path})",
            field=keyword,
        )
    return values.pop() if values else None


def _common_patient(slices: list[_Slice]) -> PatientIdentity:
    """The one patient every slice names (slices of two patients in one series are refused)."""
    first = patient_identity(slices[0].header)
    for other in slices[1:]:
        check_same_patient(
            patient_identity(other.header),
            first,
            what=f"{other.path.name} (another slice: {slices[0].path.name})",
            field="PatientID",
        )
    return first


def _check_consistent(slices: list[_Slice]) -> None:
    first = slices[0]
    for other in slices[1:]:
        if (other.rows, other.columns) != (first.rows, first.columns):
            raise ImageReadError(
                f"{other.path} is {other.rows}x{other.columns} pixels but {first.path} is "
                f"{first.rows}x{first.columns}: not one volume",
                field="path",
            )
        if np.max(np.abs(other.orientation - first.orientation)) > ORIENTATION_TOLERANCE:
            raise GeometryError(
                f"{other.path} and {first.path} have different "
                f"{attribute_label('ImageOrientationPatient')}: "
                f"{other.orientation.tolist()} vs {first.orientation.tolist()}",
                field="ImageOrientationPatient",
            )
        if not np.allclose(other.pixel_spacing_mm, first.pixel_spacing_mm, rtol=1e-6, atol=0):
            raise GeometryError(
                f"{other.path} and {first.path} have different {attribute_label('PixelSpacing')}"
                f": {other.pixel_spacing_mm} vs {first.pixel_spacing_mm}",
                field="PixelSpacing",
            )


def _direction(first: _Slice) -> npt.NDArray[np.float64]:
    row_cosine = first.orientation[:3]
    column_cosine = first.orientation[3:]
    norms = (float(np.linalg.norm(row_cosine)), float(np.linalg.norm(column_cosine)))
    if (
        abs(norms[0] - 1.0) > ORIENTATION_TOLERANCE
        or abs(norms[1] - 1.0) > ORIENTATION_TOLERANCE
        or abs(float(row_cosine @ column_cosine)) > ORIENTATION_TOLERANCE
    ):
        raise GeometryError(
            f"{first.path}: {attribute_label('ImageOrientationPatient')} "
            f"{first.orientation.tolist()} is not two orthogonal unit vectors",
            field="ImageOrientationPatient",
        )
    normal = np.cross(row_cosine, column_cosine)
    normal /= np.linalg.norm(normal)
    return np.column_stack((row_cosine, column_cosine, normal))


def _slice_spacing(
    ordered: list[_Slice], along_normal_mm: npt.NDArray[np.float64], normal: npt.NDArray[np.float64]
) -> float:
    gaps = np.diff(along_normal_mm)
    smallest = int(np.argmin(gaps))
    if gaps[smallest] < SLICE_TOLERANCE_MM:
        raise ImageReadError(
            f"{ordered[smallest].path} and {ordered[smallest + 1].path} lie at the same slice "
            "position: several acquisitions or temporal phases share this series",
            field="path",
        )
    spacing = float(along_normal_mm[-1] - along_normal_mm[0]) / (len(ordered) - 1)
    worst = int(np.argmax(np.abs(gaps - spacing)))
    if abs(gaps[worst] - spacing) > SLICE_TOLERANCE_MM:
        raise GeometryError(
            f"inconsistent slice spacing: {gaps[worst]:.4f} mm between {ordered[worst].path.name}"
            f" and {ordered[worst + 1].path.name}, {spacing:.4f} mm on average over "
            f"{len(ordered)} slices in {ordered[0].path.parent} (missing or extra slice?)",
            field="ImagePositionPatient",
        )
    origin = ordered[0].position_lps_mm
    offsets = np.array([s.position_lps_mm - origin for s in ordered])
    drift = offsets - np.outer(along_normal_mm - along_normal_mm[0], normal)
    worst_drift = int(np.argmax(np.linalg.norm(drift, axis=1)))
    if np.linalg.norm(drift[worst_drift]) > SLICE_TOLERANCE_MM:
        raise GeometryError(
            f"{ordered[worst_drift].path} is displaced "
            f"{np.linalg.norm(drift[worst_drift]):.3f} mm within the slice plane relative to "
            f"{ordered[0].path.name}: a sheared stack (gantry tilt?) is not a regular volume",
            field="ImagePositionPatient",
        )
    return spacing


def _single_slice_spacing(only: _Slice, notes: list[str]) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = optional_float(only.header, keyword, only.path)
        if value is not None and value > 0:
            notes.append(f"single slice: k spacing {value} mm taken from {keyword}")
            return value
    notes.append("single slice without SliceThickness: nominal k spacing of 1 mm")
    return 1.0


def _rescale(header: Dataset, path: Path) -> tuple[float, float]:
    slope = optional_float(header, "RescaleSlope", path)
    intercept = optional_float(header, "RescaleIntercept", path)
    return (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)


def _value_range(s: _Slice) -> tuple[float, float] | None:
    """Smallest and largest value after the Modality LUT that the header allows.

    ``None`` when the rescale is not integral (the values then need a float type).
    """
    slope, intercept = _rescale(s.header, s.path)
    if not (slope.is_integer() and intercept.is_integer()):
        return None
    bits = int(s.header.get("BitsStored", 0) or s.header.get("BitsAllocated", 16) or 16)
    signed = int(s.header.get("PixelRepresentation", 0) or 0) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    ends = (low * slope + intercept, high * slope + intercept)
    return min(ends), max(ends)


def _volume_dtype(slices: list[_Slice]) -> np.dtype[Any]:
    """The voxel type of the volume, chosen from the headers before any pixel is decoded."""
    ranges = [_value_range(s) for s in slices]
    if any(r is None for r in ranges):
        return np.dtype(np.float32)
    low = min(r[0] for r in ranges if r is not None)
    high = max(r[1] for r in ranges if r is not None)
    for candidate in (np.int16, np.int32):
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            return np.dtype(candidate)
    return np.dtype(np.float32)


def _check_size(
    slices: list[_Slice], dtype: np.dtype[Any], max_voxels: int | None, max_bytes: int | None
) -> None:
    first = slices[0]
    voxels = len(slices) * first.rows * first.columns
    where = first.path.parent
    if max_voxels is not None and voxels > max_voxels:
        raise ImageReadError(
            f"{where}: {len(slices)} slices of {first.rows} x {first.columns} are {voxels} "
            f"voxels, more than the limit of {max_voxels}",
            field="path",
        )
    if max_bytes is not None and voxels * dtype.itemsize > max_bytes:
        raise ImageReadError(
            f"{where}: {len(slices)} slices of {first.rows} x {first.columns} {dtype} voxels "
            f"would take {voxels * dtype.itemsize} bytes decoded, more than the limit of "
            f"{max_bytes}",
            field="path",
        )


def _decode_into(target: npt.NDArray[Any], s: _Slice) -> None:
    """Decode one slice, apply its Modality LUT, and write it into ``target`` (one plane)."""
    with foreign_errors(s.path, "read DICOM file"):
        check_transfer_syntax(s.path)
        dataset = dcmread(s.path)
    decoded = decode_pixels(dataset, s.path)
    values = decoded.array[0]
    if values.shape != target.shape:
        raise ImageReadError(
            f"{s.path}: decoded pixels are {values.shape}, the header says {target.shape}",
            field="path",
        )
    slope, intercept = (1.0, 0.0) if decoded.rescaled else _rescale(dataset, s.path)
    if np.issubdtype(target.dtype, np.integer):
        low = float(values.min()) * slope + intercept
        high = float(values.max()) * slope + intercept
        info = np.iinfo(target.dtype)
        if min(low, high) < info.min or max(low, high) > info.max:
            raise ImageReadError(
                f"{s.path} holds values beyond what its BitsStored and Rescale Slope/Intercept "
                "allow (corrupt header?)",
                field="path",
            )
        np.copyto(target, values, casting="unsafe")
        if slope != 1.0:
            target *= int(slope)
        if intercept != 0.0:
            target += int(intercept)
        return
    np.multiply(values, np.float32(slope), out=target, casting="unsafe")
    target += np.float32(intercept)


def _decode_volume(ordered: list[_Slice], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Every slice decoded straight into one preallocated array of the final type."""
    first = ordered[0]
    array = np.empty((len(ordered), first.rows, first.columns), dtype)
    for k, s in enumerate(ordered):
        _decode_into(array[k], s)
    if array.dtype == np.int32 and array.size:
        info = np.iinfo(np.int16)
        if info.min <= int(array.min()) and int(array.max()) <= info.max:
            return array.astype(np.int16)
    return array


def _assemble(
    slices: list[_Slice],
    notes: list[str],
    max_voxels: int | None = None,
    max_decoded_bytes: int | None = None,
) -> LoadedVolume:
    _check_consistent(slices)
    dtype = _volume_dtype(slices)
    _check_size(slices, dtype, max_voxels, max_decoded_bytes)
    direction = _direction(slices[0])
    normal = direction[:, 2]
    along_normal = np.array([s.position_lps_mm @ normal for s in slices])
    order = np.argsort(along_normal, kind="stable")
    ordered = [slices[int(i)] for i in order]
    along_normal = along_normal[order]
    if len(ordered) > 1:
        spacing_k = _slice_spacing(ordered, along_normal, normal)
    else:
        spacing_k = _single_slice_spacing(ordered[0], notes)
    frame_of_reference_uid = _common_text(ordered, "FrameOfReferenceUID")
    patient_position = _common_text(ordered, "PatientPosition")
    patient = _common_patient(ordered)
    array = _decode_volume(ordered, dtype)
    row_spacing, column_spacing = ordered[0].pixel_spacing_mm
    try:
        volume = Volume(
            array,
            spacing_mm=(column_spacing, row_spacing, spacing_k),
            origin_lps_mm=ordered[0].position_lps_mm,
            direction=direction,
            frame_of_reference_uid=frame_of_reference_uid,
        )
    except InvalidInputError as exc:
        raise type(exc)(f"{ordered[0].path.parent}: {exc}", field=exc.field) from exc
    header = ordered[0].header
    return LoadedVolume(
        volume=volume,
        patient_position=patient_position,
        series_instance_uid=optional_text(header, "SeriesInstanceUID"),
        study_instance_uid=optional_text(header, "StudyInstanceUID"),
        modality=optional_text(header, "Modality"),
        source_files=tuple(s.path for s in ordered),
        notes=tuple(notes),
        patient=patient,
    )


def read_dicom_folder(
    folder: Path,
    *,
    series_instance_uid: str | None = None,
    max_voxels: int | None = None,
    max_decoded_bytes: int | None = None,
) -> LoadedVolume:
    """Read the one image series in ``folder`` (files in any order) as a volume.

    Non-DICOM files (``.txt``, ...), hidden files, sub-folders and non-image DICOM instances
    (RT Structure Set, RT Plan, DICOMDIR) are skipped and listed in ``notes``. A file named like
    DICOM (``.dcm``, no suffix, a numeric suffix) without a DICOM header is an error, not
    skipped: it is most likely a truncated slice.

    Parameters
    ----------
    folder : pathlib.Path
        Folder holding one file per slice.
    series_instance_uid : str or None, optional
        Which series to read when the folder holds several.
    max_voxels, max_decoded_bytes : int or None, optional
        Refuse, from the headers and before any pixel is decoded, a series of more voxels or
        more decoded bytes (in the volume's voxel type) than these.

    Returns
    -------
    LoadedVolume
        Voxels after the Modality LUT (HU for CT), ``int16`` when every slice's slope and
        intercept are integers and the values fit, else ``int32`` or ``float32``; slices are
        decoded one at a time into one array of that type (chosen from the headers' Bits
        Stored, Pixel Representation and rescale). ``patient`` is the patient every slice
        names.

    Raises
    ------
    ImageReadError
        Empty folder, corrupt or truncated file, several series without a choice, slices of
        different sizes, two slices at one position.
    GeometryError
        Missing or inconsistent orientation, spacing or position (irregular slice spacing,
        sheared stack).
    FrameOfReferenceError
        Slices disagree on Frame of Reference UID or Patient Position.
    PatientMismatchError
        Slices name different patients.
    """
    series, notes = _scan_folder(folder)
    members = _choose_series(series, folder, series_instance_uid, notes)
    slices = []
    for path, header in members:
        with foreign_errors(path, "read DICOM header of", catch=MALFORMED_VALUE_ERRORS):
            slices.append(_slice_from_header(path, header))
    return _assemble(slices, notes, max_voxels, max_decoded_bytes)


def read_dicom_file(
    path: Path, *, max_voxels: int | None = None, max_decoded_bytes: int | None = None
) -> LoadedVolume:
    """Read one single-frame DICOM image file as a one-slice volume (see ``read_dicom_folder``).

    The ``k`` spacing of a single slice affects no voxel position; it is taken from
    SpacingBetweenSlices or SliceThickness (1 mm when neither is present) and ``notes`` says
    which.
    """
    header = _read_header(path)
    if header is None:
        raise ImageReadError(f"{path} is not a DICOM file", field="path")
    _require_well_formed(header, path)
    if not _is_image(header, path):
        raise ImageReadError(
            f"{path} is a {UID(str(header.SOPClassUID)).name} instance, not an image",
            field="path",
        )
    with foreign_errors(path, "read DICOM header of", catch=MALFORMED_VALUE_ERRORS):
        only = _slice_from_header(path, header)
    return _assemble([only], [], max_voxels, max_decoded_bytes)


# --- writing --------------------------------------------------------------------------------


def _resolve_frame_of_reference(volume: Volume, requested: str | None, uid_seed: str | None) -> str:
    if requested is not None:
        validated_uid(requested, "frame_of_reference_uid")
        if volume.frame_of_reference_uid not in (None, requested):
            raise FrameOfReferenceError(
                f"the volume belongs to frame of reference {volume.frame_of_reference_uid}, "
                f"not {requested}: writing it under another frame would mix frames",
                field="frame_of_reference_uid",
            )
        return requested
    if volume.frame_of_reference_uid is not None:
        return validated_uid(volume.frame_of_reference_uid, "volume.frame_of_reference_uid")
    return make_uid(uid_seed, "frame-of-reference")


def _prepare_folder(folder: Path, *, overwrite: bool) -> None:
    with foreign_errors(folder, "prepare folder", error=InvalidInputError):
        if folder.exists():
            if not folder.is_dir():
                raise InvalidInputError(f"{folder} exists and is not a folder", field="folder")
            entries = list(folder.iterdir())
            ours = [p for p in entries if p.is_file() and _WRITTEN_NAME.fullmatch(p.name)]
            if entries and not (overwrite and len(ours) == len(entries)):
                hint = (
                    "" if overwrite else " (pass overwrite=True to replace a series written here)"
                )
                raise InvalidInputError(
                    f"folder {folder} is not empty: a series written into it could mix with "
                    f"the files already there{hint}",
                    field="folder",
                )
            for path in ours:
                path.unlink()
        folder.mkdir(parents=True, exist_ok=True)


def _date_and_time(moment: datetime | None) -> tuple[str, str]:
    if moment is None:
        return "", ""
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S.%f")


def write_ct_series(
    volume: Volume,
    folder: str | Path,
    *,
    patient_id: str,
    patient_name: str,
    frame_of_reference_uid: str | None = None,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    patient_position: str = "HFS",
    modality: str = "CT",
    series_description: str = "",
    series_number: int = 1,
    uid_seed: str | None = None,
    content_datetime: datetime | None = None,
    overwrite: bool = False,
) -> WrittenDicom:
    """Write ``volume`` as a CT Image Storage series, one file per ``k`` slice.

    Each file is explicit VR little endian, signed 16-bit, with Rescale Slope/Intercept
    (``RescaleType`` HU): integer volumes within the int16 range are stored exactly (slope 1,
    intercept 0); anything else is spread over the int16 range, the error being at most half
    the slope. ImagePositionPatient is the centre of the slice's first voxel, the orientation
    comes from the direction matrix, PixelSpacing is ``(spacing_j, spacing_i)`` and both
    SliceThickness and SpacingBetweenSlices are ``spacing_k``. Files are named
    ``CT_0001.dcm``, ... in ``k`` order.

    Parameters
    ----------
    volume : Volume
        Values in HU. A left-handed direction matrix is written faithfully, but the series
        then reads back with ``k`` reversed (same voxel positions; see module docstring).
    folder : str or pathlib.Path
        Created if missing; must be empty unless ``overwrite``.
    patient_id, patient_name : str
        Patient ID (0010,0020) and Patient's Name (0010,0010), e.g. ``"Doe^Jane"``.
    frame_of_reference_uid : str or None, optional
        Defaults to ``volume.frame_of_reference_uid``, else a new UID (returned). Must agree
        with the volume's when both are given.
    study_instance_uid, series_instance_uid : str or None, optional
        New UIDs when omitted.
    patient_position : str, optional
        DICOM Patient Position; one of the eight recumbent codes (``HFS`` by default).
    modality : str, optional
        Must be ``"CT"`` (the only modality CT Image Storage allows); kept as a parameter so
        callers state it.
    series_description : str, optional
        Series Description (0008,103E).
    series_number : int, optional
        Series Number (0020,0011).
    uid_seed : str or None, optional
        Make every generated UID a hash of this seed (reproducible output); use a different
        seed for each series written. Random UIDs when ``None``.
    content_datetime : datetime or None, optional
        Study/series/content date and time; left empty when ``None`` so that seeded output
        is byte-for-byte reproducible.
    overwrite : bool, optional
        Allow a folder holding only a series written here before (``CT_*.dcm``); those files
        are deleted first, so no stale slice can join the new series. Any other file is still
        an error.

    Returns
    -------
    WrittenDicom
        Paths and UIDs written.

    Raises
    ------
    InvalidInputError
        Non-empty folder, invalid UID, modality other than CT.
    FrameOfReferenceError
        Unknown patient position, or a frame of reference contradicting the volume's.
    """
    position = PatientPositionValues.parse(patient_position).value
    if modality != "CT":
        raise InvalidInputError(
            f"CT Image Storage requires modality 'CT', got {modality!r}", field="modality"
        )
    if not isinstance(series_number, int) or series_number < 0:
        raise InvalidInputError("series_number must be a non-negative int", field="series_number")
    frame_uid = _resolve_frame_of_reference(volume, frame_of_reference_uid, uid_seed)
    study_uid = validated_uid(
        study_instance_uid or make_uid(uid_seed, "study"), "study_instance_uid"
    )
    series_uid = validated_uid(
        series_instance_uid or make_uid(uid_seed, "ct-series", study_uid), "series_instance_uid"
    )
    out = Path(folder)
    _prepare_folder(out, overwrite=overwrite)
    encoding = encode_as_integers(volume.array, np.int16)
    direction = volume.direction
    spacing_i, spacing_j, spacing_k = (float(s) for s in volume.spacing_mm)
    normal = np.cross(direction[:, 0], direction[:, 1])
    date, time = _date_and_time(content_datetime)
    common = {
        "SpecificCharacterSet": "ISO_IR 192",
        "ImageType": ["DERIVED", "SECONDARY", "AXIAL"],
        "SOPClassUID": CTImageStorage,
        "StudyDate": date,
        "SeriesDate": date,
        "ContentDate": date,
        "StudyTime": time,
        "SeriesTime": time,
        "ContentTime": time,
        "AccessionNumber": "",
        "Modality": modality,
        "Manufacturer": "",
        "ReferringPhysicianName": "",
        "SeriesDescription": series_description,
        "PatientName": patient_name,
        "PatientID": patient_id,
        "PatientBirthDate": "",
        "PatientSex": "",
        "KVP": "",
        "PatientPosition": position,
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": series_uid,
        "StudyID": "",
        "SeriesNumber": series_number,
        "AcquisitionNumber": "",
        "ImageOrientationPatient": [ds_string(v) for v in direction[:, :2].T.ravel()],
        "FrameOfReferenceUID": frame_uid,
        "PositionReferenceIndicator": "",
        "SliceThickness": ds_string(spacing_k),
        "SpacingBetweenSlices": ds_string(spacing_k),
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": int(volume.array.shape[1]),
        "Columns": int(volume.array.shape[2]),
        "PixelSpacing": [ds_string(spacing_j), ds_string(spacing_i)],
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 1,
        "RescaleIntercept": ds_string(encoding.intercept),
        "RescaleSlope": ds_string(encoding.slope),
        "RescaleType": "HU",
    }
    paths: list[Path] = []
    sop_uids: list[str] = []
    for k in range(volume.array.shape[0]):
        position_lps = volume.lps_from_index([[0.0, 0.0, float(k)]])[0]
        sop_uid = make_uid(uid_seed, "ct-slice", series_uid, k)
        dataset = new_part10_dataset(CTImageStorage, sop_uid)
        for keyword, value in common.items():
            setattr(dataset, keyword, value)
        dataset.SOPInstanceUID = sop_uid
        dataset.InstanceNumber = k + 1
        dataset.ImagePositionPatient = [ds_string(v) for v in position_lps]
        dataset.SliceLocation = ds_string(float(position_lps @ normal))
        dataset.PixelData = np.ascontiguousarray(encoding.stored[k], dtype="<i2").tobytes()
        path = out / f"CT_{k + 1:04d}.dcm"
        with foreign_errors(path, "write DICOM file", error=InvalidInputError):
            dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
        sop_uids.append(sop_uid)
    return WrittenDicom(
        paths=tuple(paths),
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        sop_instance_uids=tuple(sop_uids),
        frame_of_reference_uid=frame_uid,
    )
