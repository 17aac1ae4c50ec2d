"""What the DICOM receiver accepts, and the identity it reads from each instance.

Everything here is an allow-list: a SOP class or transfer syntax not named is refused at
association negotiation (its presentation context is rejected), and an instance whose header
contradicts its C-STORE request, or lacks an identifying attribute, gets a DICOM failure status.
"""

from __future__ import annotations

import enum
import io
import re
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    RTImageStorage,
    RTPlanStorage,
    RTStructureSetStorage,
    XRayAngiographicImageStorage,
    XRayRadiofluoroscopicImageStorage,
)

from igrt.errors import InvalidInputError

__all__ = [
    "ACCEPTED_SOP_CLASSES",
    "ACCEPTED_TRANSFER_SYNTAXES",
    "InstanceIdentity",
    "ObjectKindValues",
    "ProcessingStatusValues",
    "QuarantineActionValues",
    "QuarantineReasonValues",
    "SourceRoleValues",
    "read_identity",
]


class ObjectKindValues(enum.StrEnum):
    """What a received instance is, for filing and processing."""

    CT = "ct"
    """A CT slice or an Enhanced CT: a planning CT or a CBCT, by the sender's role."""

    RT_IMAGE = "rt_image"
    """A kV or MV image from the linac (or a DRR from the planning system)."""

    FLUOROSCOPY = "fluoroscopy"
    """An XA or RF (multi-frame) fluoroscopy object."""

    RT_PLAN = "rt_plan"
    """The treatment plan."""

    RT_STRUCT = "rt_struct"
    """The structure set of the planning CT."""


class SourceRoleValues(enum.StrEnum):
    """What a calling AE is, configured per AE title (the site knows its devices)."""

    PLANNING = "planning"
    """CT simulator or planning system: its objects go to the patient's simulation session."""

    TREATMENT = "treatment"
    """Linac imaging (XVI, OBI): its objects go to the patient's current fraction session."""


class QuarantineReasonValues(enum.StrEnum):
    """Why an instance was held instead of filed."""

    UNKNOWN_PATIENT = "unknown_patient"
    """No patient has the instance's Patient ID (or it has none)."""

    WRONG_PATIENT = "wrong_patient"
    """The instance names one patient but its name, study or frame of reference another."""

    NO_SESSION = "no_session"
    """The patient is known but no session (or more than one) fits the instance."""

    CONFLICTING_RESEND = "conflicting_resend"
    """A SOP Instance UID already received, sent again with different content."""


class QuarantineActionValues(enum.StrEnum):
    """What a physicist decided about a quarantined instance."""

    RELEASED = "released"
    """Filed to a named session of the patient its Patient ID names, then processed."""

    DISCARDED = "discarded"
    """Attached to nothing, for good (the file stays in the store; the sender may resend)."""


class ProcessingStatusValues(enum.StrEnum):
    """Where the work queued after a filed instance's acknowledgement stands."""

    PENDING = "pending"
    """Queued (or interrupted: a restart queues it again)."""

    DONE = "done"
    """The upload, assessment or volume was made (see the instance's links)."""

    FAILED = "failed"
    """The instance could not be processed (``processing_reason`` says why); it stays stored."""

    STORED = "stored"
    """Nothing to run for this kind of object yet: it is kept and filed."""


ACCEPTED_SOP_CLASSES: dict[str, ObjectKindValues] = {
    CTImageStorage: ObjectKindValues.CT,
    EnhancedCTImageStorage: ObjectKindValues.CT,
    RTImageStorage: ObjectKindValues.RT_IMAGE,
    XRayAngiographicImageStorage: ObjectKindValues.FLUOROSCOPY,
    XRayRadiofluoroscopicImageStorage: ObjectKindValues.FLUOROSCOPY,
    RTPlanStorage: ObjectKindValues.RT_PLAN,
    RTStructureSetStorage: ObjectKindValues.RT_STRUCT,
}
"""SOP classes the receiver stores, and what each becomes."""

ACCEPTED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)
"""Transfer syntaxes the service can decode (pydicom with pylibjpeg-openjpeg, SimpleITK):
uncompressed little endian and the two lossless compressions CT and XA archives use. Lossy
syntaxes are refused: registration and tracking must not run on lossy pixels unknowingly."""

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


