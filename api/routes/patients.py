"""Patients: create (therapist, physicist), list and read (any role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.audit import record_audit
from api.core.config import API_PREFIX
from api.crud import get_patient
from api.db.models import Patient
from api.deps import ClinicalStaff, DbSession, JsonContent, PatientReader, ServiceDep
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.schemas.common import MAX_OFFSET
from api.schemas.patients import PatientCreate, PatientPublic, PatientsPublic

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/patients", tags=["patients"], responses=PROBLEM_RESPONSES)


@router.post(
    "",
    operation_id="create_patient",
    status_code=201,
    responses={
        **problem(409, "A patient with this external_id exists."),
        **problem(415, "The body is not JSON."),
    },
)
def create_patient(
    principal: ClinicalStaff,
    _: JsonContent,
    db: DbSession,
    body: PatientCreate,
    response: Response,
) -> PatientPublic:
    """Register a patient (its ``external_id`` must be new)."""
    patient = Patient(external_id=body.external_id, name=body.name, created_by=principal.token_id)
    db.add(patient)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        raise ApiError(409, "a patient with this external_id exists", field="external_id") from None
    record_audit(db, principal, "patient.create", "patient", patient.id)
    db.commit()
    response.headers["Location"] = f"{API_PREFIX}/patients/{patient.id}"
    return PatientPublic.model_validate(patient)


@router.get("", operation_id="list_patients")
def list_patients(
    principal: PatientReader,
    db: DbSession,
    external_id: Annotated[
        str | None, Query(max_length=64, description="Only the patient with this id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> PatientsPublic:
    """Patients, oldest first."""
    query = select(Patient)
    if external_id is not None:
        query = query.where(Patient.external_id == external_id)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(Patient.created_at, Patient.id).limit(limit).offset(offset))
    return PatientsPublic(data=[PatientPublic.model_validate(row) for row in rows], count=count)


@router.get(
    "/{patient_id}",
    operation_id="get_patient",
    responses=problem(404, "No such patient."),
)
def read_patient(
    principal: PatientReader, service: ServiceDep, db: DbSession, patient_id: str
) -> PatientPublic:
    """One patient (the read is audited)."""
    patient = get_patient(db, patient_id)
    service.read_audit.record(principal, "patient", patient.id, patient_id=patient.id)
    return PatientPublic.model_validate(patient)
