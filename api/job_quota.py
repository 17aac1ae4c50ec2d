"""How many registration jobs a token, and the whole service, may have waiting or running.

Any role may queue a registration, and each one holds a heavy-work slot for up to a minute: an
unbounded queue lets one client (a leaked console token, a retry loop) delay every treatment
room's registrations by hours. :func:`check_job_quota` counts the queued and running jobs, per
token and in total, in the caller's write transaction, and raises :class:`JobQuotaError`, which
the route answers with 429 (the token's quota) or 503 (the service's) and ``Retry-After``.

Two simultaneous requests of one token must not both pass: on SQLite the write transaction is
``BEGIN IMMEDIATE`` (serialised); on PostgreSQL the token's row is locked
(``SELECT ... FOR UPDATE``) before counting, so the second request counts the first one's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import ApiToken, RegistrationJob
from api.enums import RegistrationStatusValues

__all__ = ["ACTIVE_STATUSES", "JobQuotaError", "check_job_quota"]

ACTIVE_STATUSES = (RegistrationStatusValues.QUEUED.value, RegistrationStatusValues.RUNNING.value)


@dataclass
class JobQuotaError(Exception):
    """Too many active jobs: ``scope`` is ``"token"`` or ``"service"``."""

    scope: Literal["token", "service"]
    limit: int

    def __str__(self) -> str:
        whose = "this token has" if self.scope == "token" else "the service has"
        return (
            f"{whose} {self.limit} registration jobs queued or running, the most allowed; "
            "wait for one to finish"
        )


def check_job_quota(db: Session, token_id: str, *, max_per_token: int, max_in_service: int) -> None:
    """Refuse a new job when the token's or the service's active jobs are at their limit.

    Raises
    ------
    JobQuotaError
        The token (``scope="token"``) or the service (``scope="service"``) is at its limit.
    """
    # Serialise one token's submissions (no effect on SQLite, already serialised).
    db.execute(select(ApiToken.id).where(ApiToken.id == token_id).with_for_update())
    active = select(func.count()).where(RegistrationJob.status.in_(ACTIVE_STATUSES))
    mine = db.scalar(active.where(RegistrationJob.created_by == token_id)) or 0
    if mine >= max_per_token:
        raise JobQuotaError("token", max_per_token)
    if (db.scalar(active) or 0) >= max_in_service:
        raise JobQuotaError("service", max_in_service)
