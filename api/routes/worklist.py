"""The review worklist (sessions and what needs attention) and a session's history.

A session's worklist status is the most urgent of: an intrafraction alert fired on one of its
streams (from the audit trail) and not acknowledged since, an unreviewed registration asking for
repositioning, results without a review, every result reviewed, nothing to review. A therapist
or physicist acknowledges a session's alerts with a note of what was done
(``POST /sessions/{id}/alert-acknowledgements``, audited as ``stream.alert_acknowledged``).
Reviews never disappear (a correction supersedes), so "reviewed" means every result has a
standing review. A motion assessment re-run from a dome hint (another names it in ``rerun_of``)
is no longer a result of its own: the re-run stands for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from api.audit import record_audit
from api.core.config import API_PREFIX
from api.crud import get_session
from api.db.models import (
    ApiToken,
    AuditEvent,
    MotionAssessment,
    Patient,
    RegistrationJob,
    Review,
    TreatmentSession,
)
from api.deps import AnyRole, ClinicalStaff, DbSession, JsonContent, PatientReader, ServiceDep
from api.enums import RegistrationStatusValues, SessionKindValues, WorklistStatusValues
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.schemas.reviews import ReviewPublic
from api.schemas.worklist import (
    AlertAcknowledgement,
    HistoryEntry,
    SessionHistory,
    Worklist,
    WorklistItem,
)

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["worklist"], responses=PROBLEM_RESPONSES)

_RAISED = "stream.alert_raised"
_ACKNOWLEDGED = "stream.alert_acknowledged"
_ALERT_ACTIONS = (_RAISED, "stream.alert_cleared", _ACKNOWLEDGED)
_FINISHED = (RegistrationStatusValues.COMPLETED.value, RegistrationStatusValues.FAILED.value)
_BATCH = 500


def _unacknowledged_alerts(db: DbSession, session_ids: list[str]) -> set[str]:
    """Sessions with an alert raised after their last acknowledgement (audit ids are ordered)."""
    latest: defaultdict[str, dict[str, int]] = defaultdict(dict)
    rows = db.execute(
        select(AuditEvent.resource_id, AuditEvent.action, func.max(AuditEvent.id))
        .where(
            AuditEvent.resource_type == "session",
            AuditEvent.resource_id.in_(session_ids),
            AuditEvent.action.in_((_RAISED, _ACKNOWLEDGED)),
        )
        .group_by(AuditEvent.resource_id, AuditEvent.action)
    )
    for session_id, action, last_id in rows:
        latest[session_id][action] = last_id
    return {
        session_id
        for session_id, last in latest.items()
        if last.get(_RAISED, -1) > last.get(_ACKNOWLEDGED, -1)
    }


def _by_session(rows: Iterable[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.session_id].append(row)
    return grouped


def _items(db: DbSession, sessions: list[tuple[TreatmentSession, Patient]]) -> list[WorklistItem]:
    """Worklist items of sessions, in the given order."""
    ids = [session.id for session, _ in sessions]
    assessments = _by_session(
        db.scalars(
            select(MotionAssessment)
            .where(MotionAssessment.session_id.in_(ids))
            .order_by(MotionAssessment.created_at)
        )
    )
    registrations = _by_session(
        db.scalars(
            select(RegistrationJob).where(
                RegistrationJob.session_id.in_(ids), RegistrationJob.status.in_(_FINISHED)
            )
        )
    )
    reviewed = set(db.scalars(select(Review.subject_id).where(Review.session_id.in_(ids))))
    alerted = _unacknowledged_alerts(db, ids)
    items: list[WorklistItem] = []
    for session, owner in sessions:
        # An assessment re-run from a dome hint was judged wrong by whoever gave the hint: the
        # re-run replaces it on the worklist (both stay readable, and the re-run is audited).
        rerun = {row.rerun_of for row in assessments[session.id] if row.rerun_of}
        current = [row for row in assessments[session.id] if row.id not in rerun]
        results = current + registrations[session.id]
        awaiting = sum(1 for row in results if row.id not in reviewed)
        flagged = any(
            row.repositioning_required and row.id not in reviewed
            for row in registrations[session.id]
        )
        latest = assessments[session.id][-1].recommendation if assessments[session.id] else None
        items.append(
            WorklistItem(
                session_id=session.id,
                patient_id=owner.id,
                patient_external_id=owner.external_id,
                patient_name=owner.name,
                kind=SessionKindValues(session.kind),
                fraction_number=session.fraction_number,
                patient_position=session.patient_position,
                created_at=session.created_at,
                status=_status(
                    alert=session.id in alerted,
                    flagged=flagged,
                    awaiting=awaiting,
                    results=len(results),
                ),
                alert_during_monitoring=session.id in alerted,
                flagged_for_repositioning=flagged,
                results=len(results),
                awaiting_review=awaiting,
                latest_recommendation=latest,
            )
        )
    return items


def _status(*, alert: bool, flagged: bool, awaiting: int, results: int) -> WorklistStatusValues:
    if alert:
        return WorklistStatusValues.ALERT_DURING_MONITORING
    if flagged:
        return WorklistStatusValues.FLAGGED_FOR_REPOSITIONING
    if awaiting:
        return WorklistStatusValues.AWAITING_REVIEW
    if results:
        return WorklistStatusValues.REVIEWED
    return WorklistStatusValues.NO_RESULTS


@router.get("/worklist", operation_id="get_worklist")
def read_worklist(
    principal: PatientReader,
    db: DbSession,
    since: Annotated[
        datetime | None,
        Query(description="Only sessions created at or after this time (e.g. local midnight)."),
    ] = None,
    status: Annotated[
        WorklistStatusValues | None, Query(description="Only sessions with this status.")
    ] = None,
    patient: Annotated[
        str | None,
        Query(max_length=64, description="Only patients whose id or name contains this text."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> Worklist:
    """Sessions newest first, each with its review status."""
    if since is not None and since.tzinfo is None:
        raise ApiError(
            422, "since needs a UTC offset, e.g. 2026-11-28T00:00:00+01:00 or ...Z", field="since"
        )
    query = select(TreatmentSession, Patient).join(Patient)
    if since is not None:
        query = query.where(TreatmentSession.created_at >= since)
    if patient:
        # "Contains this text": LIKE's own wildcards in the text match only themselves.
        text = patient.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{text}%"
        query = query.where(
            Patient.external_id.ilike(pattern, escape="\\")
            | Patient.name.ilike(pattern, escape="\\")
        )
    query = query.order_by(TreatmentSession.created_at.desc(), TreatmentSession.id)
    items: list[WorklistItem] = []
    offset = 0
    # The status is computed, not stored: filter batch by batch until ``limit`` items match.
    while len(items) < limit:
        rows = [(row[0], row[1]) for row in db.execute(query.limit(_BATCH).offset(offset))]
        matching = [item for item in _items(db, rows) if status is None or item.status is status]
        items += matching[: limit - len(items)]
        if len(rows) < _BATCH:
            break
        offset += _BATCH
    return Worklist(data=items, count=len(items))


def _alert_summary(event: AuditEvent, actor: str | None) -> str:
    detail = event.detail or {}
    if event.action == _ACKNOWLEDGED:
        who = actor or "an unknown user"
        return f"intrafraction alerts acknowledged by {who}: {detail.get('note')}"
    verb = "raised" if event.action == _RAISED else "cleared"
    displacement = detail.get("displacement_si_mm")
    text = f"intrafraction alert {verb}"
    if isinstance(displacement, int | float):
        text += f": {displacement:+.1f} mm superior-inferior from the reference"
    return text


def _review_summary(review: Review, reviewer: str | None) -> str:
    subject = review.subject_type.replace("_", " ")
    who = f"{reviewer} ({review.reviewer_role})" if reviewer else f"a {review.reviewer_role}"
    text = f"{subject} {review.outcome} by {who}"
    if review.decision:
        text += f": {review.decision.replace('_', ' ')}"
    if review.couch_correction_iec_support_mm is not None:
        lateral, longitudinal, vertical = (
            f"{v:+.1f}" for v in review.couch_correction_iec_support_mm
        )
        text += (
            f" (couch correction applied: lat {lateral}, long {longitudinal}, vert {vertical} mm,"
            " IEC 61217)"
        )
    if review.reason:
        text += f". Reason: {review.reason}"
    return text


@router.get(
    "/sessions/{session_id}/history",
    operation_id="get_session_history",
    responses=problem(404, "No such session."),
)
def read_session_history(
    principal: AnyRole, service: ServiceDep, db: DbSession, session_id: str
) -> SessionHistory:
    """The session's reviews (with the one standing per result) and stream alerts, oldest first.

    The read is audited.
    """
    session = get_session(db, session_id)
    service.read_audit.record(
        principal, "session", session.id, session_id=session.id, what="session_history"
    )
    reviews = list(db.scalars(select(Review).where(Review.session_id == session.id)))
    superseded = {r.supersedes_id for r in reviews if r.supersedes_id is not None}
    alerts = list(
        db.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.resource_type == "session",
                AuditEvent.resource_id == session.id,
                AuditEvent.action.in_(_ALERT_ACTIONS),
            )
            .order_by(AuditEvent.id)
        )
    )
    creators = {r.created_by for r in reviews} | {
        e.actor_token_id for e in alerts if e.actor_token_id is not None
    }
    names = {
        row[0]: row[1]
        for row in db.execute(select(ApiToken.id, ApiToken.name).where(ApiToken.id.in_(creators)))
    }
    entries = [
        HistoryEntry(
            occurred_at=review.created_at,
            kind="review",
            summary=_review_summary(review, names.get(review.created_by)),
            review=ReviewPublic.model_validate(review).model_copy(
                update={"standing": review.id not in superseded}
            ),
        )
        for review in reviews
    ]
    entries += [
        HistoryEntry(
            occurred_at=event.occurred_at,
            kind=event.action,
            summary=_alert_summary(event, names.get(event.actor_token_id or "")),
        )
        for event in alerts
    ]
    entries.sort(key=lambda entry: entry.occurred_at)
    return SessionHistory(data=entries, count=len(entries))


@router.post(
    "/sessions/{session_id}/alert-acknowledgements",
    operation_id="acknowledge_alerts",
    status_code=201,
    responses={
        **problem(404, "No such session."),
        **problem(409, "No intrafraction alert to acknowledge."),
        **problem(415, "The body is not JSON."),
    },
)
def acknowledge_alerts(
    principal: ClinicalStaff,
    _: JsonContent,
    db: DbSession,
    session_id: str,
    body: AlertAcknowledgement,
) -> HistoryEntry:
    """Acknowledge the session's intrafraction alerts, saying what was done.

    Therapists and physicists. The session leaves the worklist's alert status until an alert
    fires again.
    """
    session = get_session(db, session_id)
    if session.id not in _unacknowledged_alerts(db, [session.id]):
        raise ApiError(
            409, "this session has no unacknowledged intrafraction alert", field="session_id"
        )
    event = record_audit(
        db, principal, _ACKNOWLEDGED, "session", session.id, {"note": body.note.strip()}
    )
    db.commit()
    return HistoryEntry(
        occurred_at=event.occurred_at,
        kind=event.action,
        summary=_alert_summary(event, principal.name),
    )
