"""Motion assessments: dome track, breathing analysis and decision on an uploaded fluoroscopy."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api import assessment as assessment_module
from api.enums import RoleValues
from igrt.errors import ProcessingError
from tests.api.conftest import InProcessApi, make_settings, start_in_process


@pytest.fixture
def big_api(tmp_path: Path) -> Iterator[InProcessApi]:
    """The app with room for the 60-frame recording."""
    yield from start_in_process(make_settings(tmp_path / "data", max_upload_bytes=50_000_000))


def _session_with_upload(api: InProcessApi, dicom: bytes, **session: Any) -> tuple[str, str]:
    patient = api.create_patient()
    session_id = str(api.create_session(patient["id"], **session)["id"])
    upload = api.upload(session_id, dicom)
    assert upload.status_code == 201, upload.text
    return session_id, str(upload.json()["id"])


def _assess(api: InProcessApi, session_id: str, upload_id: str, **body: Any) -> Any:
    return api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        json={"upload_id": upload_id, **body},
        headers=api.headers(RoleValues.CONSOLE),
    )


def test_a_recording_with_12_mm_breathing_gets_motion_management(
    big_api: InProcessApi,
    make_breathing_dicom: Callable[..., bytes],
    breathing_simulation: Any,
) -> None:
    session_id, upload_id = _session_with_upload(big_api, make_breathing_dicom())
    response = _assess(big_api, session_id, upload_id)
    assert response.status_code == 201, response.text
    assessment = response.json()
    assert response.headers["location"] == f"/api/v1/motion-assessments/{assessment['id']}"
    assert assessment["status"] == "completed"
    assert assessment["reason"] is None
    assert assessment["recommendation"] == "breath_hold_trial_next"  # > 5 mm, no breath holds
    assert assessment["tracked_fraction"] == 1.0
    track = assessment["track"]
    assert len(track) == 60
    truth = breathing_simulation.truth.apex_si_isocentre_mm
    measured = np.array([o["si_isocentre_mm"] for o in track])
    # The dome tracked at the isocentre plane follows the truth's shape within 1 mm.
    assert np.ptp(measured) == pytest.approx(np.ptp(truth), abs=1.0)
    decision = assessment["result"]["decision"]
    assert decision["recommendation"] == "breath_hold_trial_next"
    assert decision["protocol_version"] == assessment["protocol_version"]
    assert decision["rationale"]
    excursion = assessment["result"]["analysis"]["excursion_median_mm"]
    assert excursion == pytest.approx(np.ptp(truth), abs=1.5)

    again = big_api.client.get(
        f"/api/v1/motion-assessments/{assessment['id']}", headers=big_api.headers()
    )
    assert again.json() == assessment
    listed = big_api.client.get(
        f"/api/v1/sessions/{session_id}/motion-assessments", headers=big_api.headers()
    ).json()
    assert [a["id"] for a in listed["data"]] == [assessment["id"]]
    audit = big_api.client.get(
        "/api/v1/audit-events",
        params={"resource_id": assessment["id"]},
        headers=big_api.headers(RoleValues.PHYSICIST),
    ).json()["data"]
    assert audit[0]["detail"]["recommendation"] == "breath_hold_trial_next"


def test_too_short_a_recording_asks_to_reassess(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    session_id, upload_id = _session_with_upload(api, make_dicom())
    assessment = _assess(api, session_id, upload_id).json()
    assert assessment["status"] == "completed"
    assert assessment["recommendation"] == "reassess"
    assert len(assessment["track"]) == 10


def test_an_unknown_protocol_version_tracks_but_does_not_decide(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    session_id, upload_id = _session_with_upload(
        api, make_dicom(), protocol_version="site-x-2030.1"
    )
    assessment = _assess(api, session_id, upload_id).json()
    assert assessment["status"] == "tracked"
    assert "site-x-2030.1" in assessment["reason"]
    assert assessment["recommendation"] is None
    assert assessment["result"] is None
    assert len(assessment["track"]) == 10


def test_an_analysis_without_a_trustworthy_result_keeps_the_track_and_decides_nothing(
    api: InProcessApi, make_dicom: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id, upload_id = _session_with_upload(api, make_dicom())

    def refuse(*args: object, **kwargs: object) -> None:
        raise ProcessingError("no breathing cycle could be delimited")

    monkeypatch.setattr(assessment_module, "analyse_breathing", refuse)
    assessment = _assess(api, session_id, upload_id).json()
    assert assessment["status"] == "tracked"
    assert "no breathing cycle could be delimited" in assessment["reason"]
    assert assessment["recommendation"] is None
    assert assessment["result"] is None
    assert len(assessment["track"]) == 10


def test_bad_assessment_requests(api: InProcessApi, make_dicom: Callable[..., bytes]) -> None:
    session_id, upload_id = _session_with_upload(api, make_dicom())
    other_session = api.create_session(api.create_patient("MRN-OTHER")["id"])["id"]
    unknown = "00000000-0000-4000-8000-000000000000"
    cases = [
        (_assess(api, session_id, unknown), 404, "upload_id"),
        (_assess(api, unknown, upload_id), 404, "session_id"),
        (_assess(api, other_session, upload_id), 422, "upload_id"),
        (_assess(api, session_id, upload_id, context="yoga"), 422, "context"),
        (_assess(api, session_id, upload_id, extra=1), 422, "extra"),
    ]
    for response, status, field in cases:
        assert response.status_code == status, response.text
        assert response.json()["field"] == field
    unauthenticated = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments", json={"upload_id": upload_id}
    )
    assert unauthenticated.status_code == 401
    not_json = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        content=upload_id,
        headers={**api.headers(), "content-type": "text/plain"},
    )
    assert not_json.status_code == 415
    missing = api.client.get(f"/api/v1/motion-assessments/{unknown}", headers=api.headers())
    assert missing.status_code == 404
    assert missing.json()["field"] == "assessment_id"


def test_a_single_radiograph_cannot_be_assessed(api: InProcessApi, raw_bytes: bytes) -> None:
    patient = api.create_patient()
    session_id = api.create_session(patient["id"])["id"]
    one_frame = raw_bytes[: 256 * 256 * 2]
    upload = api.upload(
        session_id,
        one_frame,
        fmt="raw",
        content_type="application/octet-stream",
        n_frames=1,
        rows=256,
        columns=256,
        geometry_preset="xvi",
        binning=4,
        fps=5,
    )
    assert upload.status_code == 201, upload.text
    response = _assess(api, session_id, upload.json()["id"])
    assert response.status_code == 422
    assert response.json()["field"] == "upload_id"


def test_breath_hold_evidence_from_an_abc_session_or_a_spirometer_log(
    big_api: InProcessApi, make_breathing_dicom: Callable[..., bytes]
) -> None:
    session_id, upload_id = _session_with_upload(big_api, make_breathing_dicom())
    evidence = {
        "source": "abc_session",
        "n_holds": 3,
        "shortest_hold_s": 24.0,
        "largest_hold_drift_mm": 1.2,
        "hold_reproducibility_mm": 0.9,
    }
    response = _assess(big_api, session_id, upload_id, hold_evidence=evidence)
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["recommendation"] == "active_breathing_control"
    assert "ABC device session" in result["result"]["decision"]["inputs"]["hold_evidence"]["source"]
    assert result["result"]["margins"]["motion_source"] == "abc_residual"
    assert len(result["result"]["protocol"]["sha256"]) == 64
    poor = {**evidence, "source": "spirometer_log", "shortest_hold_s": 8.0}
    response = _assess(big_api, session_id, upload_id, hold_evidence=poor)
    assert response.json()["recommendation"] == "abdominal_compression"
    broken = {**evidence, "n_holds": 0}  # holds measured but none counted
    response = _assess(big_api, session_id, upload_id, hold_evidence=broken)
    assert response.status_code == 422
    assert response.json()["field"].startswith("hold_evidence")
