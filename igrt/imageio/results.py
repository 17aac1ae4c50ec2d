"""What the readers and writers of :mod:`igrt.imageio` return besides plain images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from igrt.volume import Volume

__all__ = ["LoadedVolume", "WrittenDicom"]


@dataclass(frozen=True, eq=False)
class LoadedVolume:
    """A volume read from disk, with the identifying DICOM context that is not geometry.

    Attributes
    ----------
    volume : Volume
        Voxels (HU for CT after the Modality LUT) and geometry in DICOM LPS; carries the
        Frame of Reference UID when the file states one.
    patient_position : str or None
        DICOM Patient Position (0018,5100) as written in the file (e.g. ``"HFS"``), or ``None``
        when absent. Parse it with ``igrt.frame_of_reference.PatientPositionValues.parse``.
    series_instance_uid : str or None
        Series Instance UID (DICOM only).
    study_instance_uid : str or None
        Study Instance UID (DICOM only).
    modality : str or None
        DICOM Modality, e.g. ``"CT"``.
    source_files : tuple of pathlib.Path
        The files the voxels came from, in slice order (``k = 0`` first).
    notes : tuple of str
        Anything the reader assumed or skipped (ignored non-DICOM files, a single slice's
        nominal thickness, ...). Empty when nothing was assumed.
    """

    volume: Volume
    patient_position: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    modality: str | None = None
    source_files: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WrittenDicom:
    """Identifiers and files of DICOM instances just written.

    Attributes
    ----------
    paths : tuple of pathlib.Path
        Files written, in instance order (slice ``k = 0`` first for a CT series).
    study_instance_uid, series_instance_uid : str
        The study and series the instances belong to.
    sop_instance_uids : tuple of str
        One per file, same order as ``paths``.
    frame_of_reference_uid : str or None
        Frame of Reference UID written, ``None`` when the IOD has none (fluoroscopy).
    """

    paths: tuple[Path, ...]
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uids: tuple[str, ...]
    frame_of_reference_uid: str | None = None
