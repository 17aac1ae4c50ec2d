"""Breathing-motion assessments: run one on an upload (any role), list and read them."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from api.assessment import assess_sequence
from api.assessment_report import (
    ReportUnavailableError,
    StoredAssessment,
    write_stored_assessment_pdf,
)
from api.audit import record_audit
from api.core.config import API_PREFIX
from api.crud import get_or_404, get_session
from api.db.models import ApiToken, MotionAssessment, Patient, Review, TreatmentSession, Upload
from api.deps import AnyRole, DbSession, HeavyWork, JsonContent, ReportReader, ServiceDep
from api.enums import ReviewSubjectValues, RoleValues, UploadKindValues
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.ingest import read_stored_sequence
from api.schemas.assessments import (
    MotionAssessmentCreate,
    MotionAssessmentPublic,
    MotionAssessmentsPublic,
)
from api.security import Principal
from igrt.decision import BreathHoldEvidence
from igrt.errors import InvalidInputError
from igrt.frame_of_reference import PatientPositionValues
from igrt.motion_assessment import DomeHint

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["assessments"], responses=PROBLEM_RESPONSES)


@router.post(
    "/sessions/{session_id}/motion-assessments",
    operation_id="create_motion_assessment",
    status_code=201,
    responses={
        **problem(403, "A console token gave a dome hint (a person's judgement)."),
        **problem(404, "No such session or upload."),
        **problem(415, "The body is not JSON."),
        **problem(503, "The service is busy (heavy-work budget); retry after Retry-After."),
    },
)
def create_motion_assessment(
    principal: AnyRole,
    _: JsonContent,
    _work: HeavyWork,
    service: ServiceDep,
    db: DbSession,
    session_id: str,
    body: MotionAssessmentCreate,
    response: Response,
) -> MotionAssessmentPublic:
    """Track the diaphragm dome on a fluoroscopy upload and decide on motion management.

    Synchronous (about a second for a minute of fluoroscopy). The assessment is stored whatever
    its outcome: ``status`` says whether a decision was made (``completed``), only the track
    (``tracked``, with the ``reason``) or nothing trustworthy (``failed``).

    A ``dome_hint`` (therapists and physicists) starts the tracking at that pixel of the first
    frame (422 when it is off the frame); the assessment records it with the giver's name. A
    re-run with a hint names the earlier assessment in ``rerun_of`` and is a new assessment.
    """
    session = get_session(db, session_id)
    upload = get_or_404(db, Upload, body.upload_id, "upload", "upload_id")
    if upload.session_id != session.id:
        raise ApiError(422, "the upload belongs to another session", field="upload_id")
    if upload.kind != UploadKindValues.FLUOROSCOPY.value:
        raise ApiError(422, "only fluoroscopy uploads can be assessed", field="upload_id")
    hint = _dome_hint(body, principal, upload)
    _check_rerun_of(db, body, session, upload)
    # End the read transaction before the assessment (up to seconds): SQLite refuses the write
    # of a transaction whose snapshot predates another connection's commit ("database is
    # locked", a 500), and streams, jobs and other requests commit all the time.
    db.commit()
    sequence = read_stored_sequence(service.store, upload.sequence_path)
    try:
        outcome = assess_sequence(
            sequence,
            patient_position=PatientPositionValues(session.patient_position),
            context=body.context,
            protocol_version=session.protocol_version,
            source=f"upload {upload.id}",
            protocol=service.protocol,
            hold_evidence=_hold_evidence(body),
            dome_hint_column_row=(hint.column_px, hint.row_px) if hint else None,
        )
    except InvalidInputError as exc:  # e.g. a single radiograph: nothing to track
        raise ApiError(422, f"this upload cannot be assessed: {exc}", field="upload_id") from exc
    assessment = MotionAssessment(
        session_id=session.id,
        upload_id=upload.id,
        status=outcome.status.value,
        reason=outcome.reason[:2000] if outcome.reason else None,
        context=body.context,
        protocol_version=session.protocol_version,
        tracked_fraction=outcome.tracked_fraction,
        track=outcome.track,
        recommendation=outcome.recommendation,
        result=outcome.result,
        software_version=outcome.software_version,
        created_by=principal.token_id,
        dome_hint_column_px=hint.column_px if hint else None,
        dome_hint_row_px=hint.row_px if hint else None,
        dome_hint_given_by=hint.given_by if hint else None,
        rerun_of=body.rerun_of,
    )
    db.add(assessment)
    db.flush()
    record_audit(
        db,
        principal,
        "motion_assessment.create",
        "motion_assessment",
        assessment.id,
        {
            "session_id": session.id,
            "upload_id": upload.id,
            "status": assessment.status,
            "recommendation": assessment.recommendation,
            "dome_hint": hint.to_dict() if hint else None,
            "rerun_of": body.rerun_of,
        },
    )
    db.commit()
    response.headers["Location"] = f"{API_PREFIX}/motion-assessments/{assessment.id}"
    return MotionAssessmentPublic.model_validate(assessment)


def _dome_hint(
    body: MotionAssessmentCreate, principal: Principal, upload: Upload
) -> DomeHint | None:
    """The request's hint, from a person, on the upload's first frame (or None)."""
    if body.dome_hint is None:
        return None
    if principal.role is RoleValues.CONSOLE:
        raise ApiError(
            403,
            "a dome hint is a person's judgement: only therapists and physicists give one",
            field="dome_hint",
        )
    try:
        hint = DomeHint(
            body.dome_hint.column_px,
            body.dome_hint.row_px,
            given_by=principal.name,
            source="request",
        )
        hint.check_on_panel((upload.rows, upload.columns))
    except InvalidInputError as exc:
        raise ApiError(422, str(exc), field="dome_hint") from exc
    return hint


def _check_rerun_of(
    db: Session, body: MotionAssessmentCreate, session: TreatmentSession, upload: Upload
) -> None:
    """A re-run repeats an assessment of the same upload of the same session."""
    if body.rerun_of is None:
        return
    earlier = db.get(MotionAssessment, body.rerun_of)
    if earlier is None or earlier.session_id != session.id or earlier.upload_id != upload.id:
        raise ApiError(
            422,
            "rerun_of must name an assessment of the same upload in this session",
            field="rerun_of",
        )


@router.get(
    "/sessions/{session_id}/motion-assessments",
    operation_id="list_motion_assessments",
    responses=problem(404, "No such session."),
)
def list_motion_assessments(
    principal: AnyRole, db: DbSession, session_id: str
) -> MotionAssessmentsPublic:
    """A session's assessments, oldest first."""
    session = get_session(db, session_id)
    query = select(MotionAssessment).where(MotionAssessment.session_id == session.id)
    count = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(query.order_by(MotionAssessment.created_at, MotionAssessment.id))
    return MotionAssessmentsPublic(
        data=[MotionAssessmentPublic.model_validate(row) for row in rows], count=count
    )


