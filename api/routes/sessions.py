"""Treatment sessions of a patient: create, list and read (any role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, select

from api.audit import record_audit
from api.core.config import API_PREFIX
from api.crud import get_patient, get_session
from api.db.models import TreatmentSession
from api.deps import AnyRole, DbSession, JsonContent, WriteDbSession
from api.errors import PROBLEM_RESPONSES, problem
from api.schemas.common import MAX_OFFSET
from api.schemas.sessions import SessionCreate, SessionPublic, SessionsPublic

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["sessions"], responses=PROBLEM_RESPONSES)


@router.post(
    "/patients/{patient_id}/sessions",
    operation_id="create_session",
    status_code=201,
    responses={**problem(404, "No such patient."), **problem(415, "The body is not JSON.")},
)
def create_session(
    principal: AnyRole,
    _: JsonContent,
    db: WriteDbSession,
    patient_id: str,
    body: SessionCreate,
    response: Response,
) -> SessionPublic:
    """Open a simulation day or a treatment fraction for a patient."""
    patient = get_patient(db, patient_id)
    session = TreatmentSession(
        patient_id=patient.id,
        kind=body.kind.value,
        fraction_number=body.fraction_number,
        patient_position=body.patient_position.value,
        protocol_version=body.protocol_version,
        created_by=principal.token_id,
    )
    db.add(session)
    db.flush()
    record_audit(
        db,
        principal,
        "session.create",
        "session",
        session.id,
        {"patient_id": patient.id, "kind": session.kind},
    )
    db.commit()
    response.headers["Location"] = f"{API_PREFIX}/sessions/{session.id}"
    return SessionPublic.model_validate(session)


@router.get(
    "/patients/{patient_id}/sessions",
    operation_id="list_sessions",
    responses=problem(404, "No such patient."),
)
def list_sessions(
    principal: AnyRole,
    db: DbSession,
    patient_id: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> SessionsPublic:
    """A patient's sessions, oldest first."""
    patient = get_patient(db, patient_id)
    query = select(TreatmentSession).where(TreatmentSession.patient_id == patient.id)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(
        query.order_by(TreatmentSession.created_at, TreatmentSession.id).limit(limit).offset(offset)
    )
    return SessionsPublic(data=[SessionPublic.model_validate(row) for row in rows], count=count)


@router.get(
    "/sessions/{session_id}",
    operation_id="get_session",
    responses=problem(404, "No such session."),
)
def read_session(principal: AnyRole, db: DbSession, session_id: str) -> SessionPublic:
    """One session."""
    return SessionPublic.model_validate(get_session(db, session_id))
