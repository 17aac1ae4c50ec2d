"""Therapist review of results: approve, or override with a reason (therapists, physicists).

Results are motion assessments (their motion-management decision) and registrations (their
repositioning decision: ``reposition`` when the flag is raised, else ``no_repositioning``; an
override may also choose ``repeat_cbct``).

Reviews are immutable. The first review of a result is made without ``supersedes_id``; any later
one must name the standing review it corrects (409 otherwise) and say why (``reason``, even for
an approval), so two reviewers cannot silently overwrite each other and the whole history stays
readable. Every review is appended to the
audit trail (``review.create``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.audit import record_audit
from api.core.config import API_PREFIX
from api.crud import get_or_404
from api.db.models import MotionAssessment, RegistrationJob, Review
from api.deps import (
    AnyRole,
    ClinicalStaff,
    DbSession,
    JsonContent,
    ServiceDep,
    WriteDbSession,
    require_roles,
)
from api.enums import (
    RegistrationStatusValues,
    ReviewOutcomeValues,
    ReviewSubjectValues,
    RoleValues,
)
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.schemas.reviews import ReviewCreate, ReviewPublic, ReviewsPublic
from api.security import Principal
from igrt.decision import MotionManagementValues

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["reviews"], responses=PROBLEM_RESPONSES)

_DECISIONS = frozenset(value.value for value in MotionManagementValues)
_People = Annotated[
    Principal,
    Depends(require_roles(RoleValues.THERAPIST, RoleValues.PHYSICIST, RoleValues.PHYSICIAN)),
]
"""People who may review a motion assessment; device choices need a protocol approver role."""


def _check_device_approver(
    principal: Principal, decision: str | None, approvers: tuple[str, ...]
) -> None:
    """Device choice and margins (any decision but ``reassess``) need an approver role."""
    if decision is None or decision == MotionManagementValues.REASSESS.value:
        return
    if principal.role.value not in approvers:
        raise ApiError(
            403,
            f"device choice and margins are approved by the protocol's roles "
            f"({', '.join(approvers)}), not by a {principal.role.value}",
        )


REGISTRATION_DECISIONS = frozenset({"reposition", "no_repositioning", "repeat_cbct"})
"""Decisions a registration review may stand on."""


def _public(review: Review, superseded: set[str]) -> ReviewPublic:
    public = ReviewPublic.model_validate(review)
    return public.model_copy(update={"standing": review.id not in superseded})


def _reviews_of(
    db: DbSession,
    subject_id: str,
    subject_type: ReviewSubjectValues = ReviewSubjectValues.MOTION_ASSESSMENT,
) -> list[Review]:
    query = select(Review).where(
        Review.subject_type == subject_type.value,
        Review.subject_id == subject_id,
    )
    return list(db.scalars(query.order_by(Review.created_at, Review.id)))


def _check_decision(body: ReviewCreate, assessment: MotionAssessment) -> str | None:
    if body.couch_correction_iec_support_mm is not None:
        raise ApiError(
            422,
            "a couch correction belongs to a registration review, not a motion assessment's",
            field="couch_correction_iec_support_mm",
        )
    return _decide(
        body,
        computed=assessment.recommendation,
        allowed=_DECISIONS,
        nothing_to_approve=f"the assessment made no recommendation ({assessment.status}): "
        "there is nothing to approve; override it with a reason and a decision",
    )


def _decide(
    body: ReviewCreate, *, computed: str | None, allowed: frozenset[str], nothing_to_approve: str
) -> str | None:
    edited = body.couch_correction_iec_support_mm is not None
    if body.outcome is ReviewOutcomeValues.APPROVED:
        if edited:
            raise ApiError(
                422,
                "an approval takes the computed correction; an edited one is an override",
                field="couch_correction_iec_support_mm",
            )
        if body.decision is not None:
            raise ApiError(
                422,
                "an approval takes the computed decision; decision is for overrides",
                field="decision",
            )
        if computed is None:
            raise ApiError(422, nothing_to_approve, field="outcome")
        return computed
    if body.reason is None or not body.reason.strip():
        raise ApiError(422, "an override needs a reason", field="reason")
    if body.decision is None or body.decision not in allowed:
        raise ApiError(
            422,
            "an override needs the decision taken instead, one of: " + ", ".join(sorted(allowed)),
            field="decision",
        )
    if edited and body.decision != "reposition":
        raise ApiError(
            422,
            "an edited couch correction needs the decision reposition",
            field="couch_correction_iec_support_mm",
        )
    if body.decision == computed and not edited:
        raise ApiError(
            422,
            "the decision is the computed one: approve instead of overriding",
            field="decision",
        )
    return body.decision


def _append_review(
    db: DbSession,
    principal: Principal,
    body: ReviewCreate,
    *,
    subject_type: ReviewSubjectValues,
    subject_id: str,
    session_id: str,
    decision: str | None,
    computed: str | None,
    what: str,
) -> Review:
    """Check the supersedes chain, add the review and its audit event, commit."""
    existing = _reviews_of(db, subject_id, subject_type)
    superseded = {r.supersedes_id for r in existing if r.supersedes_id is not None}
    standing = [r for r in existing if r.id not in superseded]
    if body.supersedes_id is None:
        if standing:
            raise ApiError(
                409,
                f"this {what} was reviewed already (review {standing[-1].id}); to correct "
                "it, send that id as supersedes_id",
                field="supersedes_id",
            )
    elif not any(r.id == body.supersedes_id for r in existing):
        raise ApiError(422, f"supersedes_id is not a review of this {what}", field="supersedes_id")
    elif body.supersedes_id in superseded:
        raise ApiError(
            409,
            "that review was superseded already; correct the standing one",
            field="supersedes_id",
        )
    if body.supersedes_id is not None and not (body.reason and body.reason.strip()):
        # Replacing someone's verdict is itself a decision: the history must say why.
        raise ApiError(422, "replacing a standing review needs a reason", field="reason")
    review = Review(
        subject_type=subject_type.value,
        subject_id=subject_id,
        session_id=session_id,
        outcome=body.outcome.value,
        reason=body.reason.strip() if body.reason else None,
        decision=decision,
        supersedes_id=body.supersedes_id,
        couch_correction_iec_support_mm=(
            None
            if body.couch_correction_iec_support_mm is None
            else [float(v) for v in body.couch_correction_iec_support_mm]
        ),
        reviewer_role=principal.role.value,
        created_by=principal.token_id,
    )
    db.add(review)
    try:
        db.flush()
    except IntegrityError as exc:
        # A concurrent review won (uq_reviews_first_review, or the unique supersedes_id).
        db.rollback()
        raise ApiError(
            409,
            f"this {what} was reviewed at the same moment by someone else; read its reviews "
            "and, to correct the standing one, send its id as supersedes_id"
            if body.supersedes_id is None
            else "that review was superseded already; correct the standing one",
            field="supersedes_id",
        ) from exc
    record_audit(
        db,
        principal,
        "review.create",
        "review",
        review.id,
        {
            "subject_type": review.subject_type,
            "subject_id": review.subject_id,
            "session_id": review.session_id,
            "outcome": review.outcome,
            "decision": review.decision,
            "computed_decision": computed,
            "supersedes_id": review.supersedes_id,
            "couch_correction_iec_support_mm": review.couch_correction_iec_support_mm,
        },
    )
    db.commit()
    return review


@router.post(
    "/motion-assessments/{assessment_id}/reviews",
    operation_id="create_motion_assessment_review",
    status_code=201,
    responses={
        **problem(404, "No such assessment."),
        **problem(409, "Already reviewed (name the standing review in supersedes_id)."),
        **problem(415, "The body is not JSON."),
    },
)
def create_motion_assessment_review(
    principal: _People,
    _: JsonContent,
    service: ServiceDep,
    db: WriteDbSession,
    assessment_id: str,
    body: ReviewCreate,
    response: Response,
) -> ReviewPublic:
    """Approve an assessment's decision, or override it with a reason.

    A device choice (any decision but ``reassess``) and the margins that go with it are approved
    by the roles the active protocol names (``device_approver_roles``: physician, physicist);
    therapists may approve a ``reassess``.
    """
    assessment = get_or_404(
        db, MotionAssessment, assessment_id, "motion assessment", "assessment_id"
    )
    decision = _check_decision(body, assessment)
    _check_device_approver(principal, decision, service.protocol.protocol.device_approver_roles)
    review = _append_review(
        db,
        principal,
        body,
        subject_type=ReviewSubjectValues.MOTION_ASSESSMENT,
        subject_id=assessment.id,
        session_id=assessment.session_id,
        decision=decision,
        computed=assessment.recommendation,
        what="assessment",
    )
    response.headers["Location"] = f"{API_PREFIX}/reviews/{review.id}"
    return _public(review, set())


@router.get(
    "/motion-assessments/{assessment_id}/reviews",
    operation_id="list_motion_assessment_reviews",
    responses=problem(404, "No such assessment."),
)
def list_motion_assessment_reviews(
    principal: AnyRole, db: DbSession, assessment_id: str
) -> ReviewsPublic:
    """An assessment's reviews, oldest first; ``standing`` marks the one in force."""
    assessment = get_or_404(
        db, MotionAssessment, assessment_id, "motion assessment", "assessment_id"
    )
    rows = _reviews_of(db, assessment.id)
    superseded = {r.supersedes_id for r in rows if r.supersedes_id is not None}
    return ReviewsPublic(data=[_public(r, superseded) for r in rows], count=len(rows))


