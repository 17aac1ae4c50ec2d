"""Claiming background jobs: compare-and-set on the status, leases, time limits.

Every transition of a job is one ``UPDATE ... WHERE`` whose condition is the state the caller
expects, and the number of rows it changed says whether the caller won:

- :meth:`JobLeases.claim`: ``queued -> running`` for exactly one worker, which becomes the
  lease owner until ``lease_expires_at`` and must finish before ``deadline_at`` (its time limit);
  the job's ``attempts`` counts the claim;
- :meth:`JobLeases.renew`: the owner extends its leases while it works (a heartbeat);
- :meth:`JobLeases.finish`: ``running -> completed | failed`` only by the current owner, so a
  result computed after the job was given up (dead lease, time limit) is discarded, never
  written over the reason the job was failed with;
- :meth:`JobLeases.release`: ``running -> queued`` only by the current owner, which is stopping
  without having written a result (a worker process told to stop): another worker runs the job
  from its start, and the owner's late result, if any, is discarded by :meth:`finish`; the
  attempt handed back does not count;
- :meth:`JobLeases.reap`: a running job whose lease expired (its worker died), or whose owner is
  a dead process on this host (at once: restarts on the same machine need not wait for the
  lease), is queued again with the interruption recorded, until it has been interrupted
  ``max_attempts`` times: then it is failed with a reason that says so. A job past its deadline
  is failed with the reason, never retried.

On PostgreSQL, concurrent ``UPDATE`` s of one row wait for each other and re-check the condition
on the committed row (READ COMMITTED), so exactly one claim wins across processes and hosts; on
SQLite the writes are serialised. Each call is a transaction of its own, committed before it
returns: a claim must be visible to the other workers before the work starts.

The worker identity (:func:`worker_identity`) is ``host:pid:nonce``. The job table is a model with
``id``, ``status``, ``reason``, ``started_at``, ``finished_at``, ``lease_owner``,
``lease_expires_at``, ``deadline_at``, ``attempts`` and ``interruptions`` (today
:class:`~api.db.models.RegistrationJob`).
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.db.base import utc_now
from api.db.models import RegistrationJob

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "JobLeases",
    "ReapedJob",
    "interrupted_reason",
    "requeued_reason",
    "time_limit_reason",
    "worker_identity",
]

QUEUED = "queued"
RUNNING = "running"
FAILED = "failed"

# The claim's columns of a job queued again (released, or retried after its worker died).
_UNCLAIMED: Mapping[str, Any] = {
    "started_at": None,
    "lease_owner": None,
    "lease_expires_at": None,
    "deadline_at": None,
}

DEFAULT_MAX_ATTEMPTS = 3
"""Runs of a job in all when its worker dies under it (``IGRT_REGISTRATION_MAX_ATTEMPTS``): a
crash of a worker (killed, out of memory, its host gone) is retried, but a job that brings its
worker down every time must end."""

# Why one attempt was interrupted (an entry of the job's ``interruptions``).
_PROCESS_ENDED = "its worker process ended while it ran"
_LEASE_EXPIRED = "its worker stopped renewing its lease while it ran (lease expired)"


def time_limit_reason(limit_s: float) -> str:
    """The reason a job that overran its time limit is failed with."""
    return f"time limit of {limit_s:g} s exceeded; the job was stopped waiting for its result"


def requeued_reason(attempt: int, max_attempts: int, why: str) -> str:
    """The reason a job carries while queued again after its attempt ``attempt`` was cut short."""
    return f"attempt {attempt} of {max_attempts} interrupted: {why}; queued again"


def interrupted_reason(times: int) -> str:
    """The reason a job is failed with once its worker died under it ``times`` times."""
    runs = "once" if times == 1 else f"{times} times"
    return (
        f"interrupted {runs}: its worker died while it ran (see interruptions); not retried "
        "again, submit it again"
    )


def worker_identity() -> str:
    """``host:pid:nonce``, unique to this process (the nonce tells restarts with one pid apart)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


def _owner_is_dead_here(owner: str | None, me: str) -> bool:
    """Whether ``owner`` is a process of this host that is no longer running (or never was)."""
    if owner is None:
        return True
    host, _, rest = owner.partition(":")
    pid_text, _, _nonce = rest.partition(":")
    if host != me.split(":", 1)[0] or not pid_text.isdigit():
        return False  # another host's worker: only its lease can tell
    pid = int(pid_text)
    if owner == me:
        return False
    if pid == os.getpid():
        return True  # our pid with another nonce: a previous life of this process (containers)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _then_with(then: Callable[[Session, ReapedJob], None], job: ReapedJob, db: Session) -> None:
    then(db, job)


