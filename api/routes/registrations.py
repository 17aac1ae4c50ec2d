"""Registration jobs: create (202, any role), list, read, result, overlay PNGs, DICOM REG.

A job runs in the service's registration worker (:mod:`api.registration_jobs`); its state is
persisted at every step, so a client polls ``GET /registrations/{id}`` until ``status`` is
``completed`` or ``failed``. After a restart, queued jobs run again and jobs that were running
are queued again (``attempts`` and ``interruptions`` say so) up to
``IGRT_REGISTRATION_MAX_ATTEMPTS`` runs, then ``failed`` with reason "interrupted N times"
(submit again).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import igrt
from api.audit import record_audit
from api.core.config import API_PREFIX
from api.crud import get_or_404, get_session
from api.db.models import DicomInstance, RegistrationJob, TreatmentSession, Upload, VolumeUpload
from api.deps import AnyRole, DbSession, JsonContent, ServiceDep, WriteDbSession
from api.dicom.objects import ObjectKindValues
from api.enums import RegistrationStatusValues, VolumeKindValues
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.job_quota import JobQuotaError, check_job_quota
from api.plan_registration import PlanSources, check_plan_request
from api.registration_jobs import overlay_key
from api.schemas.registrations import (
    PlanFocusRequest,
    RegistrationCreate,
    RegistrationPublic,
    RegistrationResultPublic,
    RegistrationsPublic,
)
from api.security import Principal
from api.service import Service
from igrt.errors import IgrtError

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["registrations"], responses=PROBLEM_RESPONSES)

_NOT_READY = "The registration has not completed (see its status)."
# A registration takes seconds to a minute: by then one of the token's jobs has usually ended.
_JOB_RETRY_AFTER_S = 30


def _check_quota(db: Session, service: Service, principal: Principal) -> None:
    settings = service.settings
    try:
        check_job_quota(
            db,
            principal.token_id,
            max_per_token=settings.registration_max_active_per_token,
            max_in_service=settings.registration_max_active,
        )
    except JobQuotaError as exc:
        status, code = (429, "too_many_jobs") if exc.scope == "token" else (503, "busy")
        raise ApiError(
            status, str(exc), code=code, headers={"Retry-After": str(_JOB_RETRY_AFTER_S)}
        ) from exc


def _links(job: RegistrationJob) -> dict[str, str]:
    base = f"{API_PREFIX}/registrations/{job.id}"
    links = {"self": base}
    if job.status == RegistrationStatusValues.COMPLETED.value:
        links["result"] = f"{base}/result"
        if job.overlay_paths:
            links["overlays"] = (
                f"{base}/overlays/{{plane}}?kind=checkerboard|blend|ct|cbct&stage=after"
            )
        if job.dicom_reg_path:
            links["dicom_reg"] = f"{base}/dicom-reg"
    return links


def _public(job: RegistrationJob) -> RegistrationPublic:
    public = RegistrationPublic.model_validate(job, from_attributes=True)
    return public.model_copy(update={"links": _links(job)})


def _volume(
    db: Session, upload_id: str, field: str, kind: VolumeKindValues, session: TreatmentSession
) -> VolumeUpload:
    volume = db.get(VolumeUpload, upload_id) if len(upload_id) <= 64 else None
    if volume is None:
        if db.get(Upload, upload_id) is not None:
            raise ApiError(
                422,
                f"{field} names a fluoroscopy upload; it must be a {kind.value} volume upload",
                field=field,
            )
        raise ApiError(404, f"no volume upload with id {upload_id[:64]!r}", field=field)
    if volume.kind != kind.value:
        raise ApiError(
            422,
            f"{field} names a {volume.kind} upload; it must be a {kind.value}",
            field=field,
        )
    owner = db.get(TreatmentSession, volume.session_id)
    if owner is None or owner.patient_id != session.patient_id:
        raise ApiError(422, f"{field} belongs to another patient", field=field)
    if kind is VolumeKindValues.CBCT and volume.session_id != session.id:
        raise ApiError(422, f"{field} must be a CBCT of this session", field=field)
    return volume


def _check_frames(planning: VolumeUpload, cbct: VolumeUpload, body: RegistrationCreate) -> None:
    """A CBCT in another Frame of Reference needs the treatment isocentre that places it.

    The rule of :func:`registration.cbct_placement.place_cbct`, checked at once from the stored
    geometries (422) rather than as a failed job.
    """
    ct_uid = (planning.geometry or {}).get("frame_of_reference_uid") or None
    cbct_uid = (cbct.geometry or {}).get("frame_of_reference_uid") or None
    shared = ct_uid is not None and ct_uid == cbct_uid
    if shared and body.cbct_isocentre_lps_mm is not None:
        raise ApiError(
            422,
            f"the CBCT shares the planning CT's Frame of Reference ({ct_uid}): it is not placed "
            "by an isocentre, so cbct_isocentre_lps_mm does not apply",
            field="cbct_isocentre_lps_mm",
        )
    other_frame = ct_uid is not None and cbct_uid is not None and ct_uid != cbct_uid
    placed = other_frame or (not shared and body.cbct_isocentre_lps_mm is not None)
    if placed and body.isocentre_lps_mm is None and body.plan is None:
        raise ApiError(
            422,
            f"the CBCT is in Frame of Reference {cbct_uid or '(none stated)'} (the treatment "
            f"room's) and the planning CT in {ct_uid or '(none stated)'}: placing it on the "
            "planning CT needs the treatment isocentre, isocentre_lps_mm (planning-CT LPS mm) "
            "or plan",
            field="isocentre_lps_mm",
        )


def _received(
    db: Session, instance_id: str, field: str, kind: ObjectKindValues, session: TreatmentSession
) -> DicomInstance:
    """A received DICOM instance of ``kind`` filed to any session of the session's patient."""
    row = db.get(DicomInstance, instance_id) if len(instance_id) <= 64 else None
    if row is None:
        raise ApiError(404, f"no received DICOM instance with id {instance_id[:64]!r}", field=field)
    if row.kind != kind.value:
        raise ApiError(422, f"{field} names a {row.kind} instance, not a {kind.value}", field=field)
    if row.patient_id != session.patient_id:
        raise ApiError(422, f"{field} belongs to another patient", field=field)
    return row


