"""What the DICOM receiver stored: the quarantine (clinical staff) and a session's instances.

A physicist decides about a quarantined series (:mod:`api.dicom.quarantine`): release it to a
session (then processed like a received one) or discard it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.core.config import API_PREFIX
from api.crud import get_or_404, get_session
from api.db.models import DicomInstance, DicomQuarantineItem, DicomQuarantineResolution
from api.deps import (
    AnyRole,
    ClinicalStaff,
    DbSession,
    JsonContent,
    QuarantineResolver,
    ServiceDep,
    WriteDbSession,
)
from api.dicom.objects import ObjectKindValues, QuarantineActionValues
from api.dicom.quarantine import AlreadyDecidedError, discard_series, release_series
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.schemas.common import MAX_OFFSET
from api.schemas.dicom import (
    DicomInstancePublic,
    DicomInstancesPublic,
    DicomQuarantineItemPublic,
    DicomQuarantinePublic,
    QuarantineDecisionPublic,
    QuarantineDiscard,
    QuarantineRelease,
    QuarantineResolutionPublic,
)
from api.service import Service

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["dicom"], responses=PROBLEM_RESPONSES)


@router.get("/dicom-quarantine", operation_id="list_dicom_quarantine")
def list_dicom_quarantine(
    principal: ClinicalStaff,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DicomQuarantinePublic:
    """Instances the receiver held back (unknown or wrong patient, no session), newest first.

    They are attached to nothing until a physicist releases their series to a session or
    discards it (``resolution``); otherwise the sender's data must be corrected and sent again.
    """
    count = db.scalar(select(func.count()).select_from(DicomQuarantineItem)) or 0
    rows = db.scalars(
        select(DicomQuarantineItem)
        .order_by(DicomQuarantineItem.received_at.desc(), DicomQuarantineItem.id)
        .limit(limit)
        .offset(offset)
    )
    items = list(rows)
    decided = {
        r.quarantine_item_id: r
        for r in db.scalars(
            select(DicomQuarantineResolution).where(
                DicomQuarantineResolution.quarantine_item_id.in_([i.id for i in items])
            )
        )
    }
    data = []
    for item in items:
        public = DicomQuarantineItemPublic.model_validate(item)
        resolution = decided.get(item.id)
        if resolution is not None:
            public.resolution = QuarantineResolutionPublic.model_validate(resolution)
        data.append(public)
    return DicomQuarantinePublic(data=data, count=count)


def _decision(
    db: Session, action: QuarantineActionValues, item_ids: list[str]
) -> QuarantineDecisionPublic:
    rows = list(
        db.scalars(
            select(DicomQuarantineResolution).where(
                DicomQuarantineResolution.quarantine_item_id.in_(item_ids)
            )
        )
    )
    data = [QuarantineResolutionPublic.model_validate(row) for row in rows]
    session_id = rows[0].session_id if rows else None
    return QuarantineDecisionPublic(
        action=action, session_id=session_id, data=data, count=len(data)
    )


def _queue(service: Service, pending: list[tuple[str, str, str, str | None]]) -> None:
    """Queue the processing of released instances (kind, id, session, series)."""
    if not pending:
        return
    processor = service.dicom_processor()
    for kind, instance_id, session_id, series_uid in pending:
        processor.submit(instance_id, ObjectKindValues(kind), session_id, series_uid, settled=True)


_DECIDED = "Decided before, or an instance of the series is filed already."


def _commit_decision(db: Session) -> None:
    """Commit; a decision another request committed first (unique keys) is a 409."""
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise ApiError(
            409, "another decision on this series was recorded at the same time", field="item_id"
        ) from exc


@router.post(
    "/dicom-quarantine/{item_id}/release",
    operation_id="release_dicom_quarantine",
    responses={
        **problem(404, "No such quarantine entry or session."),
        **problem(409, f"{_DECIDED} Or the instances name another patient than the session's."),
        **problem(415, "The body is not JSON."),
    },
)
def release_dicom_quarantine(
    principal: QuarantineResolver,
    _: JsonContent,
    service: ServiceDep,
    db: WriteDbSession,
    item_id: str,
    body: QuarantineRelease,
) -> QuarantineDecisionPublic:
    """Release the entry's series to a session (physicists; audited as ``dicom.released``).

    Every undecided entry with the same Series Instance UID and Patient ID is filed to the
    session and processed as a received instance would be (a fluoroscopy upload and its
    assessment, a planning CT or CBCT volume, and for a CBCT the automatic registration).
    Refused with nothing changed when the instances name another patient than the session's
    (409: the sender must correct them; a release never re-labels a patient).
    """
    item = get_or_404(db, DicomQuarantineItem, item_id, "quarantine entry", "item_id")
    session = get_session(db, body.session_id)
    try:
        released = release_series(db, service.store, principal, item, session, body.reason)
    except AlreadyDecidedError as exc:
        raise ApiError(409, str(exc), field="item_id") from exc
    pending = [(i.kind, i.id, i.session_id, i.series_instance_uid) for i in released.pending]
    _commit_decision(db)
    _queue(service, pending)
    return _decision(db, QuarantineActionValues.RELEASED, list(released.item_ids))


@router.post(
    "/dicom-quarantine/{item_id}/discard",
    operation_id="discard_dicom_quarantine",
    responses={
        **problem(404, "No such quarantine entry."),
        **problem(409, _DECIDED),
        **problem(415, "The body is not JSON."),
    },
)
def discard_dicom_quarantine(
    principal: QuarantineResolver,
    _: JsonContent,
    db: WriteDbSession,
    item_id: str,
    body: QuarantineDiscard,
) -> QuarantineDecisionPublic:
    """Discard the entry's series for good (physicists; audited as ``dicom.discarded``).

    The stored files stay in the content-addressed store (another entry may share them); the
    entries are attached to nothing and listed with their resolution.
    """
    item = get_or_404(db, DicomQuarantineItem, item_id, "quarantine entry", "item_id")
    try:
        discarded = discard_series(db, principal, item, body.reason)
    except AlreadyDecidedError as exc:
        raise ApiError(409, str(exc), field="item_id") from exc
    _commit_decision(db)
    return _decision(db, QuarantineActionValues.DISCARDED, discarded)


@router.get(
    "/sessions/{session_id}/dicom-instances",
    operation_id="list_session_dicom_instances",
    responses=problem(404, "No such session."),
)
def list_session_dicom_instances(
    principal: AnyRole, db: DbSession, session_id: str
) -> DicomInstancesPublic:
    """The DICOM instances filed to a session, oldest first, with what was made of them."""
    session = get_session(db, session_id)
    query = select(DicomInstance).where(DicomInstance.session_id == session.id)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(DicomInstance.received_at, DicomInstance.id))
    return DicomInstancesPublic(
        data=[DicomInstancePublic.model_validate(row) for row in rows], count=count
    )