@dataclass(frozen=True)
class InstanceIdentity:
    """The attributes that decide where an instance is filed.

    ``patient_id`` and ``patient_name`` are identifiers: stored with the instance, never
    logged. ``frame_of_reference_uid`` is None for objects without one (RT Plan may carry it
    only in references); ``study_instance_uid`` and ``series_instance_uid`` are None when an
    anonymising export emptied them (they are Type 1, but real archives hold such instances:
    they are accepted as they are, filed without the study rule, and a CT without a series
    cannot become a volume).
    """

    sop_class_uid: str
    sop_instance_uid: str
    kind: ObjectKindValues
    patient_id: str
    patient_name: str
    study_instance_uid: str | None
    series_instance_uid: str | None
    frame_of_reference_uid: str | None
    modality: str
    n_frames: int


def _uid(value: object, name: str, *, required: bool = True) -> str | None:
    text = str(value or "").strip().rstrip("\x00")
    if not text:
        if required:
            raise InvalidInputError(f"the instance has no {name}", field=name)
        return None
    if len(text) > 64 or not _UID.match(text):
        raise InvalidInputError(f"the instance's {name} is not a valid UID", field=name)
    return text


def _text(value: object, limit: int) -> str:
    return str(value or "").strip().rstrip("\x00")[:limit]


def _request_uid(found: object, requested: str, name: str) -> str:
    """The dataset's UID; the C-STORE request's when the dataset lacks it; refused if they differ.

    Some archives export instances whose dataset lost its SOP Common UIDs (only the file meta
    and the C-STORE command carry them); the command's value identifies the instance just as
    well, so such an instance is accepted as it is.
    """
    value = _uid(found, name, required=False) or _uid(requested, name) or ""
    if value != requested:
        raise InvalidInputError(f"the dataset's {name} is not the C-STORE request's", field=name)
    return value


def read_identity(
    encoded: bytes, *, requested_sop_class_uid: str, requested_sop_instance_uid: str
) -> InstanceIdentity:
    """Read the filing attributes from a Part-10 encoded instance (pixels not decoded).

    ``requested_*`` are the C-STORE command's Affected SOP Class and Instance UIDs: the
    dataset's must equal them, and stand in for them when the dataset lacks them.

    Raises
    ------
    InvalidInputError
        Not readable as DICOM, a SOP class outside the allow-list, or a missing or malformed
        UID, or UIDs that contradict the request (``field`` names the attribute).
    """
    try:
        header = dcmread(io.BytesIO(encoded), stop_before_pixels=True)
        values = {
            name: header.get(name)
            for name in (
                "SOPClassUID",
                "SOPInstanceUID",
                "PatientID",
                "PatientName",
                "StudyInstanceUID",
                "SeriesInstanceUID",
                "FrameOfReferenceUID",
                "Modality",
                "NumberOfFrames",
            )
        }
    except Exception as exc:  # pydicom raises many types for corrupt input
        raise InvalidInputError(
            f"the instance is not readable DICOM ({type(exc).__name__})", field="dataset"
        ) from exc
    if not _text(values["Modality"], 16):
        # Every accepted IOD has a Type 1 Modality: without it, the bytes are no such object
        # (the command's UIDs alone must not make a stored instance).
        raise InvalidInputError("the instance has no Modality", field="Modality")
    sop_class = _request_uid(values["SOPClassUID"], requested_sop_class_uid, "SOPClassUID")
    kind = ACCEPTED_SOP_CLASSES.get(sop_class)
    if kind is None:
        raise InvalidInputError("the instance's SOP class is not accepted", field="SOPClassUID")
    try:
        n_frames = int(values["NumberOfFrames"] or 1)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError("NumberOfFrames is not a number", field="NumberOfFrames") from exc
    return InstanceIdentity(
        sop_class_uid=sop_class,
        sop_instance_uid=_request_uid(
            values["SOPInstanceUID"], requested_sop_instance_uid, "SOPInstanceUID"
        ),
        kind=kind,
        patient_id=_text(values["PatientID"], 64),
        patient_name=_text(values["PatientName"], 200),
        study_instance_uid=_uid(values["StudyInstanceUID"], "StudyInstanceUID", required=False),
        series_instance_uid=_uid(values["SeriesInstanceUID"], "SeriesInstanceUID", required=False),
        frame_of_reference_uid=_uid(
            values["FrameOfReferenceUID"], "FrameOfReferenceUID", required=False
        ),
        modality=_text(values["Modality"], 16),
        n_frames=max(1, n_frames),
    )
