"""Registration jobs are claimed exactly once, held under a lease and a time limit, retried a
bounded number of times when their worker dies, and end in a terminal state with a reason
(api.job_leases), on SQLite and on PostgreSQL.

Workers are :class:`~api.job_leases.JobLeases` with owners of their own, racing from threads on
connections of their own: on PostgreSQL that is the same row-level contention two service
processes make.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from api.audit import record_audit
from api.db.base import utc_now
from api.db.models import AuditEvent, RegistrationJob
from api.enums import RegistrationStatusValues
from api.job_leases import (
    JobLeases,
    ReapedJob,
    interrupted_reason,
    requeued_reason,
    worker_identity,
)
from tests.api.conftest import InProcessApi, make_settings, start_in_process
from tests.api.fake_results import add_registration, service_of

_WORKERS = 8


@pytest.fixture
def db_api(tmp_path: Path, database_url: str) -> Iterator[InProcessApi]:
    """The app on SQLite or on PostgreSQL."""
    yield from start_in_process(make_settings(tmp_path / "data", database_url))


def _queued_job(api: InProcessApi) -> str:
    patient = api.create_patient(f"MRN-{uuid.uuid4().hex[:8]}")
    session = api.create_session(patient["id"])
    return add_registration(api, session["id"], status=RegistrationStatusValues.QUEUED)


def _job(api: InProcessApi, job_id: str) -> RegistrationJob:
    with service_of(api).sessions() as db:
        job = db.get(RegistrationJob, job_id)
        assert job is not None
        return job


def _leases(api: InProcessApi, owner: str, **kwargs: object) -> JobLeases:
    return JobLeases(service_of(api).sessions, owner=owner, **kwargs)  # type: ignore[arg-type]


def _audit_fail(db: Session, job: ReapedJob) -> None:
    action = "registration.retry" if job.requeued else "registration.fail"
    record_audit(db, None, action, "registration", job.job_id, {"reason": job.reason})


def _audit_actions(api: InProcessApi, job_id: str) -> list[str]:
    with service_of(api).sessions() as db:
        events = db.query(AuditEvent).filter(AuditEvent.resource_id == job_id)
        return [event.action for event in events.order_by(AuditEvent.id)]


def test_many_workers_racing_for_one_job_claim_it_exactly_once(db_api: InProcessApi) -> None:
    job_id = _queued_job(db_api)
    workers = [_leases(db_api, f"otherhost:{n}:race") for n in range(_WORKERS)]
    barrier = threading.Barrier(_WORKERS)
    won: list[str] = []

    def claim(worker: JobLeases) -> None:
        barrier.wait()
        if worker.claim(job_id, time_limit_s=60):
            won.append(worker.owner)

    threads = [threading.Thread(target=claim, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    job = _job(db_api, job_id)
    assert job.status == "running"
    assert job.lease_owner == won[0]
    assert job.deadline_at is not None
    assert job.started_at is not None
    assert job.deadline_at - job.started_at == timedelta(seconds=60)


def test_only_the_lease_holder_finishes_a_job(db_api: InProcessApi) -> None:
    job_id = _queued_job(db_api)
    holder, other = _leases(db_api, "otherhost:1:a"), _leases(db_api, "otherhost:2:b")
    assert holder.claim(job_id, time_limit_s=60)
    assert not other.claim(job_id, time_limit_s=60)
    done = {"status": "completed", "reason": None}
    assert not other.finish(job_id, done, then=lambda db: None)
    assert _job(db_api, job_id).status == "running"
    assert holder.renew([job_id]) == {job_id}
    assert other.renew([job_id]) == set()
    assert holder.finish(job_id, done, then=lambda db: None)
    job = _job(db_api, job_id)
    assert job.status == "completed"
    assert job.finished_at is not None
    assert not holder.finish(job_id, {"status": "failed"}, then=lambda db: None)


def test_a_job_past_its_time_limit_fails_with_the_reason_and_its_late_result_is_dropped(
    db_api: InProcessApi,
) -> None:
    job_id = _queued_job(db_api)
    now = [utc_now()]
    worker = _leases(db_api, worker_identity(), lease_s=30, clock=lambda: now[0])
    assert worker.claim(job_id, time_limit_s=5)
    now[0] += timedelta(seconds=6)
    assert worker.renew([job_id]) == {job_id}  # alive, but overdue
    assert not worker.finish(job_id, {"status": "completed"}, then=lambda db: None)
    reaped = worker.reap(then=_audit_fail)
    assert [r.job_id for r in reaped] == [job_id]
    job = _job(db_api, job_id)
    assert job.status == "failed"
    assert job.reason is not None
    assert "time limit of 5 s exceeded" in job.reason
    assert _audit_actions(db_api, job_id) == ["registration.fail"]


def test_a_job_past_its_time_limit_is_not_retried_even_when_its_worker_died(
    db_api: InProcessApi,
) -> None:
    job_id = _queued_job(db_api)
    now = [utc_now()]
    host = worker_identity().split(":", 1)[0]
    dead = _leases(db_api, f"{host}:{_dead_pid()}:dead", clock=lambda: now[0])
    assert dead.claim(job_id, time_limit_s=5)
    now[0] += timedelta(seconds=40)  # its lease and its time limit both ran out
    reaped = _leases(db_api, worker_identity(), clock=lambda: now[0]).reap(then=_audit_fail)
    assert [(r.job_id, r.requeued) for r in reaped] == [(job_id, False)]
    job = _job(db_api, job_id)
    assert job.reason is not None
    assert (job.status, job.attempts, job.interruptions) == ("failed", 1, [])
    assert "time limit of 5 s exceeded" in job.reason


def _running_job(api: InProcessApi, owner: str, lease_expires_at: datetime) -> str:
    job_id = _queued_job(api)
    with service_of(api).sessions() as db:
        job = db.get(RegistrationJob, job_id)
        assert job is not None
        job.status = "running"
        job.attempts = 1  # as a claim counts it
        job.lease_owner = owner
        job.lease_expires_at = lease_expires_at
        job.deadline_at = utc_now() + timedelta(hours=1)
        db.commit()
    return job_id


def _dead_pid() -> int:
    pid = 2**22 - 7
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_jobs_of_dead_workers_are_queued_again_and_a_live_workers_job_stays(
    db_api: InProcessApi,
) -> None:
    me = worker_identity()
    host = me.split(":", 1)[0]
    later = utc_now() + timedelta(minutes=5)
    dead_here = _running_job(db_api, f"{host}:{_dead_pid()}:dead", later)
    expired_elsewhere = _running_job(db_api, "otherhost:1:x", utc_now() - timedelta(seconds=1))
    live_elsewhere = _running_job(db_api, "otherhost:2:y", later)
    reaped = _leases(db_api, me).reap(then=_audit_fail)
    assert {(r.job_id, r.attempt, r.requeued) for r in reaped} == {
        (dead_here, 1, True),
        (expired_elsewhere, 1, True),
    }
    for job_id, why in (
        (dead_here, "its worker process ended while it ran"),
        (expired_elsewhere, "its worker stopped renewing its lease while it ran (lease expired)"),
    ):
        job = _job(db_api, job_id)
        assert (job.status, job.reason) == ("queued", requeued_reason(1, 3, why))
        assert (job.lease_owner, job.lease_expires_at, job.deadline_at, job.started_at) == (
            None,
            None,
            None,
            None,
        )
        assert job.attempts == 1
        assert [(i["attempt"], i["reason"]) for i in job.interruptions] == [(1, why)]
        assert _audit_actions(db_api, job_id) == ["registration.retry"]
    assert _job(db_api, live_elsewhere).status == "running"


def test_a_job_whose_worker_dies_every_time_fails_after_the_bound(db_api: InProcessApi) -> None:
    job_id = _queued_job(db_api)
    host = worker_identity().split(":", 1)[0]
    reaper = _leases(db_api, worker_identity(), max_attempts=3)
    for attempt in range(1, 4):
        doomed = _leases(db_api, f"{host}:{_dead_pid()}:run{attempt}")
        assert doomed.claim(job_id, time_limit_s=60)
        assert _job(db_api, job_id).attempts == attempt
        [reaped] = reaper.reap(then=_audit_fail)
        assert (reaped.attempt, reaped.requeued) == (attempt, attempt < 3)
    job = _job(db_api, job_id)
    assert (job.status, job.reason, job.attempts) == ("failed", interrupted_reason(3), 3)
    assert job.reason is not None
    assert job.reason.startswith("interrupted 3 times: its worker died while it ran")
    assert job.finished_at is not None
    assert [i["attempt"] for i in job.interruptions] == [1, 2, 3]
    assert _audit_actions(db_api, job_id) == [
        "registration.retry",
        "registration.retry",
        "registration.fail",
    ]
    assert not reaper.claim(job_id, time_limit_s=60)  # failed is final


def test_an_attempt_handed_back_by_a_stopping_worker_does_not_count(db_api: InProcessApi) -> None:
    job_id = _queued_job(db_api)
    stopping = _leases(db_api, "otherhost:4:stop", max_attempts=1)
    assert stopping.claim(job_id, time_limit_s=60)
    assert stopping.release([job_id]) == {job_id}
    job = _job(db_api, job_id)
    assert (job.status, job.attempts, job.interruptions, job.reason) == ("queued", 0, [], None)
    host = worker_identity().split(":", 1)[0]
    assert _leases(db_api, f"{host}:{_dead_pid()}:next").claim(job_id, time_limit_s=60)
    # With one run allowed, the first run that really ran is the last: failed, not queued.
    [reaped] = _leases(db_api, worker_identity(), max_attempts=1).reap(then=_audit_fail)
    assert (reaped.requeued, _job(db_api, job_id).reason) == (False, interrupted_reason(1))


def test_the_service_sweep_renews_its_own_jobs_and_fails_abandoned_ones(
    db_api: InProcessApi,
) -> None:
    worker = service_of(db_api).registrations
    abandoned = _running_job(db_api, "otherhost:3:z", utc_now() - timedelta(seconds=1))
    mine = _queued_job(db_api)
    assert worker.leases.claim(mine, time_limit_s=60)
    before = _job(db_api, mine).lease_expires_at
    assert before is not None
    worker._held.add(mine)  # as _run does while the job computes
    try:
        reaped = worker.sweep()
    finally:
        worker._held.discard(mine)
    assert [(r.job_id, r.requeued) for r in reaped] == [(abandoned, True)]
    after = _job(db_api, mine).lease_expires_at
    assert after is not None
    assert after >= before
    assert _job(db_api, mine).status == "running"


def test_the_sweep_runs_a_job_another_process_queued_and_left(db_api: InProcessApi) -> None:
    """E.g. the DICOM receiver queued an automatic registration and stopped before running it."""
    worker = service_of(db_api).registrations
    fresh = _queued_job(db_api)
    left = _queued_job(db_api)
    with service_of(db_api).sessions() as db:
        job = db.get(RegistrationJob, left)
        assert job is not None
        job.created_at = utc_now() - timedelta(seconds=worker.leases.lease_s + 1)
        db.commit()
    worker.sweep()
    deadline = datetime.now().timestamp() + 30
    while _job(db_api, left).status in ("queued", "running"):
        assert datetime.now().timestamp() < deadline
        threading.Event().wait(0.05)
    # Its placeholder volumes do not exist: it ends failed, with the reason, run exactly once.
    assert _job(db_api, left).status == "failed"
    assert _job(db_api, fresh).status == "queued"  # its own process may still claim it
    assert worker._offered == {left}
