"""Turn an uploaded fluoroscopy file into a stored original plus a canonical frame sequence.

Every supported format (multi-frame DICOM, MHA, raw uint16 with a declared shape, a zip of
PNG/TIFF frames) is read into a :class:`~igrt.sequence.FluoroSequence`, checked against the
service's image limits *before* pixels are decoded (from the DICOM header, the allow-listed
MetaImage header, the declared raw shape, every zip member's PNG/TIFF header; channels
counted). The content must be of the declared format (magic numbers: a PNG or a DICOM file sent
as MetaImage is refused), and a DICOM file must name the session's patient
(:class:`~igrt.errors.PatientMismatchError` otherwise). The sequence is then written once
more as a MetaImage that carries the geometry and frame times (``igrt.imageio.write_fluoro_mha``);
later analyses read that canonical file whatever the original format was.

Errors are ``igrt`` :class:`~igrt.errors.InvalidInputError` s whose ``field`` names the form
field a client can fix (``file`` for the file itself) and whose message never shows server
paths.
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from api.enums import GeometrySourceValues, UploadFormatValues
from api.schemas.uploads import FluoroscopyUploadForm
from api.storage import FileStore, StoredFile
from api.vendor_upload import holds_vendor_frames, read_vendor_zip
from igrt.errors import (
    FormatMismatchError,
    FrameOfReferenceError,
    GeometryError,
    ImageReadError,
    InvalidInputError,
)
from igrt.frame_of_reference import PatientPositionValues
from igrt.geometry import ProjectionGeometry, obi_geometry, xvi_geometry
from igrt.imageio import read_fluoro_dicom, read_fluoro_frames, read_fluoro_mha, write_fluoro_mha
from igrt.imageio._dicom_attributes import patient_identity
from igrt.imageio._dicom_file import check_transfer_syntax
from igrt.imageio.fluoro_files import FRAME_SUFFIXES
from igrt.imageio.header_allowlist import read_image_header
from igrt.imageio.raster_headers import read_raster_size
from igrt.imageio.sniff import FileFormatValues, detect_format, require_format
from igrt.patient_identity import PatientIdentity, check_same_patient
from igrt.sequence import FluoroSequence, IntensityValues

__all__ = [
    "SUFFIXES",
    "ImageLimits",
    "IngestedFluoroscopy",
    "ingest_fluoroscopy",
    "read_stored_sequence",
]

_FORM_FIELDS = frozenset(FluoroscopyUploadForm.model_fields)
_FIELD_FOR_READER_ARGUMENT = {
    "fallback_geometry": "geometry_preset",
    "geometry": "geometry_preset",
    "fallback_fps": "fps",
    "timestamps_s": "fps",
}
_STAGED = re.compile(r"\S*staged-[0-9a-f]+\S*?(?=[:\s,)]|$)")
_NOT_RAW = frozenset(set(FileFormatValues) - {FileFormatValues.GZIP, FileFormatValues.JPEG})
"""Formats a raw upload must not be (their magic numbers are long enough not to be pixels by
chance; gzip's and JPEG's two or three bytes could be)."""
_SUFFIX_FORMATS = {
    ".png": FileFormatValues.PNG,
    ".tif": FileFormatValues.TIFF,
    ".tiff": FileFormatValues.TIFF,
}


@dataclass(frozen=True)
class ImageLimits:
    """The largest images the service accepts."""

    max_frames: int
    max_rows: int
    max_columns: int
    max_decoded_bytes: int

    def check(self, n_frames: int, rows: int, columns: int, bytes_per_pixel: int) -> None:
        """Refuse dimensions beyond the limits (field ``file``)."""
        if n_frames > self.max_frames:
            raise InvalidInputError(
                f"{n_frames} frames exceed the limit of {self.max_frames}", field="file"
            )
        if rows > self.max_rows or columns > self.max_columns:
            raise InvalidInputError(
                f"frames of {rows} x {columns} pixels exceed the limit of "
                f"{self.max_rows} x {self.max_columns}",
                field="file",
            )
        decoded = n_frames * rows * columns * bytes_per_pixel
        if decoded > self.max_decoded_bytes:
            raise InvalidInputError(
                f"the decoded frames would take {decoded} bytes, more than the limit of "
                f"{self.max_decoded_bytes}",
                field="file",
            )


@dataclass(frozen=True)
class IngestedFluoroscopy:
    """What an accepted fluoroscopy upload became."""

    original: StoredFile
    sequence_file: StoredFile
    n_frames: int
    rows: int
    columns: int
    dtype: str
    intensity: IntensityValues
    geometry: dict[str, Any]
    geometry_source: GeometrySourceValues

    def upload_columns(self) -> dict[str, Any]:
        """The ``Upload`` row's columns that describe the stored files and frames."""
        return {
            "size_bytes": self.original.size_bytes,
            "sha256": self.original.sha256,
            "stored_path": self.original.relative_path,
            "sequence_sha256": self.sequence_file.sha256,
            "sequence_path": self.sequence_file.relative_path,
            "n_frames": self.n_frames,
            "rows": self.rows,
            "columns": self.columns,
            "dtype": self.dtype,
            "intensity": self.intensity.value,
            "geometry": self.geometry,
            "geometry_source": self.geometry_source.value,
        }


