"""A kV fluoroscopy or CBCT projection sequence as one multi-frame DICOM file.

Which IOD, and why: X-Ray Angiographic Image (XA, 1.2.840.10008.5.1.4.1.1.12.1)
-------------------------------------------------------------------------------
* It is the only classic (non-enhanced) X-ray IOD whose positioner can move during a
  multi-frame acquisition: Positioner Motion ``DYNAMIC`` with a per-frame Positioner Primary
  Angle Increment (0018,1520) referenced by the Frame Increment Pointer (PS3.3 C.8.7.5.1.3).
  C-arm cone-beam CT projections are stored this way, and a linac kV imager rotating about the
  patient's head-foot axis is the same geometry. PS3.3 C.8.7.5 also recommends XA for non-
  angiographic c-arm-like systems.
* X-Ray Radiofluoroscopic (XRF) has no positioner angles at all (only a column angulation), so
  a rotating CBCT acquisition could not be described.
* RT Image has RTImageSID, RadiationMachineSAD and XRayImageReceptorTranslation, but a single
  Gantry Angle per instance (no per-frame angle), and it is meant for the treatment beam's
  portal images and DRRs rather than the kV imager.
* Enhanced XA would carry per-frame functional groups (and equipment-based angles), but it
  requires many more mandatory modules and far fewer readers support it.

What is written (standard attributes)
-------------------------------------
==========================================  ================================================
Distance Source to Patient (0018,1111)      SAD, mm (XA: source to isocentre)
Distance Source to Detector (0018,1110)     SDD, mm
Imager Pixel Spacing (0018,1164)            ``(pitch_v, pitch_u)``: row spacing first, mm
Positioner Primary Angle (0018,1510)        receptor angle of frame 0, patient-based, deg
Positioner Primary Angle Increment          per frame, offset from frame 0's angle (DYNAMIC)
Positioner Motion (0018,1500)               STATIC (fixed gantry) or DYNAMIC (rotation)
Frame Time Vector (0018,1065)               ms between consecutive frames (first is 0)
Frame Delay (0018,1066)                     time of frame 0, ms (``timestamps_s[0]``)
Frame Increment Pointer (0028,0009)         Frame Time Vector [+ Primary Angle Increment]
Patient Position (0018,5100)                needed to turn patient-based angles into gantry
Pixel Intensity Relationship (0028,1040)    LIN for RAW frames, LOG for LINE_INTEGRAL
Pixel Intensity Relationship Sign           +1 for RAW, -1 for LINE_INTEGRAL
==========================================  ================================================

The XA angle is the *receptor's* position about the *patient* (0 deg: receptor at the chest,
+90 deg at the patient's left); the igrt gantry angle is the kV *source's* IEC 61217 angle in the
*room*. The two are converted with the Patient Position (couch angle 0 assumed); for a
head-first-supine patient the primary angle is the gantry angle + 180 deg (wrapped).

Pixels: RAW frames must be integers in 0..65535 and are stored unchanged as MONOCHROME2
16-bit (8-bit for ``uint8`` input) with no Modality LUT. LINE_INTEGRAL frames (usually floats)
are stored as 16-bit unsigned integers with Rescale Slope/Intercept (Rescale Type ``US``),
spread over the full 0..65535 range: the error is at most half the slope, i.e. 1/131070 of
the value range; integer LINE_INTEGRAL frames within 0..65535 are stored exactly. Reading
returns ``float32`` for rescaled frames and the stored integers otherwise.

Private block (exact values)
----------------------------
DS numbers hold 16 characters and classic XA has no panel offset attribute, so the writer also
stores, in private group 0x0077 under the creator ``"IGRT imageio fluoro 1"``, float64 copies of
the per-frame timestamps (s), gantry angles (deg) and panel offsets ``u`` and ``v`` (mm), and of
SAD, SDD and the pitch ``(u, v)``. The reader prefers them (the round trip is exact) after
checking that they agree with the standard attributes present; a disagreement means the file
was edited and is refused.

Reading files from elsewhere
----------------------------
Without the private block the geometry comes from the standard attributes above (also Distance
Source to Isocenter (0018,9402) for SAD); panels are taken as centred on the central ray (the
XA model has no panel offset). When an attribute needed for the geometry is missing the reader
raises :class:`~igrt.errors.GeometryError` naming it, unless the caller passes
``fallback_geometry``; a multi-frame file without frame times needs ``fallback_fps``; pixel
meaning that the file does not state (DISP, CR/DX files) needs ``intensity``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID, XRayAngiographicImageStorage

from igrt.errors import GeometryError, ImageReadError, InvalidInputError
from igrt.frame_of_reference import PatientPositionValues
from igrt.geometry import ProjectionGeometry
from igrt.imageio._dicom_attributes import (
    attribute_label,
    ds_string,
    make_uid,
    new_part10_dataset,
    optional_float,
    optional_floats,
    optional_text,
    validated_uid,
)
from igrt.imageio._dicom_file import read_dicom_file
from igrt.imageio._dicom_pixels import decode_pixels
from igrt.imageio._failures import MALFORMED_VALUE_ERRORS, foreign_errors, with_file_context
from igrt.imageio._positioner_angles import (
    gantry_deg_from_primary_angle,
    primary_angle_from_gantry_deg,
    wrap_deg,
)
from igrt.imageio._rescale import encode_as_integers
from igrt.imageio.results import WrittenDicom
from igrt.sequence import FluoroSequence, IntensityValues

__all__ = ["PRIVATE_CREATOR", "PRIVATE_GROUP", "read_fluoro_dicom", "write_fluoro_dicom"]

_LOG = logging.getLogger(__name__)

PRIVATE_GROUP = 0x0077
"""Odd (private) group holding the exact float64 copies of the geometry."""

PRIVATE_CREATOR = "IGRT imageio fluoro 1"
"""Private Creator of the block; the element offsets below are fixed for this creator."""

_P_TIMESTAMPS_S = 0x10
_P_GANTRY_DEG = 0x11
_P_SAD_MM = 0x12
_P_SDD_MM = 0x13
_P_PITCH_MM = 0x14
_P_OFFSET_U_MM = 0x15
_P_OFFSET_V_MM = 0x16
_PRIVATE_NAMES = {
    _P_TIMESTAMPS_S: "timestamps_s",
    _P_GANTRY_DEG: "gantry_deg",
    _P_SAD_MM: "sad_mm",
    _P_SDD_MM: "sdd_mm",
    _P_PITCH_MM: "pixel_pitch_mm",
    _P_OFFSET_U_MM: "detector_offset_u_mm",
    _P_OFFSET_V_MM: "detector_offset_v_mm",
}

_TAG_FRAME_TIME = Tag(0x0018, 0x1063)
_TAG_FRAME_TIME_VECTOR = Tag(0x0018, 0x1065)
_TAG_PRIMARY_ANGLE_INCREMENT = Tag(0x0018, 0x1520)

_RELATIVE_TOLERANCE = 1e-6
_ANGLE_TOLERANCE_DEG = 1e-6
_TIME_TOLERANCE_S = 1e-6


# --- writing --------------------------------------------------------------------------------


def _constant(values: list[Any], name: str) -> Any:
    if any(value != values[0] for value in values[1:]):
        raise GeometryError(
            f"{name} changes between frames; one DICOM file holds a single {name} "
            "(split the sequence)",
            field="geometries",
        )
    return values[0]


def _encode_frames(sequence: FluoroSequence) -> tuple[npt.NDArray[Any], float, float]:
    """Stored frames and the (slope, intercept) that map them back to the frame values."""
    frames = sequence.frames
    if sequence.intensity is IntensityValues.DISPLAY:
        raise InvalidInputError(
            "display grey levels have no DICOM pixel-intensity relationship a reader could "
            "restore; store raw counts or line integrals",
            field="intensity",
        )
    if sequence.intensity is IntensityValues.RAW:
        if not np.issubdtype(frames.dtype, np.integer):
            raise InvalidInputError(
                f"RAW frames are stored unchanged and must be integers, got {frames.dtype}; "
                "round them to uint16, or mark line integrals as LINE_INTEGRAL",
                field="frames",
            )
        if frames.dtype == np.uint8:
            return frames, 1.0, 0.0
        if int(frames.min()) < 0 or int(frames.max()) > 65535:
            raise InvalidInputError(
                f"RAW frames must lie in 0..65535 to be stored as 16-bit, got "
                f"{int(frames.min())}..{int(frames.max())}",
                field="frames",
            )
        return frames.astype(np.uint16), 1.0, 0.0
    encoding = encode_as_integers(frames, np.uint16)
    return encoding.stored, encoding.slope, encoding.intercept


def _date_and_time(moment: datetime | None) -> tuple[str, str]:
    if moment is None:
        return "", ""
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S.%f")


def _add_private_block(dataset: Dataset, sequence: FluoroSequence) -> None:
    geometries = sequence.geometries
    block = dataset.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(_P_TIMESTAMPS_S, "FD", [float(t) for t in sequence.timestamps_s])
    block.add_new(_P_GANTRY_DEG, "FD", [float(g.gantry_deg) for g in geometries])
    block.add_new(_P_SAD_MM, "FD", float(geometries[0].sad_mm))
    block.add_new(_P_SDD_MM, "FD", float(geometries[0].sdd_mm))
    block.add_new(_P_PITCH_MM, "FD", [float(p) for p in geometries[0].pixel_pitch_mm])
    block.add_new(_P_OFFSET_U_MM, "FD", [float(g.detector_offset_mm[0]) for g in geometries])
    block.add_new(_P_OFFSET_V_MM, "FD", [float(g.detector_offset_mm[1]) for g in geometries])


def write_fluoro_dicom(
    sequence: FluoroSequence,
    path: str | Path,
    *,
    patient_id: str,
    patient_name: str,
    patient_position: str = "HFS",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    series_description: str = "kV fluoroscopy",
    series_number: int = 1,
    kvp: float | None = None,
    uid_seed: str | None = None,
    content_datetime: datetime | None = None,
) -> WrittenDicom:
    """Write a whole :class:`~igrt.sequence.FluoroSequence` as one multi-frame XA file.

    See the module docstring for the attributes written and the pixel encoding.

    Parameters
    ----------
    sequence : FluoroSequence
        Frames, timestamps and per-frame geometry. SAD, SDD and pixel pitch must be the same
        for every frame; gantry angle and panel offsets may change per frame.
    path : str or pathlib.Path
        Destination file (conventionally ``.dcm``); its folder must exist.
    patient_id, patient_name : str
        Patient ID (0010,0020) and Patient's Name (0010,0010).
    patient_position : str, optional
        DICOM Patient Position during the acquisition (``HFS`` by default); it defines the
        conversion of gantry angles to the patient-based XA positioner angles.
    study_instance_uid, series_instance_uid : str or None, optional
        New UIDs when omitted.
    series_description : str, optional
        Series Description (0008,103E).
    series_number : int, optional
        Series Number (0020,0011).
    kvp : float or None, optional
        Tube voltage, kV; written empty when unknown.
    uid_seed : str or None, optional
        Make every generated UID a hash of this seed, so a simulation writes byte-identical
        files each run (with ``content_datetime`` left ``None``). Use one seed per file.
    content_datetime : datetime or None, optional
        Study/series/content date and time; empty when ``None``.

    Returns
    -------
    WrittenDicom
        The path and UIDs written (``frame_of_reference_uid`` is ``None``: XA has none).

    Raises
    ------
    GeometryError
        SAD, SDD or pitch changing between frames.
    InvalidInputError
        RAW frames that are not integers in 0..65535; invalid UIDs; unwritable path.
    FrameOfReferenceError
        Unknown patient position.
    """
    position = PatientPositionValues.parse(patient_position)
    geometries = sequence.geometries
    sad_mm = float(_constant([g.sad_mm for g in geometries], "SAD"))
    sdd_mm = float(_constant([g.sdd_mm for g in geometries], "SDD"))
    pitch_u, pitch_v = _constant([g.pixel_pitch_mm for g in geometries], "pixel pitch")
    stored, slope, intercept = _encode_frames(sequence)
    n_frames, rows, columns = (int(n) for n in stored.shape)

    gantry_deg = sequence.gantry_deg
    primary = np.array([primary_angle_from_gantry_deg(g, position) for g in gantry_deg])
    primary_unwrapped = np.degrees(np.unwrap(np.radians(primary)))
    dynamic = bool(np.any(gantry_deg != gantry_deg[0]))

    study_uid = validated_uid(
        study_instance_uid or make_uid(uid_seed, "study"), "study_instance_uid"
    )
    series_uid = validated_uid(
        series_instance_uid or make_uid(uid_seed, "xa-series", study_uid), "series_instance_uid"
    )
    sop_uid = make_uid(uid_seed, "xa-image", series_uid)
    date, time = _date_and_time(content_datetime)

    dataset = new_part10_dataset(XRayAngiographicImageStorage, sop_uid)
    dataset.SpecificCharacterSet = "ISO_IR 192"
    dataset.ImageType = ["DERIVED", "PRIMARY", "SINGLE PLANE"]
    dataset.SOPClassUID = XRayAngiographicImageStorage
    dataset.SOPInstanceUID = sop_uid
    dataset.StudyDate = date
    dataset.SeriesDate = date
    dataset.ContentDate = date
    dataset.StudyTime = time
    dataset.SeriesTime = time
    dataset.ContentTime = time
    dataset.AccessionNumber = ""
    dataset.Modality = "XA"
    dataset.Manufacturer = ""
    dataset.ReferringPhysicianName = ""
    dataset.SeriesDescription = series_description
    dataset.PatientName = patient_name
    dataset.PatientID = patient_id
    dataset.PatientBirthDate = ""
    dataset.PatientSex = ""
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = series_uid
    dataset.StudyID = ""
    dataset.SeriesNumber = series_number
    dataset.InstanceNumber = 1
    dataset.PatientOrientation = ""
    dataset.PatientPosition = position.value
    # X-Ray Acquisition
    dataset.KVP = "" if kvp is None else ds_string(kvp)
    dataset.RadiationSetting = "SC"
    dataset.ImagerPixelSpacing = [ds_string(pitch_v), ds_string(pitch_u)]
    # XA Positioner
    dataset.DistanceSourceToPatient = ds_string(sad_mm)
    dataset.DistanceSourceToDetector = ds_string(sdd_mm)
    dataset.EstimatedRadiographicMagnificationFactor = ds_string(sdd_mm / sad_mm)
    dataset.PositionerMotion = "DYNAMIC" if dynamic else "STATIC"
    dataset.PositionerPrimaryAngle = ds_string(primary_unwrapped[0])
    dataset.PositionerSecondaryAngle = "0.0"
    # Cine + Multi-frame
    frame_time_vector_ms = np.concatenate(([0.0], np.diff(sequence.timestamps_s) * 1000.0))
    dataset.NumberOfFrames = n_frames
    dataset.FrameTimeVector = [ds_string(v) for v in frame_time_vector_ms]
    dataset.FrameDelay = ds_string(float(sequence.timestamps_s[0]) * 1000.0)
    if dynamic:
        increments = primary_unwrapped - primary_unwrapped[0]
        dataset.PositionerPrimaryAngleIncrement = [ds_string(v) for v in increments]
        dataset.PositionerSecondaryAngleIncrement = "0.0"
        dataset.FrameIncrementPointer = [_TAG_FRAME_TIME_VECTOR, _TAG_PRIMARY_ANGLE_INCREMENT]
    else:
        dataset.FrameIncrementPointer = _TAG_FRAME_TIME_VECTOR
    # X-Ray Image + Image Pixel
    line_integral = sequence.intensity is IntensityValues.LINE_INTEGRAL
    dataset.PixelIntensityRelationship = "LOG" if line_integral else "LIN"
    dataset.PixelIntensityRelationshipSign = -1 if line_integral else 1
    bits = 8 if stored.dtype == np.uint8 else 16
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows = rows
    dataset.Columns = columns
    dataset.BitsAllocated = bits
    dataset.BitsStored = bits
    dataset.HighBit = bits - 1
    dataset.PixelRepresentation = 0
    dataset.LossyImageCompression = "00"
    if line_integral:  # Modality LUT module: required by XA when the relationship is LOG
        dataset.RescaleIntercept = ds_string(intercept)
        dataset.RescaleSlope = ds_string(slope)
        dataset.RescaleType = "US"
    pixel_bytes = np.ascontiguousarray(stored, dtype="<u2" if bits == 16 else "u1").tobytes()
    if len(pixel_bytes) % 2:
        pixel_bytes += b"\x00"
    dataset.add_new(Tag(0x7FE0, 0x0010), "OW" if bits == 16 else "OB", pixel_bytes)
    _add_private_block(dataset, sequence)

    destination = Path(path)
    with foreign_errors(destination, "write DICOM file", error=InvalidInputError):
        dataset.save_as(destination, enforce_file_format=True)
    return WrittenDicom(
        paths=(destination,),
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        sop_instance_uids=(sop_uid,),
    )


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _StandardGeometry:
    sad_mm: float
    sdd_mm: float
    pitch_mm: tuple[float, float]
    gantry_deg: npt.NDArray[np.float64]


def _private_floats(dataset: Dataset, path: Path) -> dict[int, npt.NDArray[np.float64]] | None:
    try:
        block = dataset.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    except KeyError:
        return None
    values: dict[int, npt.NDArray[np.float64]] = {}
    for offset, name in _PRIVATE_NAMES.items():
        try:
            raw = block[offset].value
        except KeyError:
            raise GeometryError(
                f"{path}: the igrt private block lacks {name} (element {offset:#04x}); the file "
                "was edited after it was written",
                field=name,
            ) from None
        if isinstance(raw, bytes | bytearray):  # the VR was lost (implicit VR re-encoding)
            array = np.frombuffer(bytes(raw), dtype="<f8").astype(np.float64)
        else:
            array = np.atleast_1d(np.asarray(raw, dtype=np.float64))
        if not np.all(np.isfinite(array)):
            raise GeometryError(f"{path}: igrt private {name} is not finite", field=name)
        values[offset] = array
    return values


def _check_private_lengths(values: dict[int, npt.NDArray[np.float64]], n: int, path: Path) -> None:
    expected = {
        _P_TIMESTAMPS_S: n,
        _P_GANTRY_DEG: n,
        _P_SAD_MM: 1,
        _P_SDD_MM: 1,
        _P_PITCH_MM: 2,
        _P_OFFSET_U_MM: n,
        _P_OFFSET_V_MM: n,
    }
    for offset, count in expected.items():
        if values[offset].shape != (count,):
            raise GeometryError(
                f"{path}: igrt private {_PRIVATE_NAMES[offset]} holds "
                f"{values[offset].size} values, expected {count}",
                field=_PRIVATE_NAMES[offset],
            )


def _primary_angles(dataset: Dataset, path: Path, n: int, start_deg: float) -> npt.NDArray[Any]:
    motion = (optional_text(dataset, "PositionerMotion") or "STATIC").upper()
    increments = optional_floats(dataset, "PositionerPrimaryAngleIncrement", path)
    if motion != "DYNAMIC" or increments is None:
        if motion == "DYNAMIC":
            raise GeometryError(
                f"{path}: Positioner Motion is DYNAMIC but "
                f"{attribute_label('PositionerPrimaryAngleIncrement')} is missing",
                field="PositionerPrimaryAngleIncrement",
            )
        return np.full(n, start_deg)
    if len(increments) == n:  # offsets from the first frame's angle (PS3.3 C.8.7.5.1.3)
        return start_deg + np.asarray(increments)
    if len(increments) == 1:  # a nominal constant change per frame
        return start_deg + increments[0] * np.arange(n)
    raise GeometryError(
        f"{path}: {attribute_label('PositionerPrimaryAngleIncrement')} holds "
        f"{len(increments)} values for {n} frames",
        field="PositionerPrimaryAngleIncrement",
    )


def _check_no_secondary_tilt(dataset: Dataset, path: Path) -> None:
    for keyword in ("PositionerSecondaryAngle", "PositionerSecondaryAngleIncrement"):
        values = optional_floats(dataset, keyword, path) or [0.0]
        if any(abs(v) > _ANGLE_TOLERANCE_DEG for v in values):
            raise GeometryError(
                f"{path}: {attribute_label(keyword)} is {values}: a cranio-caudal tilt cannot "
                "be described by a gantry rotating about the head-foot axis",
                field=keyword,
            )


def _standard_geometry(dataset: Dataset, path: Path, n: int) -> _StandardGeometry:
    """Geometry from standard attributes; GeometryError naming every missing attribute."""
    sad = optional_float(dataset, "DistanceSourceToPatient", path)
    if sad is None:
        sad = optional_float(dataset, "DistanceSourceToIsocenter", path)
    sdd = optional_float(dataset, "DistanceSourceToDetector", path)
    pitch = optional_floats(dataset, "ImagerPixelSpacing", path)
    start = optional_float(dataset, "PositionerPrimaryAngle", path)
    position_text = optional_text(dataset, "PatientPosition")
    if sad is None or sdd is None or pitch is None or start is None or position_text is None:
        missing = [
            keyword
            for keyword, value in (
                ("DistanceSourceToPatient", sad),
                ("DistanceSourceToDetector", sdd),
                ("ImagerPixelSpacing", pitch),
                ("PositionerPrimaryAngle", start),
                ("PatientPosition", position_text),
            )
            if value is None
        ]
        sop_class = UID(optional_text(dataset, "SOPClassUID") or "").name or "unknown SOP class"
        raise GeometryError(
            f"{path} ({sop_class}) lacks {', '.join(attribute_label(k) for k in missing)}: the "
            "projection geometry cannot be established (pass fallback_geometry to supply it)",
            field=missing[0],
        )
    if len(pitch) != 2:
        raise GeometryError(
            f"{path}: {attribute_label('ImagerPixelSpacing')} needs 2 values, got {pitch}",
            field="ImagerPixelSpacing",
        )
    _check_no_secondary_tilt(dataset, path)
    try:
        position = PatientPositionValues.parse(position_text)
    except InvalidInputError as exc:
        raise with_file_context(exc, path) from exc
    primary = _primary_angles(dataset, path, n, start)
    gantry = np.array([gantry_deg_from_primary_angle(a, position) for a in primary])
    gantry = np.degrees(np.unwrap(np.radians(gantry)))
    gantry = gantry - 360.0 * np.floor(gantry[0] / 360.0)  # frame 0 in [0, 360)
    return _StandardGeometry(sad, sdd, (pitch[1], pitch[0]), gantry)


def _cross_check(
    standard: _StandardGeometry, private: dict[int, npt.NDArray[np.float64]], path: Path
) -> None:
    pairs = (
        ("DistanceSourceToPatient", standard.sad_mm, float(private[_P_SAD_MM][0])),
        ("DistanceSourceToDetector", standard.sdd_mm, float(private[_P_SDD_MM][0])),
        ("ImagerPixelSpacing", standard.pitch_mm[0], float(private[_P_PITCH_MM][0])),
        ("ImagerPixelSpacing", standard.pitch_mm[1], float(private[_P_PITCH_MM][1])),
    )
    for keyword, value, exact in pairs:
        if abs(value - exact) > _RELATIVE_TOLERANCE * max(1.0, abs(exact)):
            raise GeometryError(
                f"{path}: {attribute_label(keyword)} says {value} but the igrt private copy says "
                f"{exact}; the file was edited after it was written",
                field=keyword,
            )
    angle_error = np.abs([wrap_deg(d) for d in standard.gantry_deg - private[_P_GANTRY_DEG]])
    if angle_error.max() > 1e3 * _ANGLE_TOLERANCE_DEG:
        raise GeometryError(
            f"{path}: the positioner angles disagree with the igrt private gantry angles by up "
            f"to {angle_error.max():.6f} deg; the file was edited after it was written",
            field="PositionerPrimaryAngle",
        )


def _geometries(
    dataset: Dataset,
    path: Path,
    n: int,
    shape: tuple[int, int],
    private: dict[int, npt.NDArray[np.float64]] | None,
    fallback_geometry: ProjectionGeometry | None,
) -> tuple[ProjectionGeometry, ...]:
    standard: _StandardGeometry | None = None
    standard_error = GeometryError(f"{path}: no projection geometry", field="geometries")
    try:
        standard = _standard_geometry(dataset, path, n)
    except GeometryError as exc:
        standard_error = exc
    try:
        if private is not None:
            if standard is not None:
                _cross_check(standard, private, path)
            pitch = private[_P_PITCH_MM]
            return tuple(
                ProjectionGeometry(
                    sad_mm=float(private[_P_SAD_MM][0]),
                    sdd_mm=float(private[_P_SDD_MM][0]),
                    pixel_pitch_mm=(float(pitch[0]), float(pitch[1])),
                    detector_shape=shape,
                    detector_offset_mm=(
                        float(private[_P_OFFSET_U_MM][i]),
                        float(private[_P_OFFSET_V_MM][i]),
                    ),
                    gantry_deg=float(private[_P_GANTRY_DEG][i]),
                )
                for i in range(n)
            )
        if standard is not None:
            return tuple(
                ProjectionGeometry(
                    sad_mm=standard.sad_mm,
                    sdd_mm=standard.sdd_mm,
                    pixel_pitch_mm=standard.pitch_mm,
                    detector_shape=shape,
                    gantry_deg=float(g),
                )
                for g in standard.gantry_deg
            )
    except GeometryError as exc:
        if str(path) in str(exc):
            raise
        raise with_file_context(exc, path) from exc
    if fallback_geometry is None:
        raise standard_error
    if fallback_geometry.detector_shape != shape:
        raise GeometryError(
            f"{path}: fallback_geometry describes a {fallback_geometry.detector_shape} panel but "
            f"the frames are {shape}",
            field="fallback_geometry",
        )
    _LOG.warning("%s; using the caller's fallback_geometry for every frame", standard_error)
    return (fallback_geometry,) * n


def _standard_timestamps(dataset: Dataset, path: Path, n: int) -> npt.NDArray[np.float64] | None:
    delay_ms = optional_float(dataset, "FrameDelay", path) or 0.0
    vector = optional_floats(dataset, "FrameTimeVector", path)
    frame_time = optional_float(dataset, "FrameTime", path)
    pointed: set[int] = set()
    if "FrameIncrementPointer" in dataset:
        element = dataset["FrameIncrementPointer"]
        if element.VM > 1:
            pointed = {Tag(int(t)) for t in element.value}
        elif element.VM == 1:
            pointed = {Tag(int(element.value))}
    if vector is not None and (_TAG_FRAME_TIME_VECTOR in pointed or frame_time is None):
        if len(vector) != n:
            raise ImageReadError(
                f"{path}: {attribute_label('FrameTimeVector')} holds {len(vector)} values for "
                f"{n} frames",
                field="FrameTimeVector",
            )
        return np.asarray((delay_ms + np.cumsum(vector)) / 1000.0, dtype=np.float64)
    if frame_time is not None:
        if frame_time <= 0:
            raise ImageReadError(
                f"{path}: {attribute_label('FrameTime')} must be positive, got {frame_time}",
                field="FrameTime",
            )
        return np.asarray((delay_ms + frame_time * np.arange(n)) / 1000.0, dtype=np.float64)
    return None


def _timestamps(
    dataset: Dataset,
    path: Path,
    n: int,
    private: dict[int, npt.NDArray[np.float64]] | None,
    fallback_fps: float | None,
) -> npt.NDArray[np.float64]:
    standard = _standard_timestamps(dataset, path, n)
    if private is not None:
        exact = private[_P_TIMESTAMPS_S]
        if standard is not None and np.max(np.abs(standard - exact)) > _TIME_TOLERANCE_S:
            raise ImageReadError(
                f"{path}: the frame times disagree with the igrt private timestamps; the file "
                "was edited after it was written",
                field="FrameTimeVector",
            )
        return exact
    if standard is not None:
        return standard
    if n == 1:
        return np.zeros(1)
    if fallback_fps is None:
        raise ImageReadError(
            f"{path} holds {n} frames but neither {attribute_label('FrameTimeVector')} nor "
            f"{attribute_label('FrameTime')}: pass fallback_fps",
            field="FrameTime",
        )
    if not np.isfinite(fallback_fps) or fallback_fps <= 0:
        raise InvalidInputError(
            f"fallback_fps must be positive, got {fallback_fps}", field="fallback_fps"
        )
    _LOG.warning("%s has no frame times; using fallback_fps=%s", path, fallback_fps)
    return np.arange(n) / float(fallback_fps)


def _file_intensity(dataset: Dataset) -> IntensityValues | None:
    relationship = (optional_text(dataset, "PixelIntensityRelationship") or "").upper()
    sign = 0
    if "PixelIntensityRelationshipSign" in dataset:
        sign_value = dataset["PixelIntensityRelationshipSign"].value
        sign = int(sign_value) if sign_value is not None and sign_value != "" else 0
    if relationship == "LIN" and sign == 1:
        return IntensityValues.RAW
    if relationship == "LOG" and sign == -1:
        return IntensityValues.LINE_INTEGRAL
    return None


def _intensity(dataset: Dataset, path: Path, requested: IntensityValues | None) -> IntensityValues:
    stated = _file_intensity(dataset)
    if requested is not None:
        if stated is not None and stated is not requested:
            raise InvalidInputError(
                f"{path} states {stated.name} pixels (Pixel Intensity Relationship and Sign) "
                f"but intensity={requested.name} was passed",
                field="intensity",
            )
        return requested
    if stated is None:
        raise ImageReadError(
            f"{path}: {attribute_label('PixelIntensityRelationship')} and "
            f"{attribute_label('PixelIntensityRelationshipSign')} do not say whether pixels are "
            "raw signal (LIN, +1) or line integrals (LOG, -1): pass intensity",
            field="PixelIntensityRelationship",
        )
    return stated


def _displayed_inverted(dataset: Dataset) -> bool:
    """Whether the file's grey levels are shown inverted: lung bright as stored.

    MONOCHROME1 displays the lowest value white; a Presentation LUT Shape of INVERSE flips
    whatever the Photometric Interpretation says (PS3.3 C.11.6).
    """
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    shape = str(dataset.get("PresentationLUTShape", "IDENTITY")).strip().upper()
    return (photometric == "MONOCHROME1") != (shape == "INVERSE")


def _inverted(frames: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Grey levels mirrored within the sequence's own range, in the same dtype."""
    low, high = frames.min(), frames.max()
    if np.issubdtype(frames.dtype, np.integer):
        mirrored = (int(low) + int(high)) - frames.astype(np.int64)
        return mirrored.astype(frames.dtype)
    flipped: npt.NDArray[Any] = (low + high) - frames
    return flipped


