"""The quarantine (clinical staff only) and a session's received instances over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.dicom.receiver import DicomReceiver, Status
from api.enums import RoleValues
from tests.api.conftest import start_in_process
from tests.api.dicom.conftest import Clinic, identify, rt_files, send

pytestmark = pytest.mark.shared_data


def test_the_quarantine_and_a_sessions_instances_are_listed(
    receiver: DicomReceiver, clinic: Clinic, shared_data: Path, tmp_path: Path
) -> None:
    plan = rt_files(shared_data)["RP"]
    stranger = identify(
        plan,
        tmp_path / "stranger.dcm",
        PatientID="MRN-NOBODY",
        SOPInstanceUID="1.2.826.0.1.3680043.8.498.70003",
    )
    assert send(receiver.port, [plan, stranger]) == [Status.SUCCESS] * 2
    running = start_in_process(clinic.settings)
    api = next(running)
    try:
        client = api.client
        response = client.get("/api/v1/dicom-quarantine", headers=api.headers())
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["count"] == 1
        (item,) = body["data"]
        assert item["reason_code"] == "unknown_patient"
        assert item["patient_id_in_file"] == "MRN-NOBODY"
        assert item["kind"] == "rt_plan"
        assert item["calling_ae"] == "CTSIM"
        physicist = client.get(
            "/api/v1/dicom-quarantine", headers=api.headers(RoleValues.PHYSICIST)
        )
        assert physicist.status_code == 200
        console = client.get("/api/v1/dicom-quarantine", headers=api.headers(RoleValues.CONSOLE))
        assert console.status_code == 403
        assert client.get("/api/v1/dicom-quarantine").status_code == 401
        filed = client.get(
            f"/api/v1/sessions/{clinic.rt_simulation}/dicom-instances",
            headers=api.headers(RoleValues.CONSOLE),
        )
        assert filed.status_code == 200, filed.text
        assert [row["kind"] for row in filed.json()["data"]] == ["rt_plan"]
        assert filed.json()["data"][0]["processing_status"] == "stored"
        missing = client.get("/api/v1/sessions/nope/dicom-instances", headers=api.headers())
        assert missing.status_code == 404
    finally:
        running.close()
