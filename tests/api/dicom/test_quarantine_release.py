"""Releasing a quarantined series to a session, or discarding it (physicists, audited):
``POST /dicom-quarantine/{id}/release`` and ``/discard``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.dicom.receiver import DicomReceiver, Status
from api.enums import RoleValues
from tests.api.conftest import InProcessApi, start_in_process
from tests.api.dicom.conftest import Clinic, send

LATE = "MRN-LATE-0007"


@pytest.fixture
def held(
    receiver: DicomReceiver,
    clinic: Clinic,
    make_dicom: Callable[..., bytes],
    tmp_path: Path,
) -> Iterator[tuple[InProcessApi, list[dict[str, Any]]]]:
    """Two fluoroscopy objects of a patient not registered yet, quarantined; the API."""
    paths = []
    for index, patient in enumerate((LATE, "MRN-NEVER")):
        path = tmp_path / f"fluoro{index}.dcm"
        path.write_bytes(make_dicom(patient_id=patient))
        paths.append(path)
    assert send(receiver.port, paths, calling="XVI") == [Status.SUCCESS] * 2
    running = start_in_process(clinic.settings)
    api = next(running)
    try:
        items = api.client.get("/api/v1/dicom-quarantine", headers=api.headers()).json()["data"]
        assert sorted(item["reason_code"] for item in items) == ["unknown_patient"] * 2
        yield api, sorted(items, key=lambda item: item["patient_id_in_file"])
    finally:
        running.close()


def _decide(api: InProcessApi, item_id: str, action: str, role: RoleValues, **body: Any) -> Any:
    return api.client.post(
        f"/api/v1/dicom-quarantine/{item_id}/{action}", json=body, headers=api.headers(role)
    )


def _late_patient_session(api: InProcessApi) -> str:
    patient = api.client.post(
        "/api/v1/patients",
        json={"external_id": LATE, "name": "Patient Test"},
        headers=api.headers(),
    ).json()
    return str(api.create_session(patient["id"], kind="fraction", fraction_number=1)["id"])


def test_a_physicist_releases_a_series_to_a_session_and_it_is_processed(
    held: tuple[InProcessApi, list[dict[str, Any]]],
) -> None:
    api, (late, _never) = held
    session_id = _late_patient_session(api)
    reason = "patient registered after the images arrived; images checked"
    for role in (RoleValues.CONSOLE, RoleValues.THERAPIST):
        refused = _decide(api, late["id"], "release", role, session_id=session_id, reason=reason)
        assert refused.status_code == 403, refused.text
    response = _decide(
        api, late["id"], "release", RoleValues.PHYSICIST, session_id=session_id, reason=reason
    )
    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["action"] == "released"
    assert decision["session_id"] == session_id
    (resolution,) = decision["data"]
    assert resolution["quarantine_item_id"] == late["id"]
    assert resolution["reason"] == reason

    service = api.client.app.state.service  # type: ignore[attr-defined]
    assert service.dicom_processor().wait_idle(60.0)
    filed = api.client.get(
        f"/api/v1/sessions/{session_id}/dicom-instances", headers=api.headers()
    ).json()["data"]
    assert [row["id"] for row in filed] == [resolution["instance_id"]]
    (instance,) = filed
    assert instance["sop_instance_uid"] == late["sop_instance_uid"]
    assert instance["processing_status"] == "done", instance
    assert instance["n_frames"] == 10
    assessment = api.client.get(
        f"/api/v1/motion-assessments/{instance['assessment_id']}", headers=api.headers()
    )
    assert assessment.status_code == 200, assessment.text

    listed = api.client.get("/api/v1/dicom-quarantine", headers=api.headers()).json()["data"]
    by_id = {item["id"]: item for item in listed}
    assert by_id[late["id"]]["resolution"]["action"] == "released"
    assert by_id[_never["id"]]["resolution"] is None
    again = _decide(
        api, late["id"], "release", RoleValues.PHYSICIST, session_id=session_id, reason=reason
    )
    assert again.status_code == 409, again.text
    events = api.client.get(
        "/api/v1/audit-events",
        params={"resource_id": late["id"]},
        headers=api.headers(RoleValues.PHYSICIST),
    ).json()["data"]
    released = [event for event in events if event["action"] == "dicom.released"]
    assert len(released) == 1
    assert released[0]["detail"]["session_id"] == session_id


def test_a_release_to_another_patients_session_changes_nothing(
    held: tuple[InProcessApi, list[dict[str, Any]]], clinic: Clinic
) -> None:
    api, (late, _never) = held
    response = _decide(
        api,
        late["id"],
        "release",
        RoleValues.PHYSICIST,
        session_id=clinic.fluoro_simulation,  # MRN-TEST-0001's, not MRN-LATE-0007's
        reason="wrong choice",
    )
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "patient_mismatch"
    listed = api.client.get("/api/v1/dicom-quarantine", headers=api.headers()).json()["data"]
    assert all(item["resolution"] is None for item in listed)
    filed = api.client.get(
        f"/api/v1/sessions/{clinic.fluoro_simulation}/dicom-instances", headers=api.headers()
    ).json()
    assert filed["count"] == 0
    bad = [
        ({"session_id": "nowhere", "reason": "x"}, 404),
        ({"session_id": clinic.fluoro_simulation, "reason": "  "}, 422),
        ({"session_id": clinic.fluoro_simulation}, 422),
    ]
    for body, status in bad:
        answer = _decide(api, late["id"], "release", RoleValues.PHYSICIST, **body)
        assert answer.status_code == status, (body, answer.text)
    missing = _decide(api, "nowhere", "release", RoleValues.PHYSICIST, session_id="x", reason="x")
    assert missing.status_code == 404


def test_a_discarded_series_stays_attached_to_nothing(
    held: tuple[InProcessApi, list[dict[str, Any]]],
) -> None:
    api, (_late, never) = held
    reason = "test images from the service engineer"
    assert (
        _decide(api, never["id"], "discard", RoleValues.THERAPIST, reason=reason).status_code == 403
    )
    response = _decide(api, never["id"], "discard", RoleValues.PHYSICIST, reason=reason)
    assert response.status_code == 200, response.text
    (resolution,) = response.json()["data"]
    assert (resolution["action"], resolution["session_id"], resolution["instance_id"]) == (
        "discarded",
        None,
        None,
    )
    assert (
        _decide(api, never["id"], "discard", RoleValues.PHYSICIST, reason=reason).status_code == 409
    )
    session_id = _late_patient_session(api)
    assert (
        _decide(
            api, never["id"], "release", RoleValues.PHYSICIST, session_id=session_id, reason="x"
        ).status_code
        == 409
    )
    events = api.client.get(
        "/api/v1/audit-events",
        params={"resource_id": never["id"]},
        headers=api.headers(RoleValues.PHYSICIST),
    ).json()["data"]
    assert [event["action"] for event in events].count("dicom.discarded") == 1
