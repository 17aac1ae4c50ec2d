"""Turn an uploaded planning CT or CBCT into a stored original plus a canonical MetaImage.

A zip of one DICOM series, or a single MHA, NRRD or NIfTI file, is read with
:func:`igrt.imageio.read_volume` after checks that bound the work a client can cause: the
content must be of the declared format (magic numbers), the zip's member count and uncompressed
size, and then, from the headers and before any voxel is decoded, the voxel count and decoded
bytes (DICOM: rows x columns x slices in the volume's voxel type; MetaImage and NRRD headers
are parsed with an allow-list that refuses data in other files,
:mod:`igrt.imageio.header_allowlist`), and then the volume itself (3D, scalar, at least two
voxels along every axis, finite values, orthonormal direction cosines). DICOM slices must all
name the session's patient.
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
from igrt.imageio.sniff import FileFormatValues, require_format
from igrt.patient_identity import PatientIdentity, check_same_patient

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
    """The error with server paths removed, naming the form field ``file``.

    An input error keeps its type, so that a patient mismatch stays one.
    """
    message = _STAGED.sub("the uploaded file", str(exc))
    kind = type(exc) if isinstance(exc, InvalidInputError) else InvalidInputError
    copy = kind(message, field="file")
    copy.__cause__ = exc
    return copy


# --- checks before decoding -----------------------------------------------------------------

_CONTENT_FORMATS: dict[VolumeFormatValues, tuple[FileFormatValues, ...]] = {
    VolumeFormatValues.DICOM_ZIP: (FileFormatValues.ZIP,),
    VolumeFormatValues.MHA: (FileFormatValues.METAIMAGE,),
    VolumeFormatValues.NRRD: (FileFormatValues.NRRD,),
    VolumeFormatValues.NIFTI: (FileFormatValues.NIFTI, FileFormatValues.GZIP),
}
"""What the content of each declared format may be (magic numbers; ``.nii.gz`` is gzip)."""


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
    found = require_format(staged, *_CONTENT_FORMATS[fmt], field="file", label="the file")
    if fmt is VolumeFormatValues.DICOM_ZIP:
        folder = store.temp_path("")
        try:
            _extract_zip(staged, folder, limits)
            return read_volume(
                folder,
                max_voxels=limits.max_voxels,
                max_decoded_bytes=limits.max_decoded_bytes,
            )
        finally:
            _remove_tree(folder)
    readable = staged
    if found is FileFormatValues.GZIP:
        readable = store.temp_path(".nii.gz")
        os.link(staged, readable)
    try:
        return read_volume(
            readable, max_voxels=limits.max_voxels, max_decoded_bytes=limits.max_decoded_bytes
        )
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
    patient: PatientIdentity,
) -> IngestedVolume:
    """Validate the staged upload, store it and its canonical MHA, describe its geometry.

    Raises
    ------
    InvalidInputError
        Anything wrong with the file (field ``file``), including content of another format
        than declared and a Patient Position that contradicts the session's.
    PatientMismatchError
        DICOM slices naming another patient than ``patient`` (both identities in the message).
    """
    try:
        loaded = _read(staged, fmt, store, limits)
        check_same_patient(loaded.patient, patient, what="the volume", field="file")
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