def _plan_request(
    db: Session,
    service: Service,
    plan: PlanFocusRequest,
    session: TreatmentSession,
    ct: VolumeUpload,
) -> dict[str, object]:
    """The job's ``plan_request``, checked against the planning CT (422 when it cannot hold)."""
    plan_row = _received(
        db, plan.rt_plan_instance_id, "plan.rt_plan_instance_id", ObjectKindValues.RT_PLAN, session
    )
    structures_row = (
        None
        if plan.rt_struct_instance_id is None
        else _received(
            db,
            plan.rt_struct_instance_id,
            "plan.rt_struct_instance_id",
            ObjectKindValues.RT_STRUCT,
            session,
        )
    )
    request = plan.model_dump(mode="json")
    sources = PlanSources.from_request(
        request,
        plan_row.stored_path,
        None if structures_row is None else structures_row.stored_path,
    )
    try:
        checked = check_plan_request(service.store, ct.geometry, sources)
    except IgrtError as exc:
        message = str(exc).replace(str(service.store.root), "<store>")
        field = getattr(exc, "field", None) or "rt_plan_instance_id"
        raise ApiError(
            422,
            f"the plan cannot focus this registration: {message}",
            field=f"plan.{field}",
        ) from exc
    return {**request, "checked_focus": checked}


def _audit_read(service: Service, principal: Principal, job: RegistrationJob, what: str) -> None:
    service.read_audit.record(
        principal, "registration", job.id, session_id=job.session_id, what=what
    )


def get_registration(db: Session, registration_id: str) -> RegistrationJob:
    """The job, or 404 naming ``registration_id``."""
    return get_or_404(db, RegistrationJob, registration_id, "registration", "registration_id")


