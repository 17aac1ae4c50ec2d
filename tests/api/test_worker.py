"""``igrt worker``: registration jobs run by worker processes on the database queue.

Two workers on one PostgreSQL database run every queued job, none twice; a worker stopped
gracefully queues its unfinished job again for the other; a worker killed mid-job (kill -9)
leaves a job that the other queues again and runs to its end (never one stuck ``running``)
while it goes on with the rest, and a job whose worker is killed on every attempt ends
``failed`` with the reason after ``IGRT_REGISTRATION_MAX_ATTEMPTS`` runs. The service replica
(``IGRT_REGISTRATION_IN_PROCESS=false``) only queues.

In-process workers are :class:`~api.registration_jobs.RegistrationWorker` s of services of
their own (own engines, own connections) with the registration itself replaced by a recorder:
what is under test is the claiming, not the engine. The kill test runs real ``igrt worker``
processes on real registrations.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.db.base import utc_now
from api.db.models import AuditEvent, RegistrationJob
from api.enums import RegistrationStatusValues, RoleValues
from api.job_leases import interrupted_reason
from api.registration_jobs import RegistrationWorker
from api.service import Service
from tests.api.conftest import (
    DISPLACEMENT_LPS_MM,
    InProcessApi,
    Volumes,
    make_settings,
    start_in_process,
)
from tests.api.fake_results import add_registration, service_of
from tests.api.live_server import kill_mid_job, service_environment

_JOBS = 12
_JOB_S = 0.15
_TIMEOUT_S = 60.0
_WORKER = (sys.executable, "-m", "igrt.cli.main", "worker")


@pytest.fixture
def postgres_api(tmp_path: Path) -> Iterator[InProcessApi]:
    """A service replica on PostgreSQL that leaves registration jobs to workers."""
    from tests.api.conftest import postgres_schema_url

    database = postgres_schema_url()
    url = next(database)
    try:
        yield from start_in_process(
            make_settings(tmp_path / "data", url, registration_in_process=False)
        )
    finally:
        database.close()


def _queued_jobs(api: InProcessApi, count: int) -> list[str]:
    patient = api.create_patient(f"MRN-{uuid.uuid4().hex[:8]}")
    session = api.create_session(patient["id"])
    return [
        add_registration(api, session["id"], status=RegistrationStatusValues.QUEUED)
        for _ in range(count)
    ]


def _statuses(api: InProcessApi, job_ids: list[str]) -> dict[str, RegistrationJob]:
    with service_of(api).sessions() as db:
        jobs = db.query(RegistrationJob).filter(RegistrationJob.id.in_(job_ids)).all()
        db.expunge_all()
    return {job.id: job for job in jobs}


def _wait_all_finished(api: InProcessApi, job_ids: list[str]) -> dict[str, RegistrationJob]:
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        jobs = _statuses(api, job_ids)
        if all(job.status in ("completed", "failed") for job in jobs.values()):
            return jobs
        assert time.monotonic() < deadline, Counter(job.status for job in jobs.values())
        time.sleep(0.05)


class RecordingWorker:
    """A worker process's job runner (a service of its own) whose registration is recorded."""

    def __init__(self, api: InProcessApi, runs: list[tuple[str, str]], **settings: Any) -> None:
        values = {"registration_in_process": True, "registration_workers": 2, **settings}
        self.service = Service.from_settings(
            make_settings(api.settings.data_dir, api.settings.database_url, **values)
        )
        self.worker: RegistrationWorker = self.service.registrations
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.stop = threading.Event()
        self._runs = runs
        self.worker._register = self._register  # type: ignore[method-assign]
        self._thread: threading.Thread | None = None

    def _register(self, job_id: str, request: dict[str, Any]) -> dict[str, Any]:
        self._runs.append((job_id, self.worker.leases.owner))
        self.started.set()
        time.sleep(_JOB_S)
        assert self.release.wait(_TIMEOUT_S)
        return {
            "status": RegistrationStatusValues.COMPLETED.value,
            "reason": None,
            "quality": "good",
            "repositioning_required": False,
            "result": {"recorded_by": self.worker.leases.owner},
            "overlay_paths": {},
            "dicom_reg_path": None,
        }

    def start(self) -> RecordingWorker:
        self._thread = threading.Thread(
            target=self.worker.serve_queue, args=(self.stop,), kwargs={"poll_s": 0.2}
        )
        self._thread.start()
        return self

    def close(self, grace_s: float = _TIMEOUT_S) -> set[str]:
        """As ``igrt worker`` on SIGTERM: stop polling, then stop the pool; the released jobs."""
        self.stop.set()
        if self._thread is not None:
            self._thread.join(_TIMEOUT_S)
        return self.worker.stop(grace_s)


