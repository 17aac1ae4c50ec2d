"""What the DICOM receiver stored: the quarantine (clinical staff) and a session's instances."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from api.core.config import API_PREFIX
from api.crud import get_session
from api.db.models import DicomInstance, DicomQuarantineItem
from api.deps import AnyRole, ClinicalStaff, DbSession
from api.errors import PROBLEM_RESPONSES, problem
from api.schemas.common import MAX_OFFSET
from api.schemas.dicom import (
    DicomInstancePublic,
    DicomInstancesPublic,
    DicomQuarantineItemPublic,
    DicomQuarantinePublic,
)

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

    They are attached to nothing: the sender's data must be corrected and sent again.
    """
    count = db.scalar(select(func.count()).select_from(DicomQuarantineItem)) or 0
    rows = db.scalars(
        select(DicomQuarantineItem)
        .order_by(DicomQuarantineItem.received_at.desc(), DicomQuarantineItem.id)
        .limit(limit)
        .offset(offset)
    )
    return DicomQuarantinePublic(
        data=[DicomQuarantineItemPublic.model_validate(row) for row in rows], count=count
    )


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