# --- geometry from the form -----------------------------------------------------------------


def _form_geometry(
    form: FluoroscopyUploadForm, shape: tuple[int, int]
) -> ProjectionGeometry | None:
    explicit = {
        "sad_mm": form.sad_mm,
        "sdd_mm": form.sdd_mm,
        "pixel_pitch_u_mm": form.pixel_pitch_u_mm,
        "pixel_pitch_v_mm": form.pixel_pitch_v_mm,
    }
    given = [name for name, value in explicit.items() if value is not None]
    offset = (form.detector_offset_u_mm, form.detector_offset_v_mm)
    if form.geometry_preset is not None:
        if given:
            raise InvalidInputError(
                f"give geometry_preset or explicit geometry, not both ({', '.join(given)})",
                field="geometry_preset",
            )
        make = xvi_geometry if form.geometry_preset == "xvi" else obi_geometry
        geometry = dataclasses.replace(
            make(binning=form.binning, gantry_deg=form.gantry_deg), detector_offset_mm=offset
        )
        if geometry.detector_shape != shape:
            raise GeometryError(
                f"the {form.geometry_preset} panel binned {form.binning}x is "
                f"{geometry.detector_shape[0]} x {geometry.detector_shape[1]} pixels but the "
                f"frames are {shape[0]} x {shape[1]}",
                field="binning",
            )
        return geometry
    if not given:
        return None
    missing = [name for name, value in explicit.items() if value is None]
    if missing:
        raise GeometryError(
            f"explicit geometry needs {', '.join(missing)} as well", field=missing[0]
        )
    return ProjectionGeometry(
        sad_mm=float(explicit["sad_mm"] or 0.0),
        sdd_mm=float(explicit["sdd_mm"] or 0.0),
        pixel_pitch_mm=(float(form.pixel_pitch_u_mm or 0.0), float(form.pixel_pitch_v_mm or 0.0)),
        detector_shape=shape,
        detector_offset_mm=offset,
        gantry_deg=form.gantry_deg,
    )


def _required_geometry(form: FluoroscopyUploadForm, shape: tuple[int, int]) -> ProjectionGeometry:
    geometry = _form_geometry(form, shape)
    if geometry is None:
        raise GeometryError(
            f"{form.format.value} frames carry no geometry: give geometry_preset (and binning) "
            "or sad_mm, sdd_mm, pixel_pitch_u_mm and pixel_pitch_v_mm",
            field="geometry_preset",
        )
    return geometry


def _required_fps(form: FluoroscopyUploadForm) -> float:
    if form.fps is None:
        raise InvalidInputError(
            f"{form.format.value} frames carry no frame times: give fps", field="fps"
        )
    return form.fps


# --- readers per format ---------------------------------------------------------------------

_Reader = Callable[[Path, FluoroscopyUploadForm, ImageLimits, "_Context"], "_Read"]


@dataclass(frozen=True)
class _Context:
    store: FileStore
    patient_position: PatientPositionValues
    patient: PatientIdentity


@dataclass(frozen=True)
class _Read:
    sequence: FluoroSequence
    geometry_source: GeometrySourceValues