@router.post(
    "/registrations/{registration_id}/reviews",
    operation_id="create_registration_review",
    status_code=201,
    responses={
        **problem(404, "No such registration."),
        **problem(409, "Not completed, or already reviewed (name the standing review)."),
        **problem(415, "The body is not JSON."),
    },
)
def create_registration_review(
    principal: ClinicalStaff,
    _: JsonContent,
    db: WriteDbSession,
    registration_id: str,
    body: ReviewCreate,
    response: Response,
) -> ReviewPublic:
    """Approve a registration's repositioning decision, or override it with a reason.

    The computed decision is ``reposition`` when the repositioning flag is raised, else
    ``no_repositioning``; an override names another of ``reposition``, ``no_repositioning``,
    ``repeat_cbct`` (therapists, physicists), or ``reposition`` with an edited
    ``couch_correction_iec_support_mm`` (the correction actually applied).
    """
    job = get_or_404(db, RegistrationJob, registration_id, "registration", "registration_id")
    if job.status not in (
        RegistrationStatusValues.COMPLETED.value,
        RegistrationStatusValues.FAILED.value,
    ):
        raise ApiError(
            409,
            f"the registration is {job.status}; review it once it has finished",
            field="registration_id",
        )
    trusted = job.status == RegistrationStatusValues.COMPLETED.value and job.quality != "failed"
    computed = None
    if trusted and job.repositioning_required is not None:
        computed = "reposition" if job.repositioning_required else "no_repositioning"
    if (
        job.quality == "questionable"
        and body.outcome == ReviewOutcomeValues.APPROVED
        and not (body.reason and body.reason.strip())
    ):
        raise ApiError(422, "approving a QUESTIONABLE registration needs a reason", field="reason")
    decision = _decide(
        body,
        computed=computed,
        allowed=REGISTRATION_DECISIONS,
        nothing_to_approve=f"the registration has no trustworthy result ({job.status}, quality "
        f"{job.quality}): there is nothing to approve; override it with a reason and a decision",
    )
    review = _append_review(
        db,
        principal,
        body,
        subject_type=ReviewSubjectValues.REGISTRATION,
        subject_id=job.id,
        session_id=job.session_id,
        decision=decision,
        computed=computed,
        what="registration",
    )
    response.headers["Location"] = f"{API_PREFIX}/reviews/{review.id}"
    return _public(review, set())


@router.get(
    "/registrations/{registration_id}/reviews",
    operation_id="list_registration_reviews",
    responses=problem(404, "No such registration."),
)
def list_registration_reviews(
    principal: AnyRole, db: DbSession, registration_id: str
) -> ReviewsPublic:
    """A registration's reviews, oldest first; ``standing`` marks the one in force."""
    job = get_or_404(db, RegistrationJob, registration_id, "registration", "registration_id")
    rows = _reviews_of(db, job.id, ReviewSubjectValues.REGISTRATION)
    superseded = {r.supersedes_id for r in rows if r.supersedes_id is not None}
    return ReviewsPublic(data=[_public(r, superseded) for r in rows], count=len(rows))


@router.get(
    "/reviews/{review_id}",
    operation_id="get_review",
    responses=problem(404, "No such review."),
)
def read_review(principal: AnyRole, db: DbSession, review_id: str) -> ReviewPublic:
    """One review."""
    review = get_or_404(db, Review, review_id, "review", "review_id")
    successor = db.scalar(select(Review.id).where(Review.supersedes_id == review.id))
    return _public(review, {review.id} if successor is not None else set())
