"""Turn an uploaded planning CT or CBCT into a stored original plus a canonical MetaImage.

A zip of one DICOM series, or a single MHA, NRRD or NIfTI file, is read with
:func:`igrt.imageio.read_volume` after checks that bound the work a client can cause: the zip's
member count and uncompressed size, the header's voxel count (before any voxel is decoded for
MHA/NRRD/NIfTI), headers that point at other files (refused), and then the volume itself (3D,
scalar, at least two voxels along every axis, finite values, orthonormal direction cosines).
What is kept: the file byte for byte, and an MHA with the exact geometry, Frame of Reference UID
and patient position (:func:`igrt.imageio.write_volume_mha`) that registrations read.

Errors are :class:`~igrt.errors.InvalidInputError` s naming the form field ``file`` (or
``kind``) with no server paths in their messages.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from api.enums import VolumeFormatValues
from api.storage import FileStore, StoredFile
from igrt.errors import IgrtError, InvalidInputError
from igrt.frame_of_reference import PatientPositionValues
from igrt.imageio import LoadedVolume, read_volume, write_volume_mha

__all__ = [
    "VOLUME_SUFFIXES",
    "IngestedVolume",
    "VolumeLimits",
    "ingest_volume",
    "read_stored_volume",
]

_LOG = logging.getLogger("api.volumes")

VOLUME_SUFFIXES: dict[VolumeFormatValues, str] = {
    VolumeFormatValues.DICOM_ZIP: ".zip",
    VolumeFormatValues.MHA: ".mha",
    VolumeFormatValues.NRRD: ".nrrd",
    VolumeFormatValues.NIFTI: ".nii",
}
"""Suffix of the staged (and stored) original, per format."""

_STAGED = re.compile(r"\S*staged-[0-9a-f]+\S*?(?=[:\s,)]|$)")
_HEADER_BYTES = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class VolumeLimits:
    """The largest volumes the service accepts."""

    max_voxels: int
    max_decoded_bytes: int
    max_zip_members: int = 5000

    def check_voxels(self, size_ijk: tuple[int, ...]) -> None:
        """Refuse a grid with more voxels than the limit (field ``file``)."""
        count = int(np.prod([int(n) for n in size_ijk], dtype=np.int64))
        if count > self.max_voxels:
            raise InvalidInputError(
                f"a volume of {' x '.join(str(int(n)) for n in size_ijk)} voxels exceeds the "
                f"limit of {self.max_voxels} voxels",
                field="file",
            )


@dataclass(frozen=True)
class IngestedVolume:
    """What an accepted volume upload became."""

    original: StoredFile
    volume_file: StoredFile
    geometry: dict[str, Any]


def _client_error(exc: IgrtError) -> InvalidInputError:
    """The error with server paths removed, naming the form field ``file``."""
    message = _STAGED.sub("the uploaded file", str(exc))
    copy = InvalidInputError(message, field="file")
    copy.__cause__ = exc
    return copy


# --- checks before decoding -----------------------------------------------------------------


def _check_single_file_header(path: Path, fmt: VolumeFormatValues) -> None:
    """MHA and NRRD headers must keep their voxels in the same file (no detached data)."""
    with path.open("rb") as handle:
        head = handle.read(_HEADER_BYTES)
    if fmt is VolumeFormatValues.MHA:
        match = re.search(rb"^\s*ElementDataFile\s*=\s*(\S+)", head, re.MULTILINE)
        if match is None:
            raise InvalidInputError("not a MetaImage file (no ElementDataFile)", field="file")
        if match.group(1) != b"LOCAL":
            raise InvalidInputError(
                "the MetaImage header points at another file; send a single-file .mha "
                "(ElementDataFile = LOCAL)",
                field="file",
            )
    elif fmt is VolumeFormatValues.NRRD:
        if not head.startswith(b"NRRD"):
            raise InvalidInputError("not a NRRD file (no NRRD magic)", field="file")
        header = head.split(b"\n\n", 1)[0].lower()
        if re.search(rb"^data ?file\s*:", header, re.MULTILINE):
            raise InvalidInputError(
                "the NRRD header points at another file; send a NRRD with attached data",
                field="file",
            )


def _check_itk_information(path: Path, limits: VolumeLimits) -> None:
    """Read only the header (SimpleITK) and refuse non-3D, vector or oversized images."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InvalidInputError("the file is not a readable image", field="file") from exc
    if reader.GetDimension() != 3:
        raise InvalidInputError(
            f"the file holds a {reader.GetDimension()}D image; a volume must be 3D", field="file"
        )
    if reader.GetNumberOfComponents() != 1:
        raise InvalidInputError("a volume must have one value per voxel", field="file")
    limits.check_voxels(tuple(reader.GetSize()))