def _with_fallbacks(
    read: Callable[..., FluoroSequence],
    path: Path,
    form: FluoroscopyUploadForm,
    shape: tuple[int, int],
) -> _Read:
    """Read with the file's own geometry; on failure retry with the form's, if it gave any."""
    try:
        return _Read(read(path), GeometrySourceValues.FILE)
    except InvalidInputError:
        fallback_geometry = _form_geometry(form, shape)
        if fallback_geometry is None and form.fps is None and form.intensity is None:
            raise
    sequence = read(
        path,
        fallback_geometry=fallback_geometry,
        fallback_fps=form.fps,
        intensity=form.intensity,
    )
    return _Read(sequence, GeometrySourceValues.REQUEST)


def _dicom_header(path: Path) -> Any:
    from pydicom import dcmread

    require_format(path, FileFormatValues.DICOM, field="file", label="the file")
    check_transfer_syntax(path)
    try:
        return dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types for non-DICOM or corrupt input
        raise ImageReadError(
            f"not a readable DICOM file ({type(exc).__name__})", field="file"
        ) from exc


def _read_dicom(
    path: Path, form: FluoroscopyUploadForm, limits: ImageLimits, context: _Context
) -> _Read:
    header = _dicom_header(path)
    try:
        rows = int(header.get("Rows", 0))
        columns = int(header.get("Columns", 0))
        n_frames = int(header.get("NumberOfFrames", 1) or 1)
        bits = int(header.get("BitsAllocated", 16) or 16)
        samples = int(header.get("SamplesPerPixel", 1) or 1)
        position_text = str(header.get("PatientPosition", "") or "").strip()
        stated_patient = patient_identity(header)
    except Exception as exc:  # pydicom converts values lazily and raises many types
        raise ImageReadError(
            f"not a readable DICOM file ({type(exc).__name__})", field="file"
        ) from exc
    if rows < 1 or columns < 1:
        raise ImageReadError("the DICOM file holds no image (no Rows/Columns)", field="file")
    limits.check(n_frames, rows, columns, max(1, bits // 8) * max(1, samples))
    check_same_patient(stated_patient, context.patient, what="the DICOM file")
    if position_text:
        stated = PatientPositionValues.parse(position_text)
        if stated is not context.patient_position:
            raise FrameOfReferenceError(
                f"the file was acquired {stated.value} but the session is "
                f"{context.patient_position.value}",
                field="file",
            )
    return _with_fallbacks(read_fluoro_dicom, path, form, (rows, columns))


def _read_mha(
    path: Path, form: FluoroscopyUploadForm, limits: ImageLimits, context: _Context
) -> _Read:
    require_format(path, FileFormatValues.METAIMAGE, field="file", label="the file")
    header = read_image_header(path)
    columns, rows = header.size_xyz[0], header.size_xyz[1]
    n_frames = header.size_xyz[2] if header.n_dims == 3 else 1
    limits.check(n_frames, rows, columns, header.channels * header.dtype.itemsize)
    return _with_fallbacks(read_fluoro_mha, path, form, (rows, columns))


def _read_raw(
    path: Path, form: FluoroscopyUploadForm, limits: ImageLimits, context: _Context
) -> _Read:
    declared = {"n_frames": form.n_frames, "rows": form.rows, "columns": form.columns}
    for name, value in declared.items():
        if value is None:
            raise InvalidInputError(f"raw frames need their declared {name}", field=name)
    n_frames, rows, columns = int(form.n_frames or 0), int(form.rows or 0), int(form.columns or 0)
    limits.check(n_frames, rows, columns, 2)
    found = detect_format(path)
    if found in _NOT_RAW:
        raise FormatMismatchError(
            f"the file was declared raw uint16 frames but holds {found.value} content: send it "
            "with its own format",
            field="file",
        )
    expected = n_frames * rows * columns * 2
    actual = path.stat().st_size
    if actual != expected:
        raise InvalidInputError(
            f"the file holds {actual} bytes but {n_frames} x {rows} x {columns} uint16 frames "
            f"need {expected}: wrong declared shape, or a truncated file",
            field="file",
        )
    geometry = _required_geometry(form, (rows, columns))
    fps = _required_fps(form)
    frames = np.fromfile(path, dtype="<u2").reshape(n_frames, rows, columns).astype(np.uint16)
    timestamps = np.arange(n_frames, dtype=np.float64) / fps
    sequence = FluoroSequence(
        frames, timestamps, (geometry,) * n_frames, form.intensity or IntensityValues.RAW
    )
    return _Read(sequence, GeometrySourceValues.REQUEST)


def _natural_key(name: str) -> tuple[Any, ...]:
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts))


