"""The printable report of a motion assessment (``GET /motion-assessments/{id}/report.pdf``):
rebuilt from the stored track, equal to the decision on record, with the patient, the protocol
and the reviewer; refused when there is nothing (or nothing exact) to print.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api import assessment_report
from api.assessment import json_safe
from api.enums import RoleValues
from igrt.motion_assessment import MotionAssessment
from igrt.motion_report import ReportContext
from tests.api.conftest import PATIENT_ID, InProcessApi, make_settings, start_in_process

EVIDENCE = {
    "source": "abc_session",
    "n_holds": 3,
    "shortest_hold_s": 24.0,
    "largest_hold_drift_mm": 1.2,
    "hold_reproducibility_mm": 0.9,
}


@pytest.fixture
def big_api(tmp_path: Path) -> Iterator[InProcessApi]:
    yield from start_in_process(make_settings(tmp_path / "data", max_upload_bytes=50_000_000))


def _assessment(api: InProcessApi, dicom: bytes, **body: Any) -> dict[str, Any]:
    patient = api.client.post(
        "/api/v1/patients",
        json={"external_id": PATIENT_ID, "name": "Test^Patient"},
        headers=api.headers(),
    ).json()
    session_id = api.create_session(patient["id"])["id"]
    upload = api.upload(session_id, dicom)
    assert upload.status_code == 201, upload.text
    response = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        json={"upload_id": upload.json()["id"], **body},
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _report(api: InProcessApi, assessment_id: str, role: RoleValues = RoleValues.THERAPIST) -> Any:
    return api.client.get(
        f"/api/v1/motion-assessments/{assessment_id}/report.pdf", headers=api.headers(role)
    )


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[MotionAssessment, ReportContext]]:
    """What the route handed to the library's report writer."""
    calls: list[tuple[MotionAssessment, ReportContext]] = []
    original = assessment_report.write_assessment_pdf

    def spy(assessment: MotionAssessment, path: Path, context: ReportContext) -> Path:
        calls.append((assessment, context))
        return original(assessment, path, context)

    monkeypatch.setattr(assessment_report, "write_assessment_pdf", spy)
    return calls


@pytest.mark.parametrize("evidence", [None, EVIDENCE], ids=["free_breathing", "abc_evidence"])
def test_the_report_prints_the_decision_on_record_for_the_patient_and_reviewer(
    big_api: InProcessApi,
    make_breathing_dicom: Callable[..., bytes],
    printed: list[tuple[MotionAssessment, ReportContext]],
    evidence: dict[str, Any] | None,
) -> None:
    api = big_api
    body = {} if evidence is None else {"hold_evidence": evidence}
    assessment = _assessment(api, make_breathing_dicom(), **body)
    assert assessment["status"] == "completed"
    review = api.client.post(
        f"/api/v1/motion-assessments/{assessment['id']}/reviews",
        json={"outcome": "approved"},
        headers=api.headers(RoleValues.PHYSICIST),
    )
    assert review.status_code == 201, review.text

    response = _report(api, assessment["id"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert f"motion-assessment-{assessment['id']}.pdf" in response.headers["content-disposition"]
    assert response.content.startswith(b"%PDF")
    assert response.content.count(b"/Type /Page\n") + response.content.count(b"/Type /Page ") >= 2

    rebuilt, context = printed[-1]
    stored = assessment["result"]
    assert json_safe(rebuilt.decision.to_dict()) == stored["decision"]
    assert rebuilt.decision.recommendation.value == assessment["recommendation"]
    assert json_safe(rebuilt.margins.to_dict() if rebuilt.margins else None) == stored["margins"]
    assert (context.patient_id, context.patient_name) == (PATIENT_ID, "Test^Patient")
    assert context.reviewer is not None
    assert "(physicist), approved" in context.reviewer
    events = api.client.get(
        "/api/v1/audit-events",
        params={"resource_id": assessment["id"]},
        headers=api.headers(RoleValues.PHYSICIST),
    ).json()["data"]
    assert "motion_assessment_report.read" in [event["action"] for event in events]


def test_no_report_without_a_decision_or_for_a_console(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    patient = api.create_patient()
    session_id = api.create_session(patient["id"], protocol_version="site-x-2030.1")["id"]
    upload = api.upload(session_id, make_dicom()).json()
    tracked = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        json={"upload_id": upload["id"]},
        headers=api.headers(),
    ).json()
    assert tracked["status"] == "tracked"
    response = _report(api, tracked["id"])
    assert response.status_code == 409
    assert "no decision to report" in response.json()["detail"]
    assert _report(api, tracked["id"], RoleValues.CONSOLE).status_code == 403
    assert _report(api, "nowhere").status_code == 404


def test_a_decision_that_the_stored_track_does_not_reproduce_is_not_printed(
    api: InProcessApi, make_dicom: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = api.create_patient()
    session_id = api.create_session(patient["id"])["id"]
    upload = api.upload(session_id, make_dicom()).json()
    assessment = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        json={"upload_id": upload["id"]},
        headers=api.headers(),
    ).json()
    assert assessment["status"] == "completed"
    assert _report(api, assessment["id"]).status_code == 200

    # A stored track that no longer gives the stored decision (e.g. a changed tracker export).
    original = assessment_report._observation

    def shifted(stored: dict[str, Any]) -> Any:
        moved = dict(stored)
        if moved.get("si_isocentre_mm") is not None:
            moved["si_isocentre_mm"] = moved["si_isocentre_mm"] * (1 + stored["frame_index"])
        return original(moved)

    monkeypatch.setattr(assessment_report, "_observation", shifted)
    response = _report(api, assessment["id"])
    assert response.status_code == 409, response.text
    assert "cannot be reproduced" in response.json()["detail"]