@pytest.mark.postgres
def test_the_replica_leaves_jobs_queued_for_workers(postgres_api: InProcessApi) -> None:
    [job_id] = _queued_jobs(postgres_api, 1)
    replica = service_of(postgres_api)
    with replica.sessions() as db:  # queued long enough for an in-process sweep to run it
        job = db.get(RegistrationJob, job_id)
        assert job is not None
        job.created_at = utc_now() - timedelta(seconds=replica.settings.job_lease_s + 1)
        db.commit()
    replica.registrations.submit(job_id)
    replica.registrations.sweep()
    assert replica.registrations.recover() == (0, 0)
    time.sleep(0.2)
    assert _statuses(postgres_api, [job_id])[job_id].status == "queued"


@pytest.mark.postgres
def test_two_workers_finish_every_queued_job_and_run_none_twice(
    postgres_api: InProcessApi,
) -> None:
    job_ids = _queued_jobs(postgres_api, _JOBS)
    runs: list[tuple[str, str]] = []
    workers = [RecordingWorker(postgres_api, runs).start() for _ in range(2)]
    try:
        jobs = _wait_all_finished(postgres_api, job_ids)
    finally:
        for worker in workers:
            assert worker.close() == set()
    ran = Counter(job_id for job_id, _ in runs)
    assert sorted(ran) == sorted(job_ids)
    assert set(ran.values()) == {1}, "a job ran twice"
    by_worker = Counter(owner for _, owner in runs)
    assert len(by_worker) == 2, f"one worker ran everything: {by_worker}"
    for job_id, job in jobs.items():
        assert job.status == "completed", job.reason
        # The result is the one of the worker that ran the job: written by the lease holder.
        assert job.result == {"recorded_by": dict((j, o) for j, o in runs)[job_id]}
    with service_of(postgres_api).sessions() as db:
        completions = Counter(
            event.resource_id
            for event in db.query(AuditEvent).filter(AuditEvent.action == "registration.complete")
        )
    assert completions == Counter({job_id: 1 for job_id in job_ids})


@pytest.mark.postgres
def test_a_stopped_worker_queues_its_unfinished_job_again_for_another(
    postgres_api: InProcessApi,
) -> None:
    [job_id] = _queued_jobs(postgres_api, 1)
    runs: list[tuple[str, str]] = []
    first = RecordingWorker(postgres_api, runs)
    first.release.clear()  # its job computes until the end of the test
    first.start()
    assert first.started.wait(_TIMEOUT_S)
    assert _statuses(postgres_api, [job_id])[job_id].status == "running"
    assert first.close(grace_s=0.3) == {job_id}  # SIGTERM: the grace ran out
    released = _statuses(postgres_api, [job_id])[job_id]
    assert (released.status, released.lease_owner, released.started_at) == ("queued", None, None)
    second = RecordingWorker(postgres_api, runs).start()
    try:
        jobs = _wait_all_finished(postgres_api, [job_id])
    finally:
        first.release.set()  # the first one's late result is discarded
        assert second.close() == set()
    assert jobs[job_id].status == "completed"
    assert jobs[job_id].result == {"recorded_by": second.worker.leases.owner}
    assert [owner for _, owner in runs] == [first.worker.leases.owner, second.worker.leases.owner]
    first.worker.shutdown()
    assert _statuses(postgres_api, [job_id])[job_id].result == {
        "recorded_by": second.worker.leases.owner
    }