def _read_zip(
    path: Path, form: FluoroscopyUploadForm, limits: ImageLimits, context: _Context
) -> _Read:
    require_format(path, FileFormatValues.ZIP, field="file", label="the file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImageReadError("not a readable zip file", field="file") from exc
    with archive, context.store.staging() as folder:
        if holds_vendor_frames(archive):
            vendor = read_vendor_zip(
                archive,
                folder,
                max_frames=limits.max_frames,
                max_bytes=limits.max_decoded_bytes,
                fps=form.fps,
            )
            return _Read(vendor, GeometrySourceValues.FILE)
        entries = [
            info
            for info in archive.infolist()
            if not info.is_dir()
            and not info.filename.startswith("__MACOSX/")
            and not Path(info.filename).name.startswith(".")
            and Path(info.filename).suffix.lower() in FRAME_SUFFIXES
        ]
        if not entries:
            raise ImageReadError(
                f"the zip holds no frame files ({', '.join(FRAME_SUFFIXES)})", field="file"
            )
        entries.sort(key=lambda info: _natural_key(info.filename))
        if len(entries) > limits.max_frames:
            raise InvalidInputError(
                f"{len(entries)} frames exceed the limit of {limits.max_frames}", field="file"
            )
        folder.mkdir()
        frame_paths = _extract_frames(archive, entries, folder, limits)
        shape = _check_frame_headers(frame_paths, limits)
        sequence = read_fluoro_frames(
            frame_paths,
            _required_geometry(form, shape),
            fps=_required_fps(form),
            intensity=form.intensity or IntensityValues.RAW,
        )
    return _Read(sequence, GeometrySourceValues.REQUEST)


def _extract_frames(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], folder: Path, limits: ImageLimits
) -> list[Path]:
    """Extract the frame members under index names, within an inflated-bytes budget."""
    budget = limits.max_decoded_bytes
    frame_paths: list[Path] = []
    try:
        for index, info in enumerate(entries):
            target = folder / f"frame{index:06d}{Path(info.filename).suffix.lower()}"
            with archive.open(info) as source, target.open("xb") as sink:
                written = 0
                while chunk := source.read(1024 * 1024):
                    written += len(chunk)
                    if written > budget:
                        raise InvalidInputError(
                            "the zip's frames are larger than the decoded-size limit",
                            field="file",
                        )
                    sink.write(chunk)
            budget -= written
            frame_paths.append(target)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise ImageReadError(
            f"cannot extract the zip ({type(exc).__name__})", field="file"
        ) from exc
    return frame_paths


def _check_frame_headers(frame_paths: list[Path], limits: ImageLimits) -> tuple[int, int]:
    """Every frame's size, channels and bit depth from its header, before any is decoded.

    Returns the common ``(rows, columns)``.
    """
    sizes = []
    for index, frame_path in enumerate(frame_paths):
        expected = _SUFFIX_FORMATS[frame_path.suffix]
        label = f"frame {index + 1} of the zip"
        require_format(frame_path, expected, field="file", label=label)
        size = read_raster_size(frame_path)
        if size.channels != 1:
            raise ImageReadError(
                f"{label} has {size.channels} channels; frames must be greyscale", field="file"
            )
        limits.check(1, size.rows, size.columns, size.bytes_per_pixel)
        sizes.append(size)
    first = sizes[0]
    for index, size in enumerate(sizes[1:], start=2):
        if (size.rows, size.columns) != (first.rows, first.columns):
            raise ImageReadError(
                f"frame {index} of the zip is {size.rows} x {size.columns} pixels but frame 1 is "
                f"{first.rows} x {first.columns}: not one sequence",
                field="file",
            )
    limits.check(len(sizes), first.rows, first.columns, max(s.bytes_per_pixel for s in sizes))
    return first.rows, first.columns


_READERS: dict[UploadFormatValues, _Reader] = {
    UploadFormatValues.DICOM: _read_dicom,
    UploadFormatValues.MHA: _read_mha,
    UploadFormatValues.RAW: _read_raw,
    UploadFormatValues.ZIP: _read_zip,
}

