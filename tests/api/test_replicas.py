"""Two ``igrt serve`` replicas on one PostgreSQL and one Redis behave as one live monitor.

A console streams into replica A over the WebSocket; a therapist's monitor is open on replica
B. Everything the console sees (``started``, each frame's ``result``, the intrafraction alert,
``summary``) reaches the monitor on B, in order, and the alert within 200 ms of the console
receiving it from A (issue 15's target). Needs the machine's PostgreSQL and Redis (skips
without them, fails under ``IGRT_REQUIRE_POSTGRES`` / ``IGRT_REQUIRE_REDIS``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from websockets.sync.client import ClientConnection, connect

from api.db.engine import make_engine, make_session_factory
from api.db.models import RegistrationJob
from api.enums import RoleValues
from tests.api.conftest import (
    DISPLACEMENT_LPS_MM,
    PATIENT_ID,
    Volumes,
    bearer,
    create_token,
    make_settings,
    postgres_schema_url,
)
from tests.api.live_server import (
    LiveServer,
    kill_mid_job,
    service_environment,
    upload_registration_pair,
)
from tests.api.redis_server import require_redis
from tests.api.test_stream import START, _receive, _send_frame, _simulate

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RELAY_LIMIT_S = 0.200
SHIFT_MM = 4.0


@dataclass
class Replicas:
    a: LiveServer
    b: LiveServer
    tokens: dict[RoleValues, str]
    session_id: str
    redis_url: str
    database_url: str
    env: dict[str, str]
    folder: Path


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    redis_url = require_redis()
    database = postgres_schema_url()
    database_url = next(database)
    folder = Path(tmp_path_factory.mktemp("replicas"))
    data_dir = folder / "data"  # shared, as the replicas of compose.yaml share a volume
    pepper = uuid.uuid4().hex
    settings = make_settings(data_dir, database_url, token_pepper=pepper)
    tokens = {role: create_token(settings, role) for role in RoleValues}
    env = service_environment(
        data_dir,
        database_url=database_url,
        redis_url=redis_url,
        token_pepper=pepper,
        demo_data="false",
        first_run_token="false",
        registration_in_process="false",  # registrations run on `igrt worker` processes
        job_lease_s="2",
    )
    a = LiveServer(env, folder / "a.log").start()
    b: LiveServer | None = None
    try:
        b = LiveServer(env, folder / "b.log").start()
        with a.client(tokens[RoleValues.THERAPIST]) as client:
            patient = client.post("/api/v1/patients", json={"external_id": "MRN-REPL"}).json()
            session = client.post(
                f"/api/v1/patients/{patient['id']}/sessions",
                json={"kind": "fraction", "fraction_number": 1, "patient_position": "HFS"},
            ).json()
        yield Replicas(a, b, tokens, session["id"], redis_url, database_url, env, folder)
    finally:
        for server in (a, b):
            if server is not None:
                assert server.stop(), server.log()[-3000:]
        database.close()  # drops the schema


@dataclass
class Watcher:
    """The monitor on replica B, read by a thread that notes when each message arrived."""

    ws: ClientConnection
    arrivals: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        try:
            while True:
                message = _receive(self.ws)
                self.arrivals.append((time.monotonic(), message))
                if message["type"] == "summary":
                    return
        finally:
            self.done.set()


def _wait_until_b_listens(replicas: Replicas, watcher: Watcher) -> None:
    """B subscribes to Redis in the background after start-up: wait for a probe to get through."""
    import redis

    channel = f"igrt:live:{replicas.session_id}"
    probe = json.dumps({"origin": "test-probe", "message": {"type": "probe"}})
    with redis.Redis.from_url(replicas.redis_url) as client:
        deadline = time.monotonic() + 30
        while not any(m["type"] == "probe" for _, m in watcher.arrivals):
            assert time.monotonic() < deadline, "replica B never received from Redis"
            client.publish(channel, probe)
            time.sleep(0.1)
    watcher.arrivals.clear()


def test_the_monitor_on_b_sees_the_stream_into_a_and_its_alert_within_200_ms(
    replicas: Replicas,
) -> None:
    clip = _simulate(SHIFT_MM)
    monitor_url = f"ws://127.0.0.1:{replicas.b.port}/api/v1/sessions/{replicas.session_id}/monitor"
    stream_url = f"ws://127.0.0.1:{replicas.a.port}/api/v1/sessions/{replicas.session_id}/stream"
    with connect(
        monitor_url, additional_headers=bearer(replicas.tokens[RoleValues.THERAPIST])
    ) as monitor:
        assert _receive(monitor)["type"] == "ready"
        watcher = Watcher(monitor)
        reader = threading.Thread(target=watcher.read, daemon=True)
        reader.start()
        _wait_until_b_listens(replicas, watcher)

        console: list[tuple[float, dict[str, Any]]] = []
        with connect(
            stream_url, additional_headers=bearer(replicas.tokens[RoleValues.CONSOLE])
        ) as ws:
            assert _receive(ws)["type"] == "ready"
            ws.send(json.dumps(START))
            console.append((time.monotonic(), _receive(ws)))
            for index in range(clip.n_frames):
                _send_frame(ws, clip.frames[index], float(clip.timestamps_s[index]))
                console.append((time.monotonic(), _receive(ws)))
            ws.send(json.dumps({"type": "stop"}))
            console.append((time.monotonic(), _receive(ws)))
        assert watcher.done.wait(30), "the monitor on B never got the summary"

    seen_on_a = [message for _, message in console]
    seen_on_b = [message for _, message in watcher.arrivals]
    assert [m["type"] for m in seen_on_a] == ["started"] + ["result"] * clip.n_frames + ["summary"]
    assert seen_on_b == seen_on_a  # every message, identical, in order

    relay_s = [t_b - t_a for (t_a, _), (t_b, _) in zip(console, watcher.arrivals, strict=True)]
    raised = [i for i, m in enumerate(seen_on_a) if m.get("alert", {}).get("event") == "raised"]
    assert len(raised) == 1, "the simulated baseline shift must raise exactly one alert"
    alert_relay_s = relay_s[raised[0]]
    assert alert_relay_s <= RELAY_LIMIT_S, f"the alert took {alert_relay_s * 1000:.0f} ms to B"
    # Every message, not only the alert, typically (a shared CI machine can stall one).
    ordered = sorted(relay_s)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    assert p95 <= RELAY_LIMIT_S, f"p95 {p95 * 1000:.0f} ms from A's answer to B"
    print(
        f"relay A->B after the console's answer: alert {alert_relay_s * 1000:.1f} ms, "
        f"median {ordered[len(ordered) // 2] * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
        f"slowest {ordered[-1] * 1000:.1f} ms (message {relay_s.index(ordered[-1])}) "
        f"of {len(relay_s)}"
    )

    # One database: B serves the session's history of the stream that lived in A.
    with replicas.b.client(replicas.tokens[RoleValues.PHYSICIST]) as client:
        events = client.get("/api/v1/audit-events", params={"limit": 500}).json()["data"]
    stream_id = seen_on_a[0]["stream_id"]
    actions = [e["action"] for e in events if e["detail"].get("stream_id") == stream_id]
    assert sorted(actions) == ["stream.alert_raised", "stream.close", "stream.open"]


# --- registrations queued through a replica, run by `igrt worker` processes -----------------

_WORKER = (sys.executable, "-m", "igrt.cli.main", "worker", "--concurrency", "1", "--poll-s", "0.1")
_JOB_TIMEOUT_S = 180.0  # real registrations on a shared 2-core machine


def _jobs(replicas: Replicas, job_ids: list[str]) -> dict[str, RegistrationJob]:
    engine = make_engine(replicas.database_url)
    try:
        with make_session_factory(engine)() as db:
            jobs = list(db.scalars(select(RegistrationJob).where(RegistrationJob.id.in_(job_ids))))
            db.expunge_all()
    finally:
        engine.dispose()
    return {job.id: job for job in jobs}


def _wait_finished(replicas: Replicas, job_ids: list[str]) -> dict[str, RegistrationJob]:
    deadline = time.monotonic() + _JOB_TIMEOUT_S
    while True:
        jobs = _jobs(replicas, job_ids)
        if all(job.status in ("completed", "failed") for job in jobs.values()):
            return jobs
        assert time.monotonic() < deadline, {job.id: job.status for job in jobs.values()}
        time.sleep(0.1)


def _start_worker(replicas: Replicas, name: str) -> subprocess.Popen[bytes]:
    with (replicas.folder / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [*_WORKER, "--alive-file", str(replicas.folder / f"{name}.alive")],
            env=replicas.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _queue_through_b(replicas: Replicas, volumes: Volumes, count: int) -> list[str]:
    """A patient, a fraction, a planning CT and a CBCT, and ``count`` registrations, all via B."""
    b = replicas.b
    session_id, ids = upload_registration_pair(
        b,
        replicas.tokens[RoleValues.THERAPIST],
        replicas.tokens[RoleValues.CONSOLE],
        volumes.planning_zip,
        volumes.cbct_mha,
        PATIENT_ID,
    )
    jobs = []
    with b.client(replicas.tokens[RoleValues.CONSOLE]) as console:
        for _ in range(count):
            created = console.post(
                f"/api/v1/sessions/{session_id}/registrations",
                json={
                    "planning_ct_upload_id": ids["planning_ct"],
                    "cbct_upload_id": ids["cbct"],
                    "isocentre_lps_mm": list(volumes.isocentre_lps_mm),
                },
            )
            assert created.status_code == 202, created.text
            jobs.append(created.json()["id"])
    return jobs


def test_registrations_queued_through_b_run_on_the_worker_and_a_killed_workers_job_runs_again(
    replicas: Replicas, volumes: Volumes
) -> None:
    job_ids = _queue_through_b(replicas, volumes, 2)
    time.sleep(0.5)  # the replicas leave them queued: they run no jobs themselves
    assert {job.status for job in _jobs(replicas, job_ids).values()} == {"queued"}

    doomed = _start_worker(replicas, "doomed")
    survivor: subprocess.Popen[bytes] | None = None
    try:
        killed = kill_mid_job(
            lambda: _jobs(replicas, job_ids).values(),
            doomed,
            replicas.folder / "doomed.log",
            timeout_s=_JOB_TIMEOUT_S,
        )
        survivor = _start_worker(replicas, "survivor")
        jobs = _wait_finished(replicas, job_ids)
    finally:
        for process in (doomed, survivor):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
    # The killed worker's job was run again by the survivor, never stuck "running".
    assert survivor is not None
    for job in jobs.values():
        assert job.status == "completed", job.reason
        assert f":{survivor.pid}:" in (job.lease_owner or "")
    # Queued through B, run by the worker, served by A.
    with replicas.a.client(replicas.tokens[RoleValues.THERAPIST]) as client:
        for job_id in job_ids:
            result = client.get(f"/api/v1/registrations/{job_id}/result")
            assert result.status_code == 200, result.text
            for axis, expected in zip(
                result.json()["couch_correction_lps_mm"], DISPLACEMENT_LPS_MM, strict=True
            ):
                assert abs(axis + expected) <= 0.5
        retried = client.get(f"/api/v1/registrations/{killed.id}").json()
    assert retried["attempts"] == 2
    assert [i["reason"] for i in retried["interruptions"]] == [
        "its worker process ended while it ran"
    ]
