"""Which patient and session a received instance belongs to, or why it is held back.

The rules, in order (each a site-independent consistency check, except the sender's role,
which the site configures per AE title):

1. The Patient ID must name a known patient (else ``unknown_patient``). When both the patient
   record and the instance carry a name, the instance's family and given names must be the
   record's (else ``wrong_patient``): an ID typed into the wrong patient's order is the error
   this catches.
2. A Study Instance UID or Frame of Reference UID already filed for *another* patient makes it
   ``wrong_patient``: one study, one scan geometry, one patient.
3. An instance of a study, or of a Frame of Reference, already filed from a sender of the same
   role goes to that session (the RT Plan and Structure Set follow their planning CT; a CBCT's
   later slices follow its first). Not across roles: a department often keeps a course's plan
   and its treatment images in one study, and a kV image is no planning object.
4. Otherwise by the sender's role: a *planning* sender's objects go to the patient's one
   simulation session; a *treatment* sender's to the patient's most recent fraction session,
   if it was created within the configured window (an image must not land on yesterday's
   fraction because today's was not opened). None or several candidates: ``no_session``.

Nothing is attached on a guess: every other case is a quarantine entry with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import DicomInstance, Patient, TreatmentSession
from api.dicom.objects import InstanceIdentity, QuarantineReasonValues, SourceRoleValues
from api.enums import SessionKindValues

__all__ = ["Filing", "Hold", "choose_session", "names_agree"]


@dataclass(frozen=True)
class Filing:
    """The instance belongs to ``session`` of ``patient``."""

    patient: Patient
    session: TreatmentSession


@dataclass(frozen=True)
class Hold:
    """The instance goes to the quarantine; ``patient`` is the one its ID named, if any."""

    reason_code: QuarantineReasonValues
    reason: str
    patient: Patient | None = None


_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _words(text: str) -> set[str]:
    return {word.casefold() for word in _WORD.findall(text)}


def names_agree(dicom_name: str, record_name: str | None) -> bool:
    """Whether a DICOM Person Name and the patient record's name are the same person's.

    Only the family and given name components count (the first two of the alphabetic group),
    in any order and case; an absent name on either side cannot disagree.

    Examples
    --------
    >>> names_agree("DOE^JANE^Q^^", "Jane Doe")
    True
    >>> names_agree("DOE^JOHN", "Jane Doe")
    False
    """
    alphabetic = dicom_name.split("=", 1)[0]
    components = alphabetic.split("^")
    wanted = _words(" ".join(components[:2]))
    recorded = _words(record_name or "")
    if not wanted or not recorded:
        return True
    return wanted == recorded


def _owner_of(db: Session, column: Any, value: str | None) -> DicomInstance | None:
    if not value:
        return None
    return db.scalars(select(DicomInstance).where(column == value).limit(1)).first()


def _by_role(
    db: Session, patient: Patient, role: SourceRoleValues, now: datetime, window: timedelta
) -> Filing | Hold:
    if role is SourceRoleValues.PLANNING:
        simulations = list(
            db.scalars(
                select(TreatmentSession).where(
                    TreatmentSession.patient_id == patient.id,
                    TreatmentSession.kind == SessionKindValues.SIMULATION.value,
                )
            )
        )
        if len(simulations) == 1:
            return Filing(patient, simulations[0])
        return Hold(
            QuarantineReasonValues.NO_SESSION,
            f"a planning object needs the patient's one simulation session; the patient has "
            f"{len(simulations)}",
            patient,
        )
    latest = db.scalars(
        select(TreatmentSession)
        .where(
            TreatmentSession.patient_id == patient.id,
            TreatmentSession.kind == SessionKindValues.FRACTION.value,
        )
        .order_by(TreatmentSession.created_at.desc(), TreatmentSession.id.desc())
        .limit(1)
    ).first()
    if latest is None or now - latest.created_at > window:
        hours = window.total_seconds() / 3600
        return Hold(
            QuarantineReasonValues.NO_SESSION,
            f"a treatment image needs a fraction session opened in the last {hours:g} h; "
            "the patient has none",
            patient,
        )
    return Filing(patient, latest)


def choose_session(
    db: Session,
    identity: InstanceIdentity,
    role: SourceRoleValues,
    *,
    now: datetime,
    fraction_window: timedelta,
) -> Filing | Hold:
    """Apply the module's rules to one instance (reads only)."""
    if not identity.patient_id:
        return Hold(QuarantineReasonValues.UNKNOWN_PATIENT, "the instance has no Patient ID")
    patient = db.scalars(select(Patient).where(Patient.external_id == identity.patient_id)).first()
    if patient is None:
        return Hold(
            QuarantineReasonValues.UNKNOWN_PATIENT, "no patient has the instance's Patient ID"
        )
    if not names_agree(identity.patient_name, patient.name):
        return Hold(
            QuarantineReasonValues.WRONG_PATIENT,
            "the instance's Patient Name is not the name of the patient its Patient ID names",
            patient,
        )
    by_study = _owner_of(db, DicomInstance.study_instance_uid, identity.study_instance_uid)
    by_frame = _owner_of(db, DicomInstance.frame_of_reference_uid, identity.frame_of_reference_uid)
    for owner, what in ((by_study, "study"), (by_frame, "frame of reference")):
        if owner is not None and owner.patient_id != patient.id:
            return Hold(
                QuarantineReasonValues.WRONG_PATIENT,
                f"the instance's {what} was already received for another patient",
                patient,
            )
    for owner in (by_study, by_frame):
        if owner is not None and owner.source_role == role.value:
            session = db.get(TreatmentSession, owner.session_id)
            if session is not None:
                return Filing(patient, session)
    return _by_role(db, patient, role, now, fraction_window)
