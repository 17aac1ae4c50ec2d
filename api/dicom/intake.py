"""Store one received instance durably and record where it was filed (or held).

:func:`take_in` is what the C-STORE handler runs before it answers: the encoded instance is
written to the staging folder, fsync'ed and renamed into the content-addressed store (the
store fsyncs the folder), then its row is committed. Only then does the handler acknowledge,
so an acknowledged instance survives a crash of the receiver. A SOP Instance UID received
again with the same content is acknowledged without a new row (idempotent); with different
content the new copy is quarantined, never swapped in.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api.audit import record_audit
from api.db.base import utc_now
from api.db.models import DicomInstance, DicomQuarantineItem
from api.dicom.filing import Filing, Hold, choose_session
from api.dicom.objects import (
    InstanceIdentity,
    ObjectKindValues,
    ProcessingStatusValues,
    QuarantineReasonValues,
    SourceRoleValues,
    read_identity,
)
from api.storage import FileStore, StoredFile

__all__ = ["IntakeOutcomeValues", "IntakeResult", "Received", "take_in"]

_LOG = logging.getLogger("api.dicom.intake")

_ATTEMPTS = 5

_PROCESSED_KINDS = frozenset({ObjectKindValues.CT, ObjectKindValues.FLUOROSCOPY})
"""Kinds with work to queue after the acknowledgement (:mod:`api.dicom.processing`)."""


class IntakeOutcomeValues(enum.StrEnum):
    """What became of a received instance (each is acknowledged with success)."""

    FILED = "filed"
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Received:
    """One C-STORE request: the instance as Part-10 bytes and what the request claimed."""

    encoded: bytes
    transfer_syntax_uid: str
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    calling_ae: str
    role: SourceRoleValues


@dataclass(frozen=True)
class IntakeResult:
    """The outcome, the row it concerns, and whether processing was queued for it."""

    outcome: IntakeOutcomeValues
    row_id: str
    kind: ObjectKindValues
    pending: bool


def _stage(store: FileStore, encoded: bytes) -> StoredFile:
    staged = store.temp_path(".dcm")
    try:
        with staged.open("xb") as handle:
            handle.write(encoded)
            handle.flush()
            os.fsync(handle.fileno())
        return store.store(staged)
    finally:
        staged.unlink(missing_ok=True)


def _already_held(
    db: Session, identity: InstanceIdentity, sha256: str
) -> DicomQuarantineItem | None:
    return db.scalars(
        select(DicomQuarantineItem).where(
            DicomQuarantineItem.sop_instance_uid == identity.sop_instance_uid,
            DicomQuarantineItem.sha256 == sha256,
        )
    ).first()


def _decide(
    db: Session,
    identity: InstanceIdentity,
    received: Received,
    sha256: str,
    fraction_window: timedelta,
) -> Filing | Hold | IntakeResult:
    """The filing decision, or the earlier row when this exact content was taken in before."""
    filed = db.scalars(
        select(DicomInstance).where(DicomInstance.sop_instance_uid == identity.sop_instance_uid)
    ).first()
    if filed is not None and filed.sha256 == sha256:
        return IntakeResult(IntakeOutcomeValues.DUPLICATE, filed.id, identity.kind, False)
    held = _already_held(db, identity, sha256)
    if held is not None:
        return IntakeResult(IntakeOutcomeValues.DUPLICATE, held.id, identity.kind, False)
    if filed is not None:
        return Hold(
            QuarantineReasonValues.CONFLICTING_RESEND,
            "this SOP Instance UID was received before with different content; the first copy "
            "stays filed",
            None,
        )
    return choose_session(
        db, identity, received.role, now=utc_now(), fraction_window=fraction_window
    )


def _common_columns(
    identity: InstanceIdentity, received: Received, stored: StoredFile
) -> dict[str, object]:
    return {
        "sop_instance_uid": identity.sop_instance_uid,
        "sop_class_uid": identity.sop_class_uid,
        "transfer_syntax_uid": received.transfer_syntax_uid,
        "kind": identity.kind.value,
        "modality": identity.modality,
        "study_instance_uid": identity.study_instance_uid,
        "series_instance_uid": identity.series_instance_uid,
        "frame_of_reference_uid": identity.frame_of_reference_uid,
        "calling_ae": received.calling_ae,
        "source_role": received.role.value,
        "size_bytes": stored.size_bytes,
        "sha256": stored.sha256,
        "stored_path": stored.relative_path,
    }


def _initial_processing(identity: InstanceIdentity) -> tuple[ProcessingStatusValues, str | None]:
    if identity.kind not in _PROCESSED_KINDS:
        return ProcessingStatusValues.STORED, None
    if identity.kind is ObjectKindValues.CT and identity.series_instance_uid is None:
        return (
            ProcessingStatusValues.FAILED,
            "the CT instance has no Series Instance UID: it cannot be put into a volume",
        )
    return ProcessingStatusValues.PENDING, None


def _record(
    db: Session,
    decision: Filing | Hold,
    identity: InstanceIdentity,
    received: Received,
    stored: StoredFile,
) -> IntakeResult:
    columns = _common_columns(identity, received, stored)
    detail = {
        "kind": identity.kind.value,
        "calling_ae": received.calling_ae,
        "sha256": stored.sha256,
    }
    if isinstance(decision, Filing):
        status, reason = _initial_processing(identity)
        pending = status is ProcessingStatusValues.PENDING
        row = DicomInstance(
            **columns,
            patient_id=decision.patient.id,
            session_id=decision.session.id,
            n_frames=identity.n_frames,
            processing_status=status.value,
            processing_reason=reason,
        )
        db.add(row)
        db.flush()
        record_audit(
            db,
            None,
            "dicom.file",
            "dicom_instance",
            row.id,
            {**detail, "session_id": row.session_id},
        )
        return IntakeResult(IntakeOutcomeValues.FILED, row.id, identity.kind, pending)
    held = DicomQuarantineItem(
        **columns,
        patient_id_in_file=identity.patient_id,
        patient_name_in_file=identity.patient_name,
        patient_id=decision.patient.id if decision.patient is not None else None,
        reason_code=decision.reason_code.value,
        reason=decision.reason[:2000],
    )
    db.add(held)
    db.flush()
    record_audit(
        db,
        None,
        "dicom.quarantine",
        "dicom_quarantine",
        held.id,
        {**detail, "reason_code": held.reason_code},
    )
    return IntakeResult(IntakeOutcomeValues.QUARANTINED, held.id, identity.kind, False)


def take_in(
    store: FileStore,
    sessions: sessionmaker[Session],
    received: Received,
    *,
    fraction_window: timedelta,
) -> IntakeResult:
    """Store ``received`` durably, then file or quarantine it in one committed transaction.

    Returns only after the file is fsync'ed in the store and the row committed.

    Raises
    ------
    InvalidInputError
        The instance is unreadable, lacks an identifying UID, is of a SOP class outside the
        allow-list, or contradicts its request (nothing is recorded).
    """
    identity = read_identity(
        received.encoded,
        requested_sop_class_uid=received.affected_sop_class_uid,
        requested_sop_instance_uid=received.affected_sop_instance_uid,
    )
    # Stored before the decision: the store hashes the bytes once, and a file written for an
    # instance that turns out to be a duplicate is the same content-addressed file anyway.
    stored = _stage(store, received.encoded)
    for attempt in range(_ATTEMPTS):
        with sessions() as db:
            decision = _decide(db, identity, received, stored.sha256, fraction_window)
            if isinstance(decision, IntakeResult):
                return decision
            try:
                result = _record(db, decision, identity, received, stored)
                db.commit()
            except (IntegrityError, OperationalError):
                # IntegrityError: another association committed the same SOP Instance UID in
                # between; OperationalError: SQLite refused to upgrade a read snapshot that
                # another connection's commit made stale. Either way, decide again.
                db.rollback()
                if attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
                continue
        _LOG.info(
            "dicom instance %s",
            result.outcome.value,
            extra={"kind": identity.kind.value, "calling_ae": received.calling_ae},
        )
        return result
    raise AssertionError("unreachable")  # pragma: no cover
