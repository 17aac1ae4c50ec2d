"""A physicist's decision on quarantined instances: release a series to a session, or discard it.

The receiver never attaches an instance on a guess (:mod:`api.dicom.filing`); the quarantine
holds what it would not file. A physicist who has checked the images (typically: the patient
was registered after the images arrived, or the sender had no session to file to) may release
them to a named session, or discard them. Either way the decision covers the whole series (all
still-undecided quarantine entries with the same Series Instance UID and Patient ID; an
instance without a series alone), is recorded once per entry
(:class:`~api.db.models.DicomQuarantineResolution`, immutable) and audited.

Release files each entry as a :class:`~api.db.models.DicomInstance` of the session, ``pending``
like a freshly received one (processed as a received one would be: an upload and its
assessment, a volume), or ``stored`` for kinds with nothing to run. It is refused, with nothing
changed, when:

* the instance's Patient ID and name disagree with the session's patient
  (:func:`igrt.patient_identity.check_same_patient`): the image names another person, which
  the sender must correct; a release never re-labels a patient;
* a SOP Instance UID of the series is already filed (a conflicting resend stays held);
* an entry was decided before.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydicom
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.audit import record_audit
from api.db.models import (
    DicomInstance,
    DicomQuarantineItem,
    DicomQuarantineResolution,
    Patient,
    TreatmentSession,
)
from api.dicom.objects import ObjectKindValues, ProcessingStatusValues, QuarantineActionValues
from api.security import Principal
from api.storage import FileStore
from igrt.errors import IgrtError, InvalidInputError
from igrt.patient_identity import PatientIdentity, check_same_patient

__all__ = [
    "AlreadyDecidedError",
    "Released",
    "discard_series",
    "release_series",
    "series_of",
]

_PROCESSED = frozenset({ObjectKindValues.CT.value, ObjectKindValues.FLUOROSCOPY.value})


class AlreadyDecidedError(IgrtError):
    """The entry (or an instance of its series) was released or discarded already, or filed."""


@dataclass(frozen=True)
class Released:
    """The entries released, the instances they became, and those with processing to queue."""

    session_id: str
    item_ids: tuple[str, ...]
    instance_ids: tuple[str, ...]
    pending: tuple[DicomInstance, ...]


def _undecided(db: Session, items: list[DicomQuarantineItem]) -> list[DicomQuarantineItem]:
    ids = [item.id for item in items]
    decided = set(
        db.scalars(
            select(DicomQuarantineResolution.quarantine_item_id).where(
                DicomQuarantineResolution.quarantine_item_id.in_(ids)
            )
        )
    )
    return [item for item in items if item.id not in decided]


def series_of(db: Session, item: DicomQuarantineItem) -> list[DicomQuarantineItem]:
    """The undecided entries of ``item``'s series (``item`` first), oldest first after it.

    Raises
    ------
    AlreadyDecidedError
        ``item`` itself was decided before.
    """
    if not _undecided(db, [item]):
        raise AlreadyDecidedError("this quarantine entry was released or discarded before")
    if item.series_instance_uid is None:
        return [item]
    siblings = list(
        db.scalars(
            select(DicomQuarantineItem)
            .where(
                DicomQuarantineItem.series_instance_uid == item.series_instance_uid,
                DicomQuarantineItem.patient_id_in_file == item.patient_id_in_file,
                DicomQuarantineItem.id != item.id,
            )
            .order_by(DicomQuarantineItem.received_at, DicomQuarantineItem.id)
        )
    )
    # One copy per SOP Instance UID: of conflicting copies only the first received is released.
    chosen: dict[str, DicomQuarantineItem] = {item.sop_instance_uid: item}
    for sibling in _undecided(db, siblings):
        chosen.setdefault(sibling.sop_instance_uid, sibling)
    return list(chosen.values())


def _resolve(
    db: Session,
    principal: Principal,
    item: DicomQuarantineItem,
    action: QuarantineActionValues,
    reason: str,
    instance: DicomInstance | None = None,
) -> None:
    resolution = DicomQuarantineResolution(
        quarantine_item_id=item.id,
        action=action.value,
        reason=reason[:2000],
        session_id=None if instance is None else instance.session_id,
        instance_id=None if instance is None else instance.id,
        resolved_by=principal.token_id,
    )
    db.add(resolution)
    db.flush()
    detail: dict[str, object] = {"kind": item.kind, "reason_code": item.reason_code}
    if instance is not None:
        detail.update(session_id=instance.session_id, instance_id=instance.id)
    record_audit(db, principal, f"dicom.{action.value}", "dicom_quarantine", item.id, detail)


def _n_frames(store: FileStore, entry: DicomQuarantineItem) -> int:
    """Number of Frames of a stored instance (the quarantine does not keep it; 1 if absent)."""
    header = pydicom.dcmread(
        store.path(entry.stored_path), stop_before_pixels=True, specific_tags=["NumberOfFrames"]
    )
    try:
        return max(1, int(header.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _check_patient(items: list[DicomQuarantineItem], patient: Patient) -> None:
    expected = PatientIdentity(patient.external_id, patient.name or "")
    for item in items:
        if not item.patient_id_in_file:
            raise InvalidInputError(
                "the instance states no Patient ID: it cannot be released to a patient; the "
                "sender must send it again with the patient's ID",
                field="session_id",
            )
        check_same_patient(
            PatientIdentity(item.patient_id_in_file, item.patient_name_in_file),
            expected,
            what="the quarantined instance",
            field="session_id",
        )


def release_series(
    db: Session,
    store: FileStore,
    principal: Principal,
    item: DicomQuarantineItem,
    session: TreatmentSession,
    reason: str,
) -> Released:
    """File ``item``'s series to ``session`` (not committed: the caller commits, then queues).

    Raises
    ------
    AlreadyDecidedError
        The entry was decided before, or an instance of the series is already filed.
    PatientMismatchError
        The instances name another patient than the session's.
    InvalidInputError
        An instance states no Patient ID.
    """
    items = series_of(db, item)
    patient = db.get(Patient, session.patient_id)
    assert patient is not None  # a session's patient exists (foreign key)
    _check_patient(items, patient)
    filed = set(
        db.scalars(
            select(DicomInstance.sop_instance_uid).where(
                DicomInstance.sop_instance_uid.in_([i.sop_instance_uid for i in items])
            )
        )
    )
    if filed:
        raise AlreadyDecidedError(
            f"{len(filed)} instance(s) of this series are filed already (a conflicting resend "
            "stays in the quarantine; discard it)"
        )
    instances: list[DicomInstance] = []
    for entry in items:
        processed = entry.kind in _PROCESSED
        instance = DicomInstance(
            sop_instance_uid=entry.sop_instance_uid,
            sop_class_uid=entry.sop_class_uid,
            transfer_syntax_uid=entry.transfer_syntax_uid,
            kind=entry.kind,
            modality=entry.modality,
            patient_id=patient.id,
            session_id=session.id,
            study_instance_uid=entry.study_instance_uid,
            series_instance_uid=entry.series_instance_uid,
            frame_of_reference_uid=entry.frame_of_reference_uid,
            n_frames=_n_frames(store, entry),
            calling_ae=entry.calling_ae,
            source_role=entry.source_role,
            size_bytes=entry.size_bytes,
            sha256=entry.sha256,
            stored_path=entry.stored_path,
            received_at=entry.received_at,
            processing_status=(
                ProcessingStatusValues.PENDING if processed else ProcessingStatusValues.STORED
            ).value,
        )
        db.add(instance)
        db.flush()
        _resolve(db, principal, entry, QuarantineActionValues.RELEASED, reason, instance)
        instances.append(instance)
    return Released(
        session_id=session.id,
        item_ids=tuple(entry.id for entry in items),
        instance_ids=tuple(i.id for i in instances),
        pending=tuple(
            i for i in instances if i.processing_status == ProcessingStatusValues.PENDING.value
        ),
    )


def discard_series(
    db: Session, principal: Principal, item: DicomQuarantineItem, reason: str
) -> list[str]:
    """Discard ``item``'s series (not committed); the ids of the entries discarded.

    Raises
    ------
    AlreadyDecidedError
        The entry was decided before.
    """
    items = series_of(db, item)
    for entry in items:
        _resolve(db, principal, entry, QuarantineActionValues.DISCARDED, reason)
    return [entry.id for entry in items]
