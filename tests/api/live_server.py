"""A real ``igrt serve`` (uvicorn) in a subprocess on a free loopback port; ``igrt worker``
processes killed mid-job."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from api.db.models import RegistrationJob

STARTUP_TIMEOUT_S = 60.0
_SERVE = (sys.executable, "-m", "igrt.cli.main", "serve")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_environment(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a test server: no inherited IGRT_* settings but the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IGRT_")}
    if "IGRT_SHARED_DATA" in os.environ:
        env["IGRT_SHARED_DATA"] = os.environ["IGRT_SHARED_DATA"]
    env["IGRT_DATA_DIR"] = str(data_dir)
    env.update({f"IGRT_{key.upper()}": value for key, value in settings.items()})
    return env


class LiveServer:
    """``python -m igrt.cli.main serve`` started and stopped by the test, by its own pid."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        """Start and wait until ``/healthz`` answers (bounded by STARTUP_TIMEOUT_S)."""
        self.port = free_port()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*_SERVE, "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the server did not answer within {STARTUP_TIMEOUT_S} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, like a crash or a power cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> bool:
        """SIGTERM and wait (SIGKILL after 10 s); whether the shutdown was graceful.

        uvicorn re-raises the signal after its graceful shutdown, so the exit code is -SIGTERM.
        """
        if self.process is None:
            return True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
                return False
        return self.process.returncode in (0, -signal.SIGTERM) and (
            "Application shutdown complete" in self.log()
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0)


def upload_registration_pair(
    server: LiveServer,
    therapist: str,
    console: str,
    planning_zip: bytes,
    cbct_mha: bytes,
    external_id: str,
) -> tuple[str, dict[str, str]]:
    """A patient, a fraction, its planning CT (by the therapist) and CBCT (by the console).

    Returns the session id and the upload ids by kind (``planning_ct``, ``cbct``).
    """
    with server.client(therapist) as client:
        patient = client.post("/api/v1/patients", json={"external_id": external_id})
        assert patient.status_code == 201, patient.text
        session = client.post(
            f"/api/v1/patients/{patient.json()['id']}/sessions",
            json={"kind": "fraction", "fraction_number": 1, "patient_position": "HFS"},
        )
        assert session.status_code == 201, session.text
    session_id = str(session.json()["id"])
    ids = {}
    # The planning department (a person) uploads the planning CT, the console its CBCT.
    for token, kind, fmt, content, content_type in (
        (therapist, "planning_ct", "dicom_zip", planning_zip, "application/zip"),
        (console, "cbct", "mha", cbct_mha, "application/octet-stream"),
    ):
        with server.client(token) as uploader:
            upload = uploader.post(
                f"/api/v1/sessions/{session_id}/uploads/volume",
                files={"file": (f"{kind}.bin", content, content_type)},
                data={"kind": kind, "format": fmt},
            )
        assert upload.status_code == 201, upload.text
        ids[kind] = str(upload.json()["id"])
    return session_id, ids


def kill_mid_job(
    read_jobs: Callable[[], Iterable[RegistrationJob]],
    worker: subprocess.Popen[bytes],
    log: Path,
    *,
    attempt: int = 1,
    timeout_s: float = 60.0,
) -> RegistrationJob:
    """Wait until ``worker`` runs attempt ``attempt`` of a job, then kill -9 it; that job.

    ``read_jobs`` reads the jobs to watch from the database; ``log`` is the worker's output,
    shown when it ends by itself before claiming one.
    """
    deadline = time.monotonic() + timeout_s
    while not (
        running := [
            job for job in read_jobs() if job.status == "running" and job.attempts == attempt
        ]
    ):
        assert worker.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the worker never claimed a job"
        time.sleep(0.01)
    worker.kill()  # kill -9 mid-job: no lease released, no result written
    worker.wait(10)
    [killed] = running
    assert f":{worker.pid}:" in (killed.lease_owner or "")
    return killed