def _equals(column: Any, value: Any) -> Any:
    """``column = value``, or ``column IS NULL`` for None."""
    return column.is_(None) if value is None else column == value


@dataclass(frozen=True)
class ReapedJob:
    """A running job that :meth:`JobLeases.reap` queued again or failed, and why.

    ``attempt`` is the run that was cut short (1 for the first); ``requeued`` whether the job
    was queued again for another run (else it is failed).
    """

    job_id: str
    reason: str
    attempt: int = 1
    requeued: bool = False


class JobLeases:
    """Compare-and-set transitions of one job table, as one worker process.

    Parameters
    ----------
    sessions : sessionmaker
        Database sessions (each call uses and commits its own).
    owner : str, optional
        This worker's identity (:func:`worker_identity` when omitted).
    lease_s : float
        How long a claim or a renewal holds, s; renew at least every third of it.
    max_attempts : int
        Runs of a job in all when its worker dies under it (at least 1: never retried).
    model : type, optional
        The job table (:class:`~api.db.models.RegistrationJob`).
    clock : callable, optional
        The current UTC time (tests pass a fake one).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        owner: str | None = None,
        lease_s: float = 30.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        model: type[RegistrationJob] = RegistrationJob,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if not lease_s > 0:
            raise ValueError("lease_s must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._sessions = sessions
        self.owner = owner or worker_identity()
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self._model = model
        self._clock = clock

    def _update(
        self,
        *conditions: Any,
        values: Mapping[str, Any],
        then: Callable[[Session], None] | None = None,
    ) -> list[str]:
        """Run one conditional UPDATE in its own transaction; the ids it changed.

        ``then`` runs in the same transaction when a row changed.
        """
        table = self._model
        with self._sessions() as db:
            result = db.execute(
                update(table).where(*conditions).values(**values).returning(table.id),
                execution_options={"synchronize_session": False},
            )
            changed = [str(row[0]) for row in result]
            if changed and then is not None:
                then(db)
            db.commit()
        return changed

    def claim(self, job_id: str, *, time_limit_s: float) -> bool:
        """Move a queued job to running for this worker (one attempt more); whether it won it."""
        table = self._model
        now = self._clock()
        return bool(
            self._update(
                table.id == job_id,
                table.status == QUEUED,
                values={
                    "status": RUNNING,
                    "attempts": table.attempts + 1,
                    "started_at": now,
                    "lease_owner": self.owner,
                    "lease_expires_at": now + timedelta(seconds=self.lease_s),
                    "deadline_at": now + timedelta(seconds=time_limit_s),
                },
            )
        )

    def renew(self, job_ids: Iterable[str]) -> set[str]:
        """Extend this worker's leases on the given running jobs; the ones it still holds."""
        ids = list(job_ids)
        if not ids:
            return set()
        table = self._model
        expires = self._clock() + timedelta(seconds=self.lease_s)
        return set(
            self._update(
                table.id.in_(ids),
                table.status == RUNNING,
                table.lease_owner == self.owner,
                values={"lease_expires_at": expires},
            )
        )

    def finish(
        self, job_id: str, values: Mapping[str, Any], *, then: Callable[[Session], None]
    ) -> bool:
        """Write a running job's final state, if this worker still holds it.

        ``values`` must set ``status`` to a terminal state; ``then`` runs in the same
        transaction when the job was written (e.g. to add the audit event). False when the job
        is no longer this worker's or its deadline passed (:meth:`reap` then fails it).
        """
        table = self._model
        now = self._clock()
        return bool(
            self._update(
                table.id == job_id,
                table.status == RUNNING,
                table.lease_owner == self.owner,
                or_(table.deadline_at.is_(None), table.deadline_at > now),
                values={**values, "finished_at": now, "lease_expires_at": None},
                then=then,
            )
        )

    def release(self, job_ids: Iterable[str]) -> set[str]:
        """Queue again the given jobs this worker holds and has not finished; the ones it did.

        For a graceful stop that cannot wait for a job's end: nothing of the job was written
        (results are written only by :meth:`finish`), so it is safe to run it again elsewhere.
        The attempt is handed back (``attempts`` one less): a stop is no interruption.
        """
        ids = list(job_ids)
        if not ids:
            return set()
        table = self._model
        return set(
            self._update(
                table.id.in_(ids),
                table.status == RUNNING,
                table.lease_owner == self.owner,
                values={"status": QUEUED, "attempts": table.attempts - 1, **_UNCLAIMED},
            )
        )

    def queued(self, *, older_than_s: float | None = None) -> list[str]:
        """Ids of the queued jobs, oldest first (``older_than_s``: queued at least that long)."""
        table = self._model
        query = select(table.id).where(table.status == QUEUED)
        if older_than_s is not None:
            query = query.where(table.created_at <= self._clock() - timedelta(seconds=older_than_s))
        with self._sessions() as db:
            return list(db.scalars(query.order_by(table.created_at, table.id)))

    def reap(
        self, *, then: Callable[[Session, ReapedJob], None], unleased: bool = False
    ) -> list[ReapedJob]:
        """Retry or fail the running jobs no live worker holds; fail those past their deadline.

        A job whose worker died (lease expired, or a dead process of this host) is queued again
        with the interruption appended to its ``interruptions``, until it has been interrupted
        ``max_attempts`` times: then it is failed with :func:`interrupted_reason`. A job past
        its deadline is failed with :func:`time_limit_reason` and never retried: it would only
        run out of time again, holding a worker for the whole limit each time.

        ``then`` runs once per job queued again or failed, in the transaction that changed it
        (audit). ``unleased``: also take running jobs without a lease, which only a service
        older than leases leaves behind (pass it once, at start-up).
        """
        table = self._model
        now = self._clock()
        with self._sessions() as db:
            rows = db.execute(
                select(
                    table.id,
                    table.lease_owner,
                    table.lease_expires_at,
                    table.started_at,
                    table.deadline_at,
                    table.attempts,
                    table.interruptions,
                ).where(table.status == RUNNING)
            ).all()
        reaped: list[ReapedJob] = []
        for job_id, owner, lease_expires_at, started_at, deadline_at, attempts, history in rows:
            if lease_expires_at is None and not unleased:
                continue
            if deadline_at is not None and deadline_at <= now:
                limit_s = (deadline_at - started_at).total_seconds() if started_at else 0.0
                job = ReapedJob(str(job_id), time_limit_reason(limit_s), max(attempts, 1))
                values = self._failed(job.reason, now)
            elif (why := self._abandoned(owner, lease_expires_at, now)) is not None:
                job, values = self._interrupted(str(job_id), attempts, history or [], why, now)
            else:
                continue
            # Compare-and-set on what was read: a job finished or renewed meanwhile stays.
            if self._update(
                table.id == job_id,
                table.status == RUNNING,
                _equals(table.lease_owner, owner),
                _equals(table.lease_expires_at, lease_expires_at),
                values=values,
                then=functools.partial(_then_with, then, job),
            ):
                reaped.append(job)
        return reaped

    def _abandoned(
        self, owner: str | None, lease_expires_at: datetime | None, now: datetime
    ) -> str | None:
        """Why no live worker holds a running job (None: its worker is alive)."""
        # No lease at all: left by a service older than leases, which has stopped since.
        if lease_expires_at is None or _owner_is_dead_here(owner, self.owner):
            return _PROCESS_ENDED
        return _LEASE_EXPIRED if lease_expires_at <= now else None

    def _interrupted(
        self,
        job_id: str,
        attempts: int,
        history: list[dict[str, Any]],
        why: str,
        now: datetime,
    ) -> tuple[ReapedJob, dict[str, Any]]:
        """The job and the values of a run cut short: queued again, or failed at the bound."""
        attempt = max(attempts, 1)  # a job left running by a version that did not count runs
        interruptions = [*history, {"attempt": attempt, "at": now.isoformat(), "reason": why}]
        if attempt < self.max_attempts:
            reason = requeued_reason(attempt, self.max_attempts, why)
            values = {
                "status": QUEUED,
                "reason": reason,
                "attempts": attempt,
                "interruptions": interruptions,
                **_UNCLAIMED,
            }
            return ReapedJob(job_id, reason, attempt, requeued=True), values
        reason = interrupted_reason(len(interruptions))
        values = {**self._failed(reason, now), "interruptions": interruptions}
        return ReapedJob(job_id, reason, attempt), values

    @staticmethod
    def _failed(reason: str, now: datetime) -> dict[str, Any]:
        return {"status": FAILED, "reason": reason, "finished_at": now, "lease_expires_at": None}