@router.get(
    "/motion-assessments/{assessment_id}",
    operation_id="get_motion_assessment",
    responses=problem(404, "No such assessment."),
)
def read_motion_assessment(
    principal: AnyRole, service: ServiceDep, db: DbSession, assessment_id: str
) -> MotionAssessmentPublic:
    """One assessment with its track and, when completed, its decision and rationale (audited)."""
    row = get_or_404(db, MotionAssessment, assessment_id, "motion assessment", "assessment_id")
    service.read_audit.record(principal, "motion_assessment", row.id, session_id=row.session_id)
    return MotionAssessmentPublic.model_validate(row)


@router.get(
    "/motion-assessments/{assessment_id}/report.pdf",
    operation_id="download_motion_assessment_report",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/pdf": {}},
            "description": "The printable report: decision with thresholds and provenance, "
            "margins, reviewer and time, the breathing trace; patient name and ID and the "
            "protocol version on every page.",
        },
        **problem(404, "No such assessment."),
        **problem(409, "No decision to report, or it cannot be rebuilt exactly here."),
    },
)
def download_motion_assessment_report(
    principal: ReportReader, service: ServiceDep, db: DbSession, assessment_id: str
) -> FileResponse:
    """The assessment's PDF for the chart (``igrt motion assess --pdf``; audited).

    Rebuilt from the stored track under the assessment's protocol; refused (409) when the
    assessment has no decision or the rebuilt decision would differ from the stored one.
    """
    row = get_or_404(db, MotionAssessment, assessment_id, "motion assessment", "assessment_id")
    session = db.get(TreatmentSession, row.session_id)
    patient = None if session is None else db.get(Patient, session.patient_id)
    stored = StoredAssessment(
        upload_id=row.upload_id,
        status=row.status,
        context=row.context,
        track=list(row.track),
        result=row.result,
        dome_hint=row.dome_hint,
    )
    reviewer = _standing_review(db, row.id)
    db.commit()  # end the read transaction before the seconds the report takes
    target = service.store.temp_path(".pdf")
    try:
        write_stored_assessment_pdf(
            stored,
            service.protocol,
            target,
            patient_name=(patient.name or "") if patient else "",
            patient_id=patient.external_id if patient else "",
            reviewer=reviewer,
        )
    except ReportUnavailableError as exc:
        target.unlink(missing_ok=True)
        raise ApiError(409, str(exc), field="assessment_id") from exc
    service.read_audit.record(
        principal,
        "motion_assessment",
        row.id,
        session_id=row.session_id,
        what="motion_assessment_report",
    )
    return FileResponse(
        target,
        media_type="application/pdf",
        filename=f"motion-assessment-{row.id}.pdf",
        background=BackgroundTask(target.unlink, missing_ok=True),
    )


def _standing_review(db: Session, assessment_id: str) -> str | None:
    """Who reviewed the assessment, the outcome and when (the review nothing supersedes)."""
    reviews = list(
        db.scalars(
            select(Review).where(
                Review.subject_type == ReviewSubjectValues.MOTION_ASSESSMENT.value,
                Review.subject_id == assessment_id,
            )
        )
    )
    superseded = {r.supersedes_id for r in reviews if r.supersedes_id is not None}
    standing = [r for r in reviews if r.id not in superseded]
    if not standing:
        return None
    review = standing[0]
    token = db.get(ApiToken, review.created_by)
    name = token.name if token is not None else "unknown"
    text = (
        f"{name} ({review.reviewer_role}), {review.outcome} {review.created_at:%Y-%m-%d %H:%M} UTC"
    )
    if review.decision:
        text += f", decision {review.decision}"
    if review.reason:
        text += f": {review.reason}"
    return text


def _hold_evidence(body: MotionAssessmentCreate) -> BreathHoldEvidence | None:
    """The request's breath-hold evidence (ABC session, spirometer log), checked like the CLI's."""
    given = body.hold_evidence
    if given is None:
        return None
    names = {"abc_session": "an ABC device session", "spirometer_log": "a spirometer log"}
    try:
        return BreathHoldEvidence(
            n_holds=given.n_holds,
            shortest_hold_s=given.shortest_hold_s,
            largest_hold_drift_mm=given.largest_hold_drift_mm,
            hold_reproducibility_mm=given.hold_reproducibility_mm,
            source=f"{given.n_holds} breath hold(s) from {names[given.source]}",
        )
    except InvalidInputError as exc:
        raise ApiError(422, str(exc), field=f"hold_evidence.{exc.field}") from exc