def _frame_values(dataset: Dataset, path: Path) -> npt.NDArray[Any]:
    decoded = decode_pixels(dataset, path)
    if decoded.rescaled:
        return decoded.array
    slope = optional_float(dataset, "RescaleSlope", path)
    intercept = optional_float(dataset, "RescaleIntercept", path)
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    if slope == 1.0 and intercept == 0.0:
        return decoded.array
    return (decoded.array.astype(np.float64) * slope + intercept).astype(np.float32)


def read_fluoro_dicom(
    path: str | Path,
    *,
    fallback_geometry: ProjectionGeometry | None = None,
    fallback_fps: float | None = None,
    intensity: IntensityValues | None = None,
) -> FluoroSequence:
    """Read an X-ray frame sequence (or a single radiograph) from one DICOM file.

    Parameters
    ----------
    path : str or pathlib.Path
        A file written by :func:`write_fluoro_dicom`, or another XA/XRF (or CR/DX) image.
    fallback_geometry : ProjectionGeometry or None, optional
        Used for every frame only when the file's geometry cannot be established (a warning is
        logged); ignored otherwise. Its detector shape must match the frames.
    fallback_fps : float or None, optional
        Frame rate used only when a multi-frame file has no frame times.
    intensity : IntensityValues or None, optional
        Pixel meaning, needed when the file does not state it through Pixel Intensity
        Relationship (LIN/+1 = RAW, LOG/-1 = LINE_INTEGRAL); must agree when it does.

    Returns
    -------
    FluoroSequence
        Frames ``(n, rows, columns)`` (stored integers, or ``float32`` after a non-identity
        Rescale Slope/Intercept), timestamps in s and one geometry per frame. Pixels are
        returned as stored, except display grey levels (``intensity`` DISPLAY) shown inverted
        (MONOCHROME1, or a Presentation LUT Shape of INVERSE): they are mirrored within the
        sequence's range so that lung is dark, as DISPLAY means.

    Raises
    ------
    ImageReadError
        Missing, non-DICOM, corrupt or truncated file; undecodable pixels; missing frame times
        or pixel meaning without a fallback.
    GeometryError
        Geometry attributes missing (the message names them) and no ``fallback_geometry``;
        values inconsistent with the igrt private copy.
    FrameOfReferenceError
        Unknown Patient Position in the file.
    """
    source, dataset = read_dicom_file(path)
    # pydicom converts values lazily, on access: malformed values surface as foreign errors.
    with foreign_errors(source, "interpret DICOM attributes of", catch=MALFORMED_VALUE_ERRORS):
        frames = _frame_values(dataset, source)
        n_frames, rows, columns = (int(n) for n in frames.shape)
        private = _private_floats(dataset, source)
        if private is not None:
            _check_private_lengths(private, n_frames, source)
        geometries = _geometries(
            dataset, source, n_frames, (rows, columns), private, fallback_geometry
        )
        timestamps = _timestamps(dataset, source, n_frames, private, fallback_fps)
        meaning = _intensity(dataset, source, intensity)
        if meaning is IntensityValues.DISPLAY and _displayed_inverted(dataset):
            frames = _inverted(frames)
    try:
        return FluoroSequence(frames, timestamps, geometries, meaning)
    except InvalidInputError as exc:
        raise with_file_context(exc, source) from exc
