"""Registration through a real uvicorn server: upload CT and CBCT, run a job, crash, restart."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.api.conftest import DISPLACEMENT_LPS_MM, Volumes
from tests.api.live_server import LiveServer, service_environment, upload_registration_pair
from tests.api.test_registrations import POLL_TIMEOUT_S

_TOKEN_CREATE = (sys.executable, "-m", "igrt.cli.main", "token", "create")


def _cli_token(env: dict[str, str], role: str) -> str:
    result = subprocess.run(
        [*_TOKEN_CREATE, "--role", role, "--name", f"e2e {role}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def _wait(client: httpx.Client, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        job = dict(client.get(url).json())
        if job["status"] in ("completed", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_registration_job_over_http_survives_a_crash(tmp_path: Path, volumes: Volumes) -> None:
    env = service_environment(tmp_path / "data", demo_data="false", log_format="json")
    console = _cli_token(env, "console")
    therapist = _cli_token(env, "therapist")
    server = LiveServer(env, tmp_path / "server.log").start()
    try:
        session_id, ids = upload_registration_pair(
            server, therapist, console, volumes.planning_zip, volumes.cbct_mha, "MRN-TEST-0001"
        )
        with server.client(console) as client:
            started = time.monotonic()
            created = client.post(
                f"/api/v1/sessions/{session_id}/registrations",
                json={
                    "planning_ct_upload_id": ids["planning_ct"],
                    "cbct_upload_id": ids["cbct"],
                    "isocentre_lps_mm": list(volumes.isocentre_lps_mm),
                },
            )
            assert created.status_code == 202, created.text
            location = created.headers["location"]
            job = _wait(client, location)
            assert job["status"] == "completed", job
            assert time.monotonic() - started < 30.0
            result = client.get(f"{location}/result").json()
            np.testing.assert_allclose(
                result["couch_correction_lps_mm"], -np.array(DISPLACEMENT_LPS_MM), atol=0.5
            )
            assert result["repositioning"]["required"] is True
            overlay = client.get(f"{location}/overlays/coronal").content
            reg = client.get(f"{location}/dicom-reg").content
        with server.client(therapist) as client:
            review = client.post(f"{location}/reviews", json={"outcome": "approved"})
            assert review.status_code == 201, review.text
            assert review.json()["decision"] == "reposition"
        server.kill()  # a crash: no graceful shutdown

        server.start()
        with server.client(therapist) as client:
            again = client.get(location)
            assert again.status_code == 200
            assert again.json()["status"] == "completed"
            assert again.json()["finished_at"] == job["finished_at"]
            assert client.get(f"{location}/result").json() == result
            assert client.get(f"{location}/overlays/coronal").content == overlay
            assert client.get(f"{location}/dicom-reg").content == reg
            reviews = client.get(f"{location}/reviews").json()
            assert [r["id"] for r in reviews["data"]] == [review.json()["id"]]
            volumes_listed = client.get(f"/api/v1/sessions/{session_id}/volumes").json()
            assert volumes_listed["count"] == 2
    finally:
        server.stop()
    assert "MRN-TEST-0001" not in server.log()