_LEASE_EXPIRED = "its worker stopped renewing its lease while it ran (lease expired)"
_PROCESS_ENDED = "its worker process ended while it ran"


@dataclass
class _DeadOnAnotherHost:
    """Two jobs; the first held by a worker of another host that died mid-job."""

    jobs: dict[str, RegistrationJob]
    first_job: str
    second_job: str
    lease_expired_at: datetime
    runs: list[tuple[str, str]]
    dead: str
    survivor: str


def _dead_worker_on_another_host(api: InProcessApi, max_attempts: int) -> _DeadOnAnotherHost:
    first_job, second_job = _queued_jobs(api, 2)
    runs: list[tuple[str, str]] = []
    lease = {"job_lease_s": 1.0, "registration_workers": 1}
    dead = RecordingWorker(api, runs, **lease)
    dead.worker.leases.owner = f"otherhost:1:{uuid.uuid4().hex[:8]}"  # its pid says nothing here
    dead.release.clear()
    dead.start()
    assert dead.started.wait(_TIMEOUT_S)
    # It dies: no more polls, no more lease renewals (its computation is left hanging).
    dead.stop.set()
    dead.worker._stop.set()
    held = _statuses(api, [first_job])[first_job]
    assert held.status == "running"
    assert held.lease_expires_at is not None
    survivor = RecordingWorker(api, runs, registration_max_attempts=max_attempts, **lease).start()
    try:
        jobs = _wait_all_finished(api, [first_job, second_job])
    finally:
        assert survivor.close() == set()
        dead.release.set()
        dead.worker.shutdown()  # its late result is discarded: not the lease holder any more
    assert _statuses(api, [first_job])[first_job].status == jobs[first_job].status
    return _DeadOnAnotherHost(
        jobs,
        first_job,
        second_job,
        held.lease_expires_at,
        runs,
        dead.worker.leases.owner,
        survivor.worker.leases.owner,
    )


@pytest.mark.postgres
def test_a_dead_workers_job_on_another_host_runs_again_once_its_lease_expires(
    postgres_api: InProcessApi,
) -> None:
    case = _dead_worker_on_another_host(postgres_api, max_attempts=3)
    retried = case.jobs[case.first_job]
    assert retried.status == "completed", retried.reason
    assert retried.result == {"recorded_by": case.survivor}
    assert retried.attempts == 2
    [interruption] = retried.interruptions
    assert (interruption["attempt"], interruption["reason"]) == (1, _LEASE_EXPIRED)
    assert retried.started_at is not None
    assert retried.started_at >= case.lease_expired_at  # not before its lease ran out
    assert case.jobs[case.second_job].status == "completed"
    assert Counter(case.runs) == Counter(
        [
            (case.first_job, case.dead),
            (case.first_job, case.survivor),
            (case.second_job, case.survivor),
        ]
    )
    # The dead worker's late result was discarded: the survivor's stands.
    final = _statuses(postgres_api, [case.first_job])[case.first_job]
    assert final.result == {"recorded_by": case.survivor}


@pytest.mark.postgres
def test_a_dead_workers_job_on_its_last_attempt_fails_with_the_reason(
    postgres_api: InProcessApi,
) -> None:
    case = _dead_worker_on_another_host(postgres_api, max_attempts=1)
    failed = case.jobs[case.first_job]
    assert (failed.status, failed.reason, failed.attempts) == ("failed", interrupted_reason(1), 1)
    assert failed.finished_at is not None
    assert failed.finished_at >= case.lease_expired_at
    assert [i["reason"] for i in failed.interruptions] == [_LEASE_EXPIRED]
    assert case.jobs[case.second_job].status == "completed"
    assert case.runs == [(case.first_job, case.dead), (case.second_job, case.survivor)]
    # The dead worker's late result was discarded: the reason stands.
    final = _statuses(postgres_api, [case.first_job])[case.first_job]
    assert final.reason == interrupted_reason(1)


# --- real worker processes --------------------------------------------------------------------