def _completed(db: Session, registration_id: str) -> RegistrationJob:
    job = get_registration(db, registration_id)
    if job.status == RegistrationStatusValues.FAILED.value:
        raise ApiError(409, f"the registration failed: {job.reason}", field="registration_id")
    if job.status != RegistrationStatusValues.COMPLETED.value:
        raise ApiError(
            409,
            f"the registration is {job.status}; poll it until completed",
            field="registration_id",
        )
    return job


@router.post(
    "/sessions/{session_id}/registrations",
    operation_id="create_registration",
    status_code=202,
    responses={
        **problem(404, "No such session, volume upload or received DICOM instance."),
        **problem(415, "The body is not JSON."),
        **problem(429, "This token has its most registration jobs queued or running."),
        **problem(503, "The service has its most registration jobs queued or running."),
    },
)
def create_registration(
    principal: AnyRole,
    _: JsonContent,
    service: ServiceDep,
    db: WriteDbSession,
    session_id: str,
    body: RegistrationCreate,
    response: Response,
) -> RegistrationPublic:
    """Queue a CBCT-to-planning-CT registration (202 with the job; poll its ``Location``).

    The planning CT may come from any session of the same patient; the CBCT must belong to
    this session. Both must be volume uploads of the right ``kind`` (422 otherwise). A token
    may have ``IGRT_REGISTRATION_MAX_ACTIVE_PER_TOKEN`` jobs queued or running (429 beyond),
    the service ``IGRT_REGISTRATION_MAX_ACTIVE`` (503 beyond); both with ``Retry-After``.

    With ``plan``, the isocentre is the received RT Plan's and the clip box the named RT
    Structure Set ROI's, as ``igrt register --plan --structures --roi``; the request is checked
    at once (422 naming the problem: another Frame of Reference than the planning CT, no
    isocentre, several isocentres without ``beam``, no such ROI, a box without the isocentre)
    and the result's ``plan_focus`` says where both came from.
    """
    session = get_session(db, session_id)
    planning = _volume(
        db,
        body.planning_ct_upload_id,
        "planning_ct_upload_id",
        VolumeKindValues.PLANNING_CT,
        session,
    )
    cbct = _volume(db, body.cbct_upload_id, "cbct_upload_id", VolumeKindValues.CBCT, session)
    _check_frames(planning, cbct, body)
    plan_request = (
        None if body.plan is None else _plan_request(db, service, body.plan, session, planning)
    )
    _check_quota(db, service, principal)
    job = RegistrationJob(
        session_id=session.id,
        planning_ct_upload_id=planning.id,
        cbct_upload_id=cbct.id,
        degrees_of_freedom=body.degrees_of_freedom,
        clip_box_lps_mm=None
        if body.clip_box_lps_mm is None
        else body.clip_box_lps_mm.model_dump(mode="json"),
        isocentre_lps_mm=None if body.isocentre_lps_mm is None else list(body.isocentre_lps_mm),
        cbct_isocentre_lps_mm=None
        if body.cbct_isocentre_lps_mm is None
        else list(body.cbct_isocentre_lps_mm),
        plan_request=plan_request,
        status=RegistrationStatusValues.QUEUED.value,
        software_version=igrt.__version__,
        created_by=principal.token_id,
    )
    db.add(job)
    db.flush()
    record_audit(
        db,
        principal,
        "registration.create",
        "registration",
        job.id,
        {
            "session_id": session.id,
            "planning_ct_upload_id": planning.id,
            "cbct_upload_id": cbct.id,
            "degrees_of_freedom": job.degrees_of_freedom,
            "rt_plan_instance_id": None if body.plan is None else body.plan.rt_plan_instance_id,
            "rt_struct_instance_id": None if body.plan is None else body.plan.rt_struct_instance_id,
        },
    )
    db.commit()
    service.registrations.submit(job.id)
    response.headers["Location"] = f"{API_PREFIX}/registrations/{job.id}"
    return _public(job)


@router.get(
    "/sessions/{session_id}/registrations",
    operation_id="list_registrations",
    responses=problem(404, "No such session."),
)
def list_registrations(principal: AnyRole, db: DbSession, session_id: str) -> RegistrationsPublic:
    """A session's registration jobs, oldest first."""
    session = get_session(db, session_id)
    query = select(RegistrationJob).where(RegistrationJob.session_id == session.id)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(RegistrationJob.created_at, RegistrationJob.id))
    return RegistrationsPublic(data=[_public(row) for row in rows], count=count)


