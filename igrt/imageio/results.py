"""What the readers and writers of :mod:`igrt.imageio` return besides plain images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from igrt.errors import GeometryError, InvalidInputError
from igrt.geometry import ProjectionGeometry
from igrt.patient_identity import PatientIdentity
from igrt.volume import Volume

__all__ = ["LoadedRtImage", "LoadedVolume", "WrittenDicom"]


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
    patient : PatientIdentity
        The patient the DICOM files name (empty for formats that name none).
    """

    volume: Volume
    patient_position: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    modality: str | None = None
    source_files: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()
    patient: PatientIdentity = field(default_factory=PatientIdentity)


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


@dataclass(frozen=True, eq=False)
class LoadedRtImage:
    """A DICOM RT Image (portal image, DRR, simulator image) and its projection geometry.

    Attributes
    ----------
    image : numpy.ndarray
        ``(rows, columns)`` float32 pixel values after the Modality LUT (Rescale Slope and
        Intercept), rows along the detector ``v`` axis. Not inverted for MONOCHROME1.
    geometry : ProjectionGeometry
        SAD, SDD (the RT Image SID), pixel pitch in the image plane, panel offsets from the
        beam axis and the imaging source's gantry angle, IEC 61217 (see
        :mod:`igrt.imageio.rtimage`).
    path : pathlib.Path
        The file read.
    treatment_gantry_deg : float or None
        The file's Gantry Angle (300A,011E), i.e. the treatment beam's, degrees; ``None`` when
        absent. ``geometry.gantry_deg`` differs from it only when the caller said where the
        imaging source was.
    image_kind : str or None
        Third value of Image Type (0008,0008): ``DRR``, ``PORTAL``, ``SIMULATOR``,
        ``RADIOGRAPH``, ``BLANK`` or ``FLUENCE``; ``None`` when absent.
    label : str or None
        RT Image Label (3002,0002).
    photometric_interpretation : str
        ``MONOCHROME2`` (bright = high value) or ``MONOCHROME1`` (displayed inverted).
    frame_of_reference_uid : str or None
        Frame of Reference UID (0020,0052), when stated.
    notes : tuple of str
        Anything the reader assumed; empty when nothing was.

    Raises
    ------
    InvalidInputError
        If the image is not a finite 2D float32 array.
    GeometryError
        If its shape is not the geometry's detector shape.
    """

    image: npt.NDArray[np.float32]
    geometry: ProjectionGeometry
    path: Path
    treatment_gantry_deg: float | None = None
    image_kind: str | None = None
    label: str | None = None
    photometric_interpretation: str = "MONOCHROME2"
    frame_of_reference_uid: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        image = self.image
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.float32
            or image.ndim != 2
            or not np.all(np.isfinite(image))
        ):
            raise InvalidInputError("an RT image must be a finite 2D float32 array", field="image")
        if image.shape != self.geometry.detector_shape:
            raise GeometryError(
                f"image shape {image.shape} differs from the detector shape "
                f"{self.geometry.detector_shape}",
                field="detector_shape",
            )