def _queue_real_registrations(api: InProcessApi, volumes: Volumes, count: int) -> list[str]:
    patient = api.create_patient()  # the identity the simulated volumes state
    session_id = api.create_session(patient["id"], kind="fraction", fraction_number=1)["id"]
    ids = {}
    for role, kind, fmt, content, content_type in (
        (RoleValues.THERAPIST, "planning_ct", "dicom_zip", volumes.planning_zip, "application/zip"),
        (RoleValues.CONSOLE, "cbct", "mha", volumes.cbct_mha, "application/octet-stream"),
    ):
        upload = api.client.post(
            f"/api/v1/sessions/{session_id}/uploads/volume",
            files={"file": (f"{kind}.bin", content, content_type)},
            data={"kind": kind, "format": fmt},
            headers=api.headers(role),
        )
        assert upload.status_code == 201, upload.text
        ids[kind] = upload.json()["id"]
    jobs = []
    for _ in range(count):
        created = api.client.post(
            f"/api/v1/sessions/{session_id}/registrations",
            json={
                "planning_ct_upload_id": ids["planning_ct"],
                "cbct_upload_id": ids["cbct"],
                "isocentre_lps_mm": list(volumes.isocentre_lps_mm),
            },
            headers=api.headers(RoleValues.CONSOLE),
        )
        assert created.status_code == 202, created.text
        jobs.append(created.json()["id"])
    return jobs


