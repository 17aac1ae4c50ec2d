"""kV/MV pair registrations (2D/2D to DRRs of the planning CT): create (any role), list, read.

The HTTP form of ``igrt register-pair``: the views are received RT Images or frames of this
session's fluoroscopy uploads, the isocentre given or from a received RT Plan
(:mod:`api.pair_registration`). Computed within the request (DRRs of two views take seconds,
not minutes); the result is stored (immutable) and audited.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import igrt
from api.assessment import json_safe
from api.audit import record_audit
from api.core.config import API_PREFIX
from api.crud import get_or_404, get_session
from api.db.models import PairRegistration, TreatmentSession, Upload
from api.deps import AnyRole, DbSession, HeavyWork, JsonContent, ServiceDep
from api.dicom.objects import ObjectKindValues
from api.enums import UploadKindValues, VolumeKindValues
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.pair_registration import PairIsocentre, PairViewSource, register_stored_pair
from api.plan_registration import PlanSources
from api.routes.registrations import _received, _volume
from api.schemas.pair_registrations import (
    PairRegistrationCreate,
    PairRegistrationPublic,
    PairRegistrationsPublic,
    PairViewIn,
)
from igrt.errors import IgrtError

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["registrations"], responses=PROBLEM_RESPONSES)


def _view_source(
    db: Session, view: PairViewIn, index: int, session: TreatmentSession
) -> PairViewSource:
    """Where view ``index`` is stored (404/422 naming ``views.<index>.<field>``)."""
    prefix = f"views.{index}"
    rt_image_path = sequence_path = None
    if view.rt_image_instance_id is not None:
        rt_image_path = _received(
            db,
            view.rt_image_instance_id,
            f"{prefix}.rt_image_instance_id",
            ObjectKindValues.RT_IMAGE,
            session,
        ).stored_path
    else:
        assert view.upload_id is not None
        upload = get_or_404(db, Upload, view.upload_id, "upload", f"{prefix}.upload_id")
        if upload.session_id != session.id or upload.kind != UploadKindValues.FLUOROSCOPY.value:
            raise ApiError(
                422,
                f"{prefix}.upload_id must be a fluoroscopy upload of this session",
                field=f"{prefix}.upload_id",
            )
        if view.frame_index >= upload.n_frames:
            raise ApiError(
                422,
                f"{prefix}.frame_index is beyond the upload's {upload.n_frames} frames",
                field=f"{prefix}.frame_index",
            )
        sequence_path = upload.sequence_path
    return PairViewSource(
        rt_image_path=rt_image_path,
        sequence_path=sequence_path,
        frame_index=view.frame_index,
        modality=view.modality,
        intensity=view.intensity,
        kv_source_deg=view.kv_source_deg,
    )


def _isocentre(
    db: Session, body: PairRegistrationCreate, session: TreatmentSession
) -> PairIsocentre:
    if body.plan is None:
        return PairIsocentre(given_lps_mm=body.isocentre_lps_mm, plan=None)
    plan = _received(
        db,
        body.plan.rt_plan_instance_id,
        "plan.rt_plan_instance_id",
        ObjectKindValues.RT_PLAN,
        session,
    )
    structures = (
        None
        if body.plan.rt_struct_instance_id is None
        else _received(
            db,
            body.plan.rt_struct_instance_id,
            "plan.rt_struct_instance_id",
            ObjectKindValues.RT_STRUCT,
            session,
        )
    )
    sources = PlanSources(
        plan_path=plan.stored_path,
        structures_path=None if structures is None else structures.stored_path,
        roi=None,
        roi_margin_mm=0.0,
        beam=body.plan.beam,
    )
    return PairIsocentre(given_lps_mm=None, plan=sources)


def _public(row: PairRegistration) -> PairRegistrationPublic:
    return PairRegistrationPublic.model_validate(row)


@router.post(
    "/sessions/{session_id}/pair-registrations",
    operation_id="create_pair_registration",
    status_code=201,
    responses={
        **problem(404, "No such session, volume upload, upload or received DICOM instance."),
        **problem(415, "The body is not JSON."),
        **problem(503, "The service is busy (heavy-work budget); retry after Retry-After."),
    },
)
def create_pair_registration(
    principal: AnyRole,
    _: JsonContent,
    _work: HeavyWork,
    service: ServiceDep,
    db: DbSession,
    session_id: str,
    body: PairRegistrationCreate,
    response: Response,
) -> PairRegistrationPublic:
    """Register a kV/MV image pair to DRRs of the planning CT (``igrt register-pair``).

    Synchronous. The result is the 3D path's document (quality and reasons, corrections in LPS
    and IEC 61217 axes, repositioning flag, uncertainty) plus the per-view matches and where
    the isocentre came from; a registration that does not converge is stored as ``failed``.
    Views the engine cannot use (unreadable, no geometry, parallel beams) and a plan that
    cannot give the isocentre are a 422 naming the problem.
    """
    session = get_session(db, session_id)
    planning = _volume(
        db,
        body.planning_ct_upload_id,
        "planning_ct_upload_id",
        VolumeKindValues.PLANNING_CT,
        session,
    )
    views = [_view_source(db, view, index, session) for index, view in enumerate(body.views)]
    isocentre = _isocentre(db, body, session)
    planning_path, position = planning.volume_path, session.patient_position
    # End the read transaction before the seconds the DRRs take (as the assessment route).
    db.commit()
    try:
        document = json_safe(
            register_stored_pair(
                service.store, planning_path, views, isocentre, patient_position=position
            )
        )
    except IgrtError as exc:
        message = str(exc).replace(str(service.store.root), "<store>")
        raise ApiError(
            422,
            f"the pair cannot be registered: {message}",
            field=getattr(exc, "field", None) or "views",
        ) from exc
    repositioning = document.get("repositioning") or {}
    row = PairRegistration(
        session_id=session.id,
        planning_ct_upload_id=planning.id,
        request=body.model_dump(mode="json", exclude={"planning_ct_upload_id"}),
        quality=str(document["quality"]),
        repositioning_required=repositioning.get("required"),
        result=document,
        software_version=igrt.__version__,
        created_by=principal.token_id,
    )
    db.add(row)
    db.flush()
    record_audit(
        db,
        principal,
        "pair_registration.create",
        "pair_registration",
        row.id,
        {
            "session_id": session.id,
            "planning_ct_upload_id": planning.id,
            "quality": row.quality,
            "repositioning_required": row.repositioning_required,
            "isocentre_source": document.get("isocentre_source"),
        },
    )
    db.commit()
    response.headers["Location"] = f"{API_PREFIX}/pair-registrations/{row.id}"
    return _public(row)


@router.get(
    "/sessions/{session_id}/pair-registrations",
    operation_id="list_pair_registrations",
    responses=problem(404, "No such session."),
)
def list_pair_registrations(
    principal: AnyRole, db: DbSession, session_id: str
) -> PairRegistrationsPublic:
    """A session's pair registrations, oldest first."""
    session = get_session(db, session_id)
    query = select(PairRegistration).where(PairRegistration.session_id == session.id)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(PairRegistration.created_at, PairRegistration.id))
    return PairRegistrationsPublic(data=[_public(row) for row in rows], count=count)


@router.get(
    "/pair-registrations/{pair_registration_id}",
    operation_id="get_pair_registration",
    responses=problem(404, "No such pair registration."),
)
def read_pair_registration(
    principal: AnyRole, service: ServiceDep, db: DbSession, pair_registration_id: str
) -> PairRegistrationPublic:
    """One pair registration with its result (audited)."""
    row = get_or_404(
        db, PairRegistration, pair_registration_id, "pair registration", "pair_registration_id"
    )
    service.read_audit.record(principal, "pair_registration", row.id, session_id=row.session_id)
    return _public(row)