def _extract_zip(archive_path: Path, folder: Path, limits: VolumeLimits) -> None:
    """Extract every file of the zip flat into ``folder`` (names are not trusted)."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInputError("the file is not a readable zip archive", field="file") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if not members:
            raise InvalidInputError("the zip archive holds no files", field="file")
        if len(members) > limits.max_zip_members:
            raise InvalidInputError(
                f"the zip archive holds {len(members)} files, more than the limit of "
                f"{limits.max_zip_members}",
                field="file",
            )
        declared = sum(m.file_size for m in members)
        if declared > limits.max_decoded_bytes:
            raise InvalidInputError(
                f"the zip archive would expand to {declared} bytes, more than the limit of "
                f"{limits.max_decoded_bytes}",
                field="file",
            )
        folder.mkdir()
        written = 0
        for index, member in enumerate(members):
            if member.flag_bits & 0x1:
                raise InvalidInputError("encrypted zip archives are not accepted", field="file")
            target = folder / f"{index:05d}.dcm"
            try:
                with archive.open(member) as source, target.open("xb") as out:
                    while chunk := source.read(1024 * 1024):
                        written += len(chunk)
                        if written > limits.max_decoded_bytes:
                            raise InvalidInputError(
                                "the zip archive expands beyond the limit of "
                                f"{limits.max_decoded_bytes} bytes",
                                field="file",
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                raise InvalidInputError(
                    f"zip member {index + 1} cannot be extracted ({type(exc).__name__})",
                    field="file",
                ) from exc


def _remove_tree(folder: Path) -> None:
    if folder.is_dir():
        for child in folder.iterdir():
            child.unlink(missing_ok=True)
        folder.rmdir()


def _read(
    staged: Path, fmt: VolumeFormatValues, store: FileStore, limits: VolumeLimits
) -> LoadedVolume:
    """Read the staged original into a LoadedVolume (temporary files removed)."""
    if fmt is VolumeFormatValues.DICOM_ZIP:
        folder = store.temp_path("")
        try:
            _extract_zip(staged, folder, limits)
            return read_volume(folder)
        finally:
            _remove_tree(folder)
    _check_single_file_header(staged, fmt)
    readable = staged
    if fmt is VolumeFormatValues.NIFTI:
        with staged.open("rb") as handle:
            gzipped = handle.read(2) == _GZIP_MAGIC
        if gzipped:
            readable = store.temp_path(".nii.gz")
            os.link(staged, readable)
    try:
        _check_itk_information(readable, limits)
        return read_volume(readable)
    finally:
        if readable != staged:
            readable.unlink(missing_ok=True)


def _geometry(loaded: LoadedVolume, patient_position: str, position_source: str) -> dict[str, Any]:
    volume = loaded.volume
    corners = np.array(
        [
            volume.lps_from_index([0.0, 0.0, 0.0]),
            volume.lps_from_index([n - 1.0 for n in volume.shape_ijk]),
        ]
    ).reshape(2, 3)
    array = volume.array
    return {
        "size_ijk": [int(n) for n in volume.shape_ijk],
        "spacing_mm": [float(v) for v in volume.spacing_mm],
        "origin_lps_mm": [float(v) for v in volume.origin_lps_mm],
        "direction": [[float(v) for v in row] for row in volume.direction],
        "extent_lps_mm": [
            [float(v) for v in corners.min(axis=0)],
            [float(v) for v in corners.max(axis=0)],
        ],
        "frame_of_reference_uid": volume.frame_of_reference_uid,
        "patient_position": patient_position,
        "patient_position_source": position_source,
        "modality": loaded.modality,
        "series_instance_uid": loaded.series_instance_uid,
        "dtype": str(array.dtype),
        "value_range": [float(np.min(array)), float(np.max(array))],
    }


def ingest_volume(
    store: FileStore,
    limits: VolumeLimits,
    staged: Path,
    fmt: VolumeFormatValues,
    *,
    session_position: PatientPositionValues,
) -> IngestedVolume:
    """Validate the staged upload, store it and its canonical MHA, describe its geometry.

    Raises
    ------
    InvalidInputError
        Anything wrong with the file (field ``file``), including a Patient Position that
        contradicts the session's.
    """
    try:
        loaded = _read(staged, fmt, store, limits)
    except IgrtError as exc:
        raise _client_error(exc) from exc
    except (RuntimeError, ValueError, OSError, MemoryError) as exc:
        _LOG.info("volume upload unreadable", extra={"error": type(exc).__name__})
        raise InvalidInputError(
            f"the file cannot be read as a volume ({type(exc).__name__})", field="file"
        ) from exc
    volume = loaded.volume
    limits.check_voxels(volume.shape_ijk)
    if min(volume.shape_ijk) < 2:
        raise InvalidInputError(
            f"a volume needs at least 2 voxels along every axis, got {list(volume.shape_ijk)}",
            field="file",
        )
    if np.issubdtype(volume.array.dtype, np.floating) and not np.all(np.isfinite(volume.array)):
        raise InvalidInputError("the volume holds NaN or infinite voxels", field="file")
    position_source = "session"
    position = session_position
    if loaded.patient_position:
        try:
            position = PatientPositionValues.parse(loaded.patient_position)
        except IgrtError as exc:
            raise _client_error(exc) from exc
        position_source = "file"
        if position is not session_position:
            raise InvalidInputError(
                f"the file's Patient Position {position.value} contradicts the session's "
                f"{session_position.value}",
                field="file",
            )
    canonical = store.temp_path(".mha")
    try:
        write_volume_mha(volume, canonical, patient_position=position.value)
        volume_file = store.store(canonical)
    finally:
        canonical.unlink(missing_ok=True)
    original = store.store(staged)
    return IngestedVolume(
        original=original,
        volume_file=volume_file,
        geometry=_geometry(loaded, position.value, position_source),
    )


def read_stored_volume(store: FileStore, volume_path: str) -> LoadedVolume:
    """The canonical MHA of a volume upload."""
    return read_volume(store.path(volume_path))
