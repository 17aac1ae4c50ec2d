"""``igrt worker``: registration jobs run by worker processes on the database queue.

Two workers on one PostgreSQL database run every queued job, none twice; a worker stopped
gracefully queues its unfinished job again for the other; a worker killed mid-job (kill -9)
leaves a job that the other fails with the reason (never one stuck ``running``) while it goes
on with the rest. The service replica (``IGRT_REGISTRATION_IN_PROCESS=false``) only queues.

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
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.db.base import utc_now
from api.db.models import AuditEvent, RegistrationJob
from api.enums import RegistrationStatusValues, RoleValues
from api.job_leases import DEAD_WORKER_REASON
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
from tests.api.live_server import service_environment

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


@pytest.mark.postgres
def test_a_dead_workers_job_on_another_host_is_failed_once_its_lease_expires(
    postgres_api: InProcessApi,
) -> None:
    first_job, second_job = _queued_jobs(postgres_api, 2)
    runs: list[tuple[str, str]] = []
    lease = {"job_lease_s": 1.0, "registration_workers": 1}
    dead = RecordingWorker(postgres_api, runs, **lease)
    dead.worker.leases.owner = f"otherhost:1:{uuid.uuid4().hex[:8]}"  # its pid says nothing here
    dead.release.clear()
    dead.start()
    assert dead.started.wait(_TIMEOUT_S)
    # It dies: no more polls, no more lease renewals (its computation is left hanging).
    dead.stop.set()
    dead.worker._stop.set()
    held = _statuses(postgres_api, [first_job])[first_job]
    assert held.status == "running"
    assert held.lease_expires_at is not None
    survivor = RecordingWorker(postgres_api, runs, **lease).start()
    try:
        jobs = _wait_all_finished(postgres_api, [first_job, second_job])
    finally:
        assert survivor.close() == set()
        dead.release.set()
        dead.worker.shutdown()
    failed = jobs[first_job]
    assert (failed.status, failed.reason) == ("failed", DEAD_WORKER_REASON)
    assert failed.finished_at is not None
    assert failed.finished_at >= held.lease_expires_at  # not before its lease ran out
    assert jobs[second_job].status == "completed"
    assert runs == [
        (first_job, dead.worker.leases.owner),
        (second_job, survivor.worker.leases.owner),
    ]
    # The dead worker's late result was discarded: the reason stands.
    assert _statuses(postgres_api, [first_job])[first_job].reason == DEAD_WORKER_REASON


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
    api: InProcessApi, log: Path, alive: Path, *options: str
) -> subprocess.Popen[bytes]:
    env = service_environment(
        api.settings.data_dir,
        database_url=api.settings.database_url,
        job_lease_s="2",
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


@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_workers_job_ends_failed_with_the_reason_and_the_other_worker_goes_on(
    postgres_api: InProcessApi, volumes: Volumes, tmp_path: Path
) -> None:
    job_ids = _queue_real_registrations(postgres_api, volumes, 3)
    assert {job.status for job in _statuses(postgres_api, job_ids).values()} == {"queued"}
    doomed = _start_worker(postgres_api, tmp_path / "doomed.log", tmp_path / "doomed.alive")
    survivor: subprocess.Popen[bytes] | None = None
    alive = tmp_path / "survivor.alive"
    try:
        deadline = time.monotonic() + _TIMEOUT_S
        while not (
            running := [
                job for job in _statuses(postgres_api, job_ids).values() if job.status == "running"
            ]
        ):
            assert doomed.poll() is None, (tmp_path / "doomed.log").read_text()
            assert time.monotonic() < deadline, "the worker never claimed a job"
            time.sleep(0.01)
        doomed.kill()  # kill -9 mid-job: no lease released, no result written
        doomed.wait(10)
        [killed] = running
        assert killed.lease_owner is not None
        assert f":{doomed.pid}:" in killed.lease_owner
        survivor = _start_worker(postgres_api, tmp_path / "survivor.log", alive)
        jobs = _wait_all_finished(postgres_api, job_ids)
        touched = alive.stat().st_mtime
        time.sleep(0.3)
        assert alive.stat().st_mtime > touched  # its health check's signal: it polls
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(30) == 0, (tmp_path / "survivor.log").read_text()
    finally:
        for process in (doomed, survivor):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
    assert (jobs[killed.id].status, jobs[killed.id].reason) == ("failed", DEAD_WORKER_REASON)
    others = [job for job_id, job in jobs.items() if job_id != killed.id]
    assert [job.status for job in others] == ["completed", "completed"], [
        job.reason for job in others
    ]
    assert all(f":{survivor.pid}:" in (job.lease_owner or "") for job in others)
    # What the worker wrote is what the in-process worker writes, served by the replica.
    therapist = postgres_api.headers(RoleValues.THERAPIST)
    for job in others:
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
    assert "stopped; 0 running jobs queued again" in (tmp_path / "survivor.log").read_text()


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
