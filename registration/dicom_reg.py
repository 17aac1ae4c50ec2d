"""Export a rigid CBCT-to-CT result as a DICOM Spatial Registration object, and read one back.

Direction of the matrix (``STYLE.md`` pitfall 2)
------------------------------------------------
DICOM (PS3.3 C.20.2.1.1) defines each Registration Sequence item's Frame of Reference
Transformation Matrix ``A_M_B`` as mapping a point given in that item's frame of reference
``B`` (the *registered*, moving frame) into the frame of reference ``A`` of the Spatial
Registration instance itself (the *reference*): ``p_A = A_M_B @ p_B``. Here:

- ``A`` = the planning CT's frame of reference (the instance's ``FrameOfReferenceUID``),
- item 1: the planning CT's frame, identity matrix,
- item 2: the CBCT's own frame, matrix ``result.ct_from_cbct_frame``: a point in the CBCT's
  own coordinates (LPS mm) goes to the planning-CT point of the same anatomy. For a CBCT in
  the planning frame that is ``ct_from_cbct`` = ``inv(result.cbct_from_ct)``; for a CBCT in
  the treatment room's frame (another Frame of Reference UID) it also carries the placement
  by the treatment isocentre (``ct_from_cbct @ planning_from_cbct_frame``,
  :mod:`registration.cbct_placement`), so the item's UID and matrix belong together.

When both images carry the same Frame of Reference UID (a CBCT reconstructed in the planning
frame), the two items share it and are told apart by their referenced images and their order
(reference first); :class:`ReadSpatialRegistration` keeps the order.

References
----------
The instance references every source image it knows (DICOM inputs; read from the
:class:`~igrt.imageio.LoadedVolume`'s files): in each item's Referenced Image Sequence, in the
Common Instance Reference module's Referenced Series Sequence (series of the CT's study) and
Studies Containing Other Referenced Instances Sequence (series of another study). Volumes that
did not come from DICOM (MHA, NRRD, NIfTI) are referenced by their frame of reference only;
a missing Frame of Reference UID is replaced by a new one (reproducible with ``uid_seed``) and
the replacement noted in the Content Description.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from igrt.errors import ImageReadError, InvalidInputError
from igrt.imageio import LoadedVolume, WrittenDicom
from igrt.imageio._dicom_attributes import ds_string, make_uid, new_part10_dataset
from igrt.volume import Volume
from registration.result import RigidRegistrationResult

__all__ = [
    "SPATIAL_REGISTRATION_SOP_CLASS_UID",
    "ReadSpatialRegistration",
    "RegistrationItem",
    "read_spatial_registration",
    "write_spatial_registration",
]

FloatArray = npt.NDArray[np.float64]

SPATIAL_REGISTRATION_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.1"
"""Spatial Registration Storage."""

_IMPLEMENTATION_NAME = "igrt registration"


@dataclass(frozen=True)
class _Instance:
    sop_class_uid: str
    sop_instance_uid: str


_IDENTITY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "BodyPartExamined",
)
"""Patient and study attributes carried from the first source file into the REG."""

_STUDY_KEYWORDS = ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")

_DEFAULT_BODY_PART = "LIVER"
"""Body Part Examined when the planning CT states none: the site this service registers (a
non-paired part, so General Series Laterality is not required)."""


@dataclass(frozen=True)
class _Source:
    frame_of_reference_uid: str
    study_instance_uid: str | None
    series_instance_uid: str | None
    instances: tuple[_Instance, ...]
    generated_frame: bool
    identity: dict[str, str]


def _header(path: Path, keywords: list[str]) -> Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=keywords)
    except (OSError, pydicom.errors.InvalidDicomError) as error:
        raise ImageReadError(f"{path}: cannot re-read the DICOM header: {error}") from error


def _identity(header: Dataset) -> dict[str, str]:
    identity = {}
    for keyword in _IDENTITY_KEYWORDS:
        value = header.get(keyword)
        text = "" if value is None else str(value).strip()
        if text:
            identity[keyword] = text
    return identity


def _source(value: Volume | LoadedVolume, uid_seed: str | None, role: str) -> _Source:
    if isinstance(value, LoadedVolume):
        volume, loaded = value.volume, value
    elif isinstance(value, Volume):
        volume, loaded = value, None
    else:
        raise InvalidInputError(
            f"{role} must be an igrt Volume or LoadedVolume, got {type(value).__name__}",
            field=role,
        )
    instances: list[_Instance] = []
    identity: dict[str, str] = {}
    if loaded is not None and loaded.series_instance_uid is not None:
        for index, path in enumerate(loaded.source_files):
            keywords = ["SOPClassUID", "SOPInstanceUID"]
            header = _header(path, keywords + list(_IDENTITY_KEYWORDS) if index == 0 else keywords)
            if index == 0:
                identity = _identity(header)
            if "SOPInstanceUID" in header and "SOPClassUID" in header:
                instances.append(_Instance(str(header.SOPClassUID), str(header.SOPInstanceUID)))
    frame = volume.frame_of_reference_uid
    return _Source(
        frame_of_reference_uid=frame if frame else make_uid(uid_seed, "frame", role),
        study_instance_uid=None if loaded is None else loaded.study_instance_uid,
        series_instance_uid=None if loaded is None else loaded.series_instance_uid,
        instances=tuple(instances),
        generated_frame=not frame,
        identity=identity,
    )


def _patient(reference: _Source, moving: _Source, given: dict[str, str]) -> dict[str, str]:
    """Patient ID and name: the inputs' (which must agree), or the caller's when they have none.

    Raises
    ------
    InvalidInputError
        The planning CT and the CBCT name different patients, or the caller names another one.
    """
    patient: dict[str, str] = {}
    for keyword, field in (("PatientID", "patient_id"), ("PatientName", "patient_name")):
        stated = {
            role: source.identity[keyword]
            for role, source in (("planning CT", reference), ("CBCT", moving))
            if keyword in source.identity
        }
        if len(set(stated.values())) > 1:
            raise InvalidInputError(
                f"the planning CT and the CBCT name different patients ({keyword}): not one "
                "patient's images",
                field="cbct",
            )
        value = next(iter(stated.values()), "")
        if given[field] and value and given[field] != value:
            raise InvalidInputError(
                f"{field} {given[field]!r} differs from the images' {keyword} {value!r}",
                field=field,
            )
        patient[keyword] = value or given[field]
    return patient


def _matrix_values(matrix: FloatArray) -> list[str]:
    return [ds_string(float(value)) for value in np.asarray(matrix, dtype=np.float64).ravel()]


def _registration_item(source: _Source, matrix: FloatArray) -> Dataset:
    item = Dataset()
    item.FrameOfReferenceUID = source.frame_of_reference_uid
    if source.instances:
        item.ReferencedImageSequence = DicomSequence(
            [_referenced_instance(instance) for instance in source.instances]
        )
    matrix_item = Dataset()
    matrix_item.FrameOfReferenceTransformationMatrixType = "RIGID"
    matrix_item.FrameOfReferenceTransformationMatrix = _matrix_values(matrix)
    registration = Dataset()
    registration.RegistrationTypeCodeSequence = DicomSequence([])  # type 2: present, empty
    registration.MatrixSequence = DicomSequence([matrix_item])
    item.MatrixRegistrationSequence = DicomSequence([registration])
    return item


def _referenced_instance(instance: _Instance) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = instance.sop_class_uid
    reference.ReferencedSOPInstanceUID = instance.sop_instance_uid
    return reference


def _referenced_series(source: _Source) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = source.series_instance_uid
    series.ReferencedInstanceSequence = DicomSequence(
        [_referenced_instance(instance) for instance in source.instances]
    )
    return series


def write_spatial_registration(
    result: RigidRegistrationResult,
    path: str | Path,
    *,
    planning_ct: Volume | LoadedVolume,
    cbct: Volume | LoadedVolume,
    patient_id: str = "",
    patient_name: str = "",
    series_description: str = "CBCT to planning CT (liver)",
    content_label: str = "IGRT_REG",
    uid_seed: str | None = None,
    content_datetime: datetime | None = None,
    overwrite: bool = False,
) -> WrittenDicom:
    """Write ``result`` as a DICOM Spatial Registration instance (see the module docstring).

    Parameters
    ----------
    result : RigidRegistrationResult
        A registration that did not fail; its ``ct_from_cbct`` is written.
    path : str or pathlib.Path
        File to write (``.dcm``).
    planning_ct, cbct : igrt.volume.Volume or igrt.imageio.LoadedVolume
        The registered images; a :class:`~igrt.imageio.LoadedVolume` read from DICOM
        contributes its study, series and SOP instance UIDs.
    patient_id, patient_name : str, optional
        Patient ID and Patient's Name for inputs that carry none (MHA, NIfTI); DICOM inputs'
        own are used, and must agree with these when both are given.
    series_description, content_label : str, optional
        Descriptive attributes.
    uid_seed : str, optional
        Makes every generated UID reproducible (tests); random UIDs otherwise.
    content_datetime : datetime, optional
        Content Date/Time; now by default.
    overwrite : bool, optional
        Replace an existing file.

    Returns
    -------
    WrittenDicom
        The file, its study, series and SOP instance UIDs and the reference frame's UID.

    Raises
    ------
    NotConvergedError
        If the result ``FAILED`` (no trustworthy transform to export).
    InvalidInputError
        If the file exists and ``overwrite`` is false, an argument is unusable, or the images
        (or the caller) name different patients.
    """
    if not isinstance(result, RigidRegistrationResult):
        raise InvalidInputError("result must be a RigidRegistrationResult", field="result")
    result.require_trusted()
    target = Path(path)
    if target.exists() and not overwrite:
        raise InvalidInputError(f"{target} exists (pass overwrite=True)", field="path")
    reference = _source(planning_ct, uid_seed, "planning_ct")
    moving = _source(cbct, uid_seed, "cbct")
    _check_frames_of(result, reference, moving)
    patient = _patient(reference, moving, {"patient_id": patient_id, "patient_name": patient_name})
    when = content_datetime if content_datetime is not None else datetime.now()
    sop_instance_uid = make_uid(uid_seed, "reg", "sop")
    series_instance_uid = make_uid(uid_seed, "reg", "series")
    study_instance_uid = reference.study_instance_uid or make_uid(uid_seed, "reg", "study")

    ds = new_part10_dataset(SPATIAL_REGISTRATION_SOP_CLASS_UID, sop_instance_uid)
    ds.file_meta.ImplementationVersionName = "IGRT_REG_1"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SPATIAL_REGISTRATION_SOP_CLASS_UID
    ds.SOPInstanceUID = sop_instance_uid
    # Patient and study: the planning CT's study when it came as DICOM (with its attributes),
    # a new one otherwise.
    ds.PatientName = patient["PatientName"]
    ds.PatientID = patient["PatientID"]
    ds.PatientBirthDate = reference.identity.get("PatientBirthDate", "")
    ds.PatientSex = reference.identity.get("PatientSex", "")
    ds.StudyInstanceUID = study_instance_uid
    if reference.study_instance_uid:  # the CT's study: its attributes as it states them
        for keyword in _STUDY_KEYWORDS:
            setattr(ds, keyword, reference.identity.get(keyword, ""))
    else:
        ds.StudyDate = when.strftime("%Y%m%d")
        ds.StudyTime = when.strftime("%H%M%S")
        ds.ReferringPhysicianName = ""
        ds.StudyID = ""
        ds.AccessionNumber = ""
    # Series, equipment, frame of reference.
    ds.Modality = "REG"
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = series_description
    ds.BodyPartExamined = reference.identity.get("BodyPartExamined", _DEFAULT_BODY_PART)
    ds.Manufacturer = "igrt"
    ds.SoftwareVersions = _IMPLEMENTATION_NAME
    ds.FrameOfReferenceUID = reference.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # Spatial Registration module.
    ds.InstanceNumber = 1
    ds.ContentDate = when.strftime("%Y%m%d")
    ds.ContentTime = when.strftime("%H%M%S")
    ds.ContentLabel = content_label
    # Content Description is a LO (64 characters): short notes, most important first.
    notes = [
        f"FoR UID generated for {role}"
        for role, source in (("CT", reference), ("CBCT", moving))
        if source.generated_frame
    ]
    notes.append(f"rigid {result.degrees_of_freedom}DOF {result.quality.value}")
    placement = result.cbct_placement
    notes.append(
        "item 2 maps CBCT FoR to CT, placed at isocentre"
        if placement is not None and placement.placed
        else "item 2 maps CBCT to CT"
    )
    ds.ContentDescription = "; ".join(notes)[:64]
    ds.ContentCreatorName = ""
    ds.RegistrationSequence = DicomSequence(
        [
            _registration_item(reference, np.eye(4)),
            _registration_item(moving, np.asarray(result.ct_from_cbct_frame, dtype=np.float64)),
        ]
    )
    # Common Instance Reference module.
    same_study: list[Dataset] = []
    other_studies: dict[str, list[Dataset]] = {}
    for source in (reference, moving):
        if source.series_instance_uid is None or not source.instances:
            continue
        series = _referenced_series(source)
        study = source.study_instance_uid
        if study is None or study == study_instance_uid:
            same_study.append(series)
        else:
            other_studies.setdefault(study, []).append(series)
    if same_study:
        ds.ReferencedSeriesSequence = DicomSequence(same_study)
    if other_studies:
        studies = []
        for study, series_items in other_studies.items():
            item = Dataset()
            item.StudyInstanceUID = study
            item.ReferencedSeriesSequence = DicomSequence(series_items)
            studies.append(item)
        ds.StudiesContainingOtherReferencedInstancesSequence = DicomSequence(studies)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        ds.save_as(target, enforce_file_format=True)
    except OSError as error:
        raise InvalidInputError(f"cannot write {target}: {error}", field="path") from error
    return WrittenDicom(
        paths=(target,),
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        sop_instance_uids=(sop_instance_uid,),
        frame_of_reference_uid=reference.frame_of_reference_uid,
    )


def _check_frames_of(result: RigidRegistrationResult, reference: _Source, moving: _Source) -> None:
    """Refuse images in other Frame of Reference UIDs than the result recorded.

    A placed CBCT's matrix is wrong in any other frame; a frame the result did not know
    (images registered without UIDs) is not checked.
    """
    placement = result.cbct_placement
    if placement is None:
        return
    for role, recorded, source in (
        ("planning CT", placement.planning_frame_of_reference_uid, reference),
        ("CBCT", placement.cbct_frame_of_reference_uid, moving),
    ):
        stated = None if source.generated_frame else source.frame_of_reference_uid
        if recorded is not None and recorded != stated:
            raise InvalidInputError(
                f"the {role} given is in Frame of Reference {stated or '(none stated)'} but the "
                f"registration was computed with one in {recorded or '(none stated)'}: pass the "
                "images as registered",
                field="cbct" if role == "CBCT" else "planning_ct",
            )


@dataclass(frozen=True, eq=False)
class RegistrationItem:
    """One item of a Spatial Registration's Registration Sequence.

    Parameters
    ----------
    frame_of_reference_uid : str
        The registered frame ``B`` of this item.
    reference_from_item : numpy.ndarray
        4x4 ``A_M_B``: a point in this item's frame (mm) to the instance's frame ``A`` (mm).
    matrix_type : str
        Frame of Reference Transformation Matrix Type (``RIGID``, ...).
    referenced_sop_instance_uids : tuple of str
        Images listed in the item's Referenced Image Sequence.
    """

    frame_of_reference_uid: str
    reference_from_item: FloatArray
    matrix_type: str
    referenced_sop_instance_uids: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class ReadSpatialRegistration:
    """A Spatial Registration instance read back by :func:`read_spatial_registration`.

    Parameters
    ----------
    sop_instance_uid : str
        The instance's SOP Instance UID.
    frame_of_reference_uid : str
        The reference frame ``A`` (the planning CT's for files written here).
    items : tuple of RegistrationItem
        Registration Sequence items, in file order.
    referenced_series_instance_uids : tuple of str
        Every series named in the Common Instance Reference module.
    """

    sop_instance_uid: str
    frame_of_reference_uid: str
    items: tuple[RegistrationItem, ...]
    referenced_series_instance_uids: tuple[str, ...]

    @property
    def ct_from_cbct(self) -> FloatArray:
        """4x4 of the second item (the moving image) for files written by this module.

        It maps a point in the CBCT's own frame (the item's Frame of Reference UID) to the
        planning CT's.

        Raises
        ------
        InvalidInputError
            If the instance has fewer than two items.
        """
        if len(self.items) < 2:
            raise InvalidInputError("the registration has no moving-image item", field="items")
        return self.items[1].reference_from_item.copy()

    @property
    def cbct_from_ct(self) -> FloatArray:
        """The inverse of :attr:`ct_from_cbct`."""
        inverse: FloatArray = np.asarray(np.linalg.inv(self.ct_from_cbct), dtype=np.float64)
        return inverse


def _matrix_from(item: Dataset, path: Path) -> tuple[FloatArray, str]:
    try:
        matrix_item = item.MatrixRegistrationSequence[0].MatrixSequence[0]
        values = [float(v) for v in matrix_item.FrameOfReferenceTransformationMatrix]
        kind = str(matrix_item.get("FrameOfReferenceTransformationMatrixType", ""))
    except (AttributeError, IndexError, TypeError, ValueError) as error:
        raise ImageReadError(f"{path}: malformed Matrix Registration Sequence: {error}") from error
    if len(values) != 16 or not np.all(np.isfinite(values)):
        raise ImageReadError(f"{path}: the transformation matrix needs 16 finite numbers")
    return np.array(values, dtype=np.float64).reshape(4, 4), kind


def read_spatial_registration(path: str | Path) -> ReadSpatialRegistration:
    """Read a DICOM Spatial Registration instance (rigid matrices).

    Parameters
    ----------
    path : str or pathlib.Path
        The file.

    Returns
    -------
    ReadSpatialRegistration
        Frames of reference, matrices (``A_M_B``, see the module docstring) and references.

    Raises
    ------
    ImageReadError
        If the file is unreadable, not a Spatial Registration, or malformed.
    """
    source = Path(path)
    try:
        ds = pydicom.dcmread(source)
    except (OSError, pydicom.errors.InvalidDicomError) as error:
        raise ImageReadError(f"{source}: cannot read DICOM: {error}") from error
    if str(ds.get("SOPClassUID", "")) != SPATIAL_REGISTRATION_SOP_CLASS_UID:
        raise ImageReadError(
            f"{source}: not a Spatial Registration (SOP class {ds.get('SOPClassUID', '?')})"
        )
    items = []
    for item in ds.get("RegistrationSequence", []):
        matrix, kind = _matrix_from(item, source)
        referenced = tuple(
            str(image.ReferencedSOPInstanceUID) for image in item.get("ReferencedImageSequence", [])
        )
        items.append(
            RegistrationItem(str(item.get("FrameOfReferenceUID", "")), matrix, kind, referenced)
        )
    series: list[str] = [str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])]
    for study in ds.get("StudiesContainingOtherReferencedInstancesSequence", []):
        series.extend(str(s.SeriesInstanceUID) for s in study.get("ReferencedSeriesSequence", []))
    return ReadSpatialRegistration(
        sop_instance_uid=str(ds.SOPInstanceUID),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        items=tuple(items),
        referenced_series_instance_uids=tuple(series),
    )