def _start_worker(
    api: InProcessApi, log: Path, alive: Path, *options: str, max_attempts: int = 3
) -> subprocess.Popen[bytes]:
    env = service_environment(
        api.settings.data_dir,
        database_url=api.settings.database_url,
        job_lease_s="2",
        registration_max_attempts=str(max_attempts),
        demo_data="false",
        first_run_token="false",
    )
    with log.open("ab") as output:
        return subprocess.Popen(
            [
                *_WORKER,
                "--concurrency",
                "1",
                "--poll-s",
                "0.1",
                "--alive-file",
                str(alive),
                *options,
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _end(*processes: subprocess.Popen[bytes] | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_workers_job_runs_again_on_the_other_worker_which_goes_on(
    postgres_api: InProcessApi, volumes: Volumes, tmp_path: Path
) -> None:
    job_ids = _queue_real_registrations(postgres_api, volumes, 3)
    assert {job.status for job in _statuses(postgres_api, job_ids).values()} == {"queued"}
    log = tmp_path / "doomed.log"
    doomed = _start_worker(postgres_api, log, tmp_path / "doomed.alive")
    survivor: subprocess.Popen[bytes] | None = None
    alive = tmp_path / "survivor.alive"
    try:
        killed = kill_mid_job(lambda: _statuses(postgres_api, job_ids).values(), doomed, log)
        survivor = _start_worker(postgres_api, tmp_path / "survivor.log", alive)
        jobs = _wait_all_finished(postgres_api, job_ids)
        touched = alive.stat().st_mtime
        time.sleep(0.3)
        assert alive.stat().st_mtime > touched  # its health check's signal: it polls
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(30) == 0, (tmp_path / "survivor.log").read_text()
    finally:
        _end(doomed, survivor)
    assert [job.status for job in jobs.values()] == ["completed"] * 3, [
        job.reason for job in jobs.values()
    ]
    assert all(f":{survivor.pid}:" in (job.lease_owner or "") for job in jobs.values())
    retried = jobs[killed.id]
    assert retried.attempts == 2
    assert [(i["attempt"], i["reason"]) for i in retried.interruptions] == [(1, _PROCESS_ENDED)]
    assert {job.attempts for job_id, job in jobs.items() if job_id != killed.id} == {1}
    # What the worker wrote is what the in-process worker writes, served by the replica.
    therapist = postgres_api.headers(RoleValues.THERAPIST)
    for job in jobs.values():
        result = postgres_api.client.get(
            f"/api/v1/registrations/{job.id}/result", headers=therapist
        )
        assert result.status_code == 200, result.text
        np.testing.assert_allclose(
            result.json()["couch_correction_lps_mm"], -np.array(DISPLACEMENT_LPS_MM), atol=0.5
        )
        for path in (
            f"/api/v1/registrations/{job.id}/overlays/coronal",
            f"/api/v1/registrations/{job.id}/dicom-reg",
        ):
            assert postgres_api.client.get(path, headers=therapist).status_code == 200, path
    public = postgres_api.client.get(f"/api/v1/registrations/{killed.id}", headers=therapist)
    assert public.json()["attempts"] == 2
    assert [i["reason"] for i in public.json()["interruptions"]] == [_PROCESS_ENDED]
    assert (
        "abandoned jobs at start: 1 queued again, 0 failed"
        in (tmp_path / "survivor.log").read_text()
    )
    assert "stopped; 0 running jobs queued again" in (tmp_path / "survivor.log").read_text()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_job_whose_worker_is_killed_on_every_attempt_ends_failed_after_the_bound(
    postgres_api: InProcessApi, volumes: Volumes, tmp_path: Path
) -> None:
    [job_id] = _queue_real_registrations(postgres_api, volumes, 1)
    workers: list[subprocess.Popen[bytes]] = []

    def read() -> list[RegistrationJob]:
        return list(_statuses(postgres_api, [job_id]).values())

    try:
        for attempt in (1, 2):
            log = tmp_path / f"doomed{attempt}.log"
            workers.append(_start_worker(postgres_api, log, tmp_path / "alive", max_attempts=2))
            kill_mid_job(read, workers[-1], log, attempt=attempt)
        # The next worker finds the job abandoned on its last attempt: failed, not run again.
        log = tmp_path / "last.log"
        workers.append(_start_worker(postgres_api, log, tmp_path / "alive", max_attempts=2))
        [job] = _wait_all_finished(postgres_api, [job_id]).values()
        workers[-1].send_signal(signal.SIGTERM)
        assert workers[-1].wait(30) == 0, log.read_text()
    finally:
        _end(*workers)
    assert (job.status, job.reason, job.attempts) == ("failed", interrupted_reason(2), 2)
    assert [(i["attempt"], i["reason"]) for i in job.interruptions] == [
        (1, _PROCESS_ENDED),
        (2, _PROCESS_ENDED),
    ]
    assert "abandoned jobs at start: 0 queued again, 1 failed" in log.read_text()
    with service_of(postgres_api).sessions() as db:
        actions = [
            event.action
            for event in db.query(AuditEvent)
            .filter(AuditEvent.resource_id == job_id)
            .order_by(AuditEvent.id)
        ]
    assert actions == ["registration.create", "registration.retry", "registration.fail"]


@pytest.mark.postgres
@pytest.mark.slow
def test_sigterm_queues_the_running_job_again_and_the_worker_exits_at_once(
    postgres_api: InProcessApi, volumes: Volumes, tmp_path: Path
) -> None:
    [job_id] = _queue_real_registrations(postgres_api, volumes, 1)
    log = tmp_path / "worker.log"
    worker = _start_worker(postgres_api, log, tmp_path / "alive", "--stop-grace-s", "0")
    try:
        deadline = time.monotonic() + _TIMEOUT_S
        while _statuses(postgres_api, [job_id])[job_id].status != "running":
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker never claimed the job"
            time.sleep(0.01)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    job = _statuses(postgres_api, [job_id])[job_id]
    assert (job.status, job.lease_owner, job.reason) == ("queued", None, None)
    assert "stopped; 1 running jobs queued again" in log.read_text()


def test_a_worker_beside_a_sqlite_service_is_refused(api: InProcessApi, tmp_path: Path) -> None:
    env = service_environment(api.settings.data_dir, demo_data="false", first_run_token="false")
    result = subprocess.run(
        [*_WORKER, "--poll-s", "0.1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "another igrt service process" in result.stderr


def test_a_bad_concurrency_is_a_usage_error(tmp_path: Path) -> None:
    env = service_environment(tmp_path / "data")
    result = subprocess.run(
        [*_WORKER, "--concurrency", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "bad input (concurrency)" in result.stderr