SUFFIXES = {
    UploadFormatValues.DICOM: ".dcm",
    UploadFormatValues.MHA: ".mha",
    UploadFormatValues.RAW: ".raw",
    UploadFormatValues.ZIP: ".zip",
}
"""Staging-file suffix per format (the content must match the declared format: magic numbers)."""


# --- the whole ingestion --------------------------------------------------------------------


def _geometry_document(sequence: FluoroSequence) -> dict[str, Any]:
    first = sequence.geometries[0]
    for geometry in sequence.geometries[1:]:
        if (geometry.sad_mm, geometry.sdd_mm, geometry.pixel_pitch_mm) != (
            first.sad_mm,
            first.sdd_mm,
            first.pixel_pitch_mm,
        ):
            raise GeometryError(
                "SAD, SDD and pixel pitch must be the same for every frame", field="file"
            )
    return {
        "sad_mm": first.sad_mm,
        "sdd_mm": first.sdd_mm,
        "pixel_pitch_mm": list(first.pixel_pitch_mm),
        "detector_shape": list(first.detector_shape),
        "pixel_at_isocentre_mm": list(first.pixel_at_isocentre_mm),
        "timestamps_s": [float(t) for t in sequence.timestamps_s],
        "gantry_deg": [float(g.gantry_deg) for g in sequence.geometries],
        "detector_offset_mm": [list(g.detector_offset_mm) for g in sequence.geometries],
    }


def _client_error(exc: InvalidInputError) -> InvalidInputError:
    """The same error with server paths removed and the field named as the client knows it."""
    message = _STAGED.sub("the uploaded file", str(exc))
    field = exc.field
    if field not in _FORM_FIELDS:
        field = _FIELD_FOR_READER_ARGUMENT.get(field or "", "file")
    copy = type(exc)(message, field=field)
    copy.__cause__ = exc
    return copy


def ingest_fluoroscopy(
    store: FileStore,
    limits: ImageLimits,
    staged: Path,
    form: FluoroscopyUploadForm,
    *,
    patient_position: PatientPositionValues,
    patient: PatientIdentity,
) -> IngestedFluoroscopy:
    """Read, check and store a staged upload; the staged file is consumed when accepted.

    Parameters
    ----------
    store : FileStore
        Where the original and the canonical MetaImage are kept.
    limits : ImageLimits
        Largest accepted image.
    staged : pathlib.Path
        The uploaded bytes, in the store's staging folder, named with the format's suffix.
    form : FluoroscopyUploadForm
        Format, and the geometry and timing the file may lack.
    patient_position : PatientPositionValues
        The session's; a DICOM file stating another position is refused.
    patient : PatientIdentity
        The session's patient; a DICOM file naming another patient is refused.

    Raises
    ------
    InvalidInputError
        Unreadable file, content of another format than declared, limits exceeded, missing or
        inconsistent geometry; ``field`` names the form field to fix.
    PatientMismatchError
        A DICOM file naming another patient (both identities in the message).
    """
    context = _Context(store, patient_position, patient)
    try:
        read = _READERS[form.format](staged, form, limits, context)
        sequence = read.sequence
        rows, columns = (int(n) for n in sequence.frames.shape[1:])
        limits.check(sequence.n_frames, rows, columns, sequence.frames.dtype.itemsize)
        geometry = _geometry_document(sequence)
    except InvalidInputError as exc:
        raise _client_error(exc) from exc
    with store.staging(".mha") as canonical:
        write_fluoro_mha(sequence, canonical)
        sequence_file = store.store(canonical)
    original = store.store(staged)
    return IngestedFluoroscopy(
        original=original,
        sequence_file=sequence_file,
        n_frames=sequence.n_frames,
        rows=rows,
        columns=columns,
        dtype=str(sequence.frames.dtype),
        intensity=sequence.intensity,
        geometry=geometry,
        geometry_source=read.geometry_source,
    )


def read_stored_sequence(store: FileStore, sequence_path: str) -> FluoroSequence:
    """The canonical frame sequence of an upload (``Upload.sequence_path``)."""
    return read_fluoro_mha(store.path(sequence_path))
