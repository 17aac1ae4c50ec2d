"""Therapist review of motion assessments: approve, override with a reason, correct; immutable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from api.enums import RoleValues
from tests.api.conftest import InProcessApi


def _assessment(api: InProcessApi, dicom: bytes, **session: Any) -> dict[str, Any]:
    patient = api.create_patient()
    session_id = api.create_session(patient["id"], **session)["id"]
    upload = api.upload(session_id, dicom)
    assert upload.status_code == 201, upload.text
    response = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        json={"upload_id": upload.json()["id"]},
        headers=api.headers(RoleValues.CONSOLE),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _review(
    api: InProcessApi, assessment_id: str, role: RoleValues = RoleValues.THERAPIST, **body: Any
) -> Any:
    return api.client.post(
        f"/api/v1/motion-assessments/{assessment_id}/reviews", json=body, headers=api.headers(role)
    )


def test_approve_then_correct_with_an_override(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    assessment = _assessment(api, make_dicom())
    assert assessment["recommendation"] == "reassess"
    approved = _review(api, assessment["id"], outcome="approved")
    assert approved.status_code == 201, approved.text
    first = approved.json()
    assert first["decision"] == "reassess"
    assert first["reviewer_role"] == "therapist"
    assert first["standing"] is True
    assert approved.headers["location"] == f"/api/v1/reviews/{first['id']}"

    again = _review(api, assessment["id"], outcome="approved")
    assert again.status_code == 409
    assert again.json()["field"] == "supersedes_id"

    override = _review(
        api,
        assessment["id"],
        RoleValues.PHYSICIST,
        outcome="overridden",
        reason="Clinically regular breathing; 2 s was enough here.",
        decision="no_device",
        supersedes_id=first["id"],
    )
    assert override.status_code == 201, override.text
    second = override.json()
    assert second["supersedes_id"] == first["id"]
    stale = _review(
        api, assessment["id"], outcome="approved", supersedes_id=first["id"]
    )  # the first is no longer standing
    assert stale.status_code == 409

    listed = api.client.get(
        f"/api/v1/motion-assessments/{assessment['id']}/reviews",
        headers=api.headers(RoleValues.CONSOLE),
    ).json()
    assert [(r["id"], r["standing"]) for r in listed["data"]] == [
        (first["id"], False),
        (second["id"], True),
    ]
    one = api.client.get(f"/api/v1/reviews/{first['id']}", headers=api.headers()).json()
    assert one == {**first, "standing": False}

    audit = api.client.get(
        "/api/v1/audit-events", headers=api.headers(RoleValues.PHYSICIST)
    ).json()["data"]
    reviews = [e for e in audit if e["action"] == "review.create"]
    assert [e["resource_id"] for e in reviews] == [first["id"], second["id"]]
    assert reviews[1]["detail"]["decision"] == "no_device"
    assert reviews[1]["detail"]["computed_decision"] == "reassess"


def test_replacing_a_standing_review_needs_a_reason_even_to_approve(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    assessment = _assessment(api, make_dicom())
    override = _review(
        api,
        assessment["id"],
        RoleValues.PHYSICIAN,
        outcome="overridden",
        reason="ABC trial first",
        decision="no_device",
    ).json()
    silent = _review(api, assessment["id"], outcome="approved", supersedes_id=override["id"])
    assert silent.status_code == 422
    assert silent.json()["field"] == "reason"
    explained = _review(
        api,
        assessment["id"],
        outcome="approved",
        reason="Discussed with the physicist: the computed decision stands.",
        supersedes_id=override["id"],
    )
    assert explained.status_code == 201, explained.text
    assert explained.json()["decision"] == "reassess"


def test_a_console_cannot_review(api: InProcessApi, make_dicom: Callable[..., bytes]) -> None:
    assessment = _assessment(api, make_dicom())
    response = _review(api, assessment["id"], RoleValues.CONSOLE, outcome="approved")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"outcome": "overridden", "decision": "no_device"}, "reason"),
        ({"outcome": "overridden", "reason": "  ", "decision": "no_device"}, "reason"),
        ({"outcome": "overridden", "reason": "why"}, "decision"),
        ({"outcome": "overridden", "reason": "why", "decision": "teleport"}, "decision"),
        ({"outcome": "overridden", "reason": "why", "decision": "reassess"}, "decision"),
        ({"outcome": "approved", "decision": "no_device"}, "decision"),
        ({"outcome": "maybe"}, "outcome"),
        ({"outcome": "approved", "supersedes_id": "nope"}, "supersedes_id"),
        ({"outcome": "approved", "extra": 1}, "extra"),
    ],
)
def test_bad_reviews_name_the_field(
    api: InProcessApi, make_dicom: Callable[..., bytes], body: dict[str, Any], field: str
) -> None:
    assessment = _assessment(api, make_dicom())
    response = _review(api, assessment["id"], **body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_nothing_to_approve_without_a_recommendation(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    assessment = _assessment(api, make_dicom(), protocol_version="site-x-2030.1")
    assert assessment["recommendation"] is None
    refused = _review(api, assessment["id"], outcome="approved")
    assert refused.status_code == 422
    assert refused.json()["field"] == "outcome"
    override = _review(
        api, assessment["id"], outcome="overridden", reason="Site protocol", decision="reassess"
    )
    assert override.status_code == 201, override.text


def test_unknown_ids_are_404(api: InProcessApi) -> None:
    assert _review(api, "no-such-assessment", outcome="approved").status_code == 404
    assert api.client.get("/api/v1/reviews/nope", headers=api.headers()).status_code == 404
    listed = api.client.get("/api/v1/motion-assessments/nope/reviews", headers=api.headers())
    assert listed.status_code == 404


# --- issue 13: physician role -------------------------------------------------------------------


def test_device_choice_is_approved_by_a_physician_not_a_therapist(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    assessment = _assessment(api, make_dicom())
    therapist = _review(
        api,
        assessment["id"],
        RoleValues.THERAPIST,
        outcome="overridden",
        reason="looks regular",
        decision="no_device",
    )
    assert therapist.status_code == 403, therapist.text
    assert "physician" in therapist.json()["detail"]
    physician = _review(
        api,
        assessment["id"],
        RoleValues.PHYSICIAN,
        outcome="overridden",
        reason="looks regular",
        decision="no_device",
    )
    assert physician.status_code == 201, physician.text
    assert physician.json()["reviewer_role"] == "physician"