@router.get(
    "/registrations/{registration_id}",
    operation_id="get_registration",
    responses=problem(404, "No such registration."),
)
def read_registration(
    principal: AnyRole, db: DbSession, registration_id: str
) -> RegistrationPublic:
    """One registration job and where it is."""
    return _public(get_registration(db, registration_id))


@router.get(
    "/registrations/{registration_id}/result",
    operation_id="get_registration_result",
    responses={**problem(404, "No such registration."), **problem(409, _NOT_READY)},
)
def read_registration_result(
    principal: AnyRole, service: ServiceDep, db: DbSession, registration_id: str
) -> RegistrationResultPublic:
    """The couch correction, repositioning flag, quality, uncertainty and dome check (audited)."""
    job = _completed(db, registration_id)
    _audit_read(service, principal, job, "registration_result")
    document = dict(job.result or {})
    return RegistrationResultPublic(
        registration_id=job.id,
        quality=str(document.get("quality")),
        patient_position=str(document.get("patient_position")),
        anatomy_displacement_lps_mm=document.get("anatomy_displacement_lps_mm"),
        anatomy_displacement_iec_support_mm=document.get("anatomy_displacement_iec_support_mm"),
        couch_correction_lps_mm=document.get("couch_correction_lps_mm"),
        couch_correction_iec_support_mm=document.get("couch_correction_iec_support_mm"),
        repositioning=document.get("repositioning"),
        uncertainty_mm=document.get("uncertainty_mm"),
        dome_check=dict(document.get("dome_check") or {}),
        document=document,
    )


@router.get(
    "/registrations/{registration_id}/overlays/{plane}",
    operation_id="get_registration_overlay",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {}}, "description": "The overlay as a PNG."},
        **problem(404, "No such registration, or it has no overlays."),
        **problem(409, _NOT_READY),
    },
)
def read_registration_overlay(
    principal: AnyRole,
    service: ServiceDep,
    db: DbSession,
    registration_id: str,
    plane: Literal["axial", "coronal", "sagittal"],
    kind: Literal["checkerboard", "blend", "ct", "cbct"] = Query(
        default="checkerboard",
        description="Checkerboard (grey), blend (CT magenta, CBCT green), or one grey layer "
        "(`ct`, or `cbct` mapped onto the CT) for a viewer's own composition.",
    ),
    stage: Literal["before", "after"] = Query(
        default="after", description="At the identity (before) or at the result (after)."
    ),
) -> FileResponse:
    """A review image through the reference point: CT and CBCT, before or after registration."""
    job = _completed(db, registration_id)
    _audit_read(service, principal, job, "registration_overlays")
    relative = (job.overlay_paths or {}).get(overlay_key(stage, plane, kind))
    if relative is None:
        raise ApiError(404, "this registration has no such overlay", field="plane")
    return FileResponse(service.store.path(str(relative)), media_type="image/png")


@router.get(
    "/registrations/{registration_id}/dicom-reg",
    operation_id="download_registration_dicom",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/dicom": {}},
            "description": "The result as a DICOM Spatial Registration instance.",
        },
        **problem(404, "No such registration, or no trustworthy result to export."),
        **problem(409, _NOT_READY),
    },
)
def download_registration_dicom(
    principal: AnyRole, service: ServiceDep, db: DbSession, registration_id: str
) -> FileResponse:
    """The rigid result as a DICOM Spatial Registration object (for the console or TPS)."""
    job = _completed(db, registration_id)
    if job.dicom_reg_path is None:
        raise ApiError(
            404,
            "this registration has no DICOM export (its quality is failed)",
            field="registration_id",
        )
    _audit_read(service, principal, job, "registration_dicom")
    return FileResponse(
        service.store.path(job.dicom_reg_path),
        media_type="application/dicom",
        filename=f"registration-{job.id}.dcm",
    )
