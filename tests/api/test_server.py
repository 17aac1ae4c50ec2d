"""End to end against a real uvicorn server on loopback: first start, work, crash, restart."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from api.demo import DEMO_EXTERNAL_ID
from tests.api.live_server import LiveServer, service_environment

EXTERNAL_ID = "MRN-E2E-0001"
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
    token = result.stdout.strip()
    assert token.startswith("igrt_"), result
    assert "shown only now" in result.stderr
    return token


def test_everything_acknowledged_survives_a_crash_and_restart(
    tmp_path: Path, database_url: str, make_breathing_dicom: Callable[..., bytes]
) -> None:
    data_dir = tmp_path / "data"
    env = service_environment(
        data_dir,
        database_url=database_url,
        demo_data="true",
        demo_binning="4",
        demo_duration_s="30",
        demo_fps="2",
        log_format="json",
    )
    physicist = _cli_token(env, "physicist")  # before the first start: the CLI migrates
    server = LiveServer(env, tmp_path / "server.log").start()
    try:
        # A physicist token existed already, so no first-run token; the demo patient was made.
        assert not (data_dir / "first-run-token.txt").exists()
        with server.client(physicist) as client:
            demo = client.get("/api/v1/patients", params={"external_id": DEMO_EXTERNAL_ID})
            assert demo.status_code == 200
            assert demo.json()["count"] == 1
            assert demo.json()["data"][0]["is_demo"] is True
            demo_session = client.get(
                f"/api/v1/patients/{demo.json()['data'][0]['id']}/sessions"
            ).json()["data"][0]
            demo_assessments = client.get(
                f"/api/v1/sessions/{demo_session['id']}/motion-assessments"
            ).json()["data"]
            assert [a["recommendation"] for a in demo_assessments] == ["breath_hold_trial_next"]

            patient = client.post("/api/v1/patients", json={"external_id": EXTERNAL_ID})
            assert patient.status_code == 201, patient.text
            patient_id = patient.json()["id"]
            assert patient.headers["location"] == f"/api/v1/patients/{patient_id}"
            session = client.post(
                f"/api/v1/patients/{patient_id}/sessions",
                json={"kind": "simulation", "patient_position": "HFS"},
            )
            assert session.status_code == 201, session.text
            session_id = session.json()["id"]
            dicom = make_breathing_dicom(EXTERNAL_ID)
            upload = client.post(
                f"/api/v1/sessions/{session_id}/uploads/fluoroscopy",
                files={"file": ("fluoro.dcm", dicom, "application/dicom")},
                data={"format": "dicom"},
            )
            assert upload.status_code == 201, upload.text
            upload_id = upload.json()["id"]
            assert upload.json()["sha256"] == hashlib.sha256(dicom).hexdigest()
            assert upload.json()["n_frames"] == 60
            assert upload.json()["geometry_source"] == "file"
            assessment = client.post(
                f"/api/v1/sessions/{session_id}/motion-assessments",
                json={"upload_id": upload_id},
            )
            assert assessment.status_code == 201, assessment.text
            assert assessment.json()["recommendation"] == "breath_hold_trial_next"
            assessment_id = assessment.json()["id"]
            before = {
                "patient": client.get(f"/api/v1/patients/{patient_id}").json(),
                "session": client.get(f"/api/v1/sessions/{session_id}").json(),
                "upload": client.get(f"/api/v1/uploads/{upload_id}").json(),
                "assessment": client.get(f"/api/v1/motion-assessments/{assessment_id}").json(),
            }
    finally:
        server.kill()  # no graceful shutdown: acknowledged means on disk

    server = LiveServer(env, tmp_path / "server.log").start()
    try:
        with server.client(physicist) as client:
            assert client.get("/readyz").json()["status"] == "ready"
            after = {
                "patient": client.get(f"/api/v1/patients/{patient_id}").json(),
                "session": client.get(f"/api/v1/sessions/{session_id}").json(),
                "upload": client.get(f"/api/v1/uploads/{upload_id}").json(),
                "assessment": client.get(f"/api/v1/motion-assessments/{assessment_id}").json(),
            }
            assert after == before
            listed = client.get(f"/api/v1/sessions/{session_id}/uploads").json()
            assert [u["id"] for u in listed["data"]] == [upload_id]
            downloaded = client.get(f"/api/v1/uploads/{upload_id}/file")
            assert downloaded.status_code == 200
            assert downloaded.content == dicom
            assert downloaded.headers["etag"] == f'"{hashlib.sha256(dicom).hexdigest()}"'
            assert client.get("/api/v1/patients").json()["count"] == 2  # no second demo
            audit = client.get("/api/v1/audit-events").json()["data"]
            actions = {(e["action"], e["resource_id"]) for e in audit}
            assert ("patient.create", patient_id) in actions
            assert ("session.create", session_id) in actions
            assert ("upload.create", upload_id) in actions
            assert ("motion_assessment.create", assessment_id) in actions
    finally:
        assert server.stop(), server.log()[-2000:]

    log = server.log()
    assert EXTERNAL_ID not in log, "a patient identifier reached the logs"
    assert physicist not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("message") == "request"]
    assert requests
    assert all(line.get("request_id") for line in requests)
    assert {"/api/v1/patients/{patient_id}", "/api/v1/uploads/{upload_id}/file"} <= {
        line["route"] for line in requests
    }


def test_first_start_writes_a_private_therapist_token(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = service_environment(data_dir, demo_data="false")
    server = LiveServer(env, tmp_path / "server.log").start()
    try:
        token_file = data_dir / "first-run-token.txt"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().split()[-1]
        with server.client(token) as client:
            me = client.get("/api/v1/me")
            assert me.status_code == 200
            assert me.json()["role"] == "therapist"
            assert client.get("/api/v1/patients").json()["count"] == 0
    finally:
        assert server.stop(), server.log()[-2000:]
    assert token not in server.log()


@pytest.mark.parametrize("setting", ["demo_data", "first_run_token"])
def test_settings_parse_from_the_environment(
    setting: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from api.core.config import Settings

    monkeypatch.setenv("IGRT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(f"IGRT_{setting.upper()}", "false")
    settings = Settings()
    assert getattr(settings, setting) is False
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'igrt.sqlite3'}"
