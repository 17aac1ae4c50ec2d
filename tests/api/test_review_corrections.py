"""Registration reviews with an edited couch correction (``couch_correction_iec_support_mm``).

A correction is accepted only in an override whose decision is ``reposition`` (which may then
equal the computed decision), is stored and returned, and goes to the audit trail and the
session history. The registrations are finished jobs written straight into the database
(``fake_results``): the review route reads only their status, quality and flag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from api.enums import RegistrationStatusValues, RoleValues
from tests.api.conftest import InProcessApi
from tests.api.fake_results import add_registration

FIELD = "couch_correction_iec_support_mm"
REASON = "Matched on the dome; the bony match pulled 2 mm towards the spine."


def _session(api: InProcessApi) -> str:
    patient = api.create_patient()
    return str(api.create_session(patient["id"], kind="fraction", fraction_number=1)["id"])


def _review(
    api: InProcessApi, registration_id: str, role: RoleValues = RoleValues.THERAPIST, **body: Any
) -> Any:
    return api.client.post(
        f"/api/v1/registrations/{registration_id}/reviews", json=body, headers=api.headers(role)
    )


def _reviews(api: InProcessApi, registration_id: str) -> list[dict[str, Any]]:
    response = api.client.get(
        f"/api/v1/registrations/{registration_id}/reviews", headers=api.headers()
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def _override(**extra: Any) -> dict[str, Any]:
    return {"outcome": "overridden", "decision": "reposition", "reason": REASON, **extra}


def test_an_edited_correction_is_stored_returned_and_audited(api: InProcessApi) -> None:
    registration = add_registration(api, _session(api), repositioning_required=True)
    # The computed decision is reposition: an override with the same decision is allowed only
    # because it carries the correction actually applied.
    created = _review(
        api, registration, RoleValues.PHYSICIST, **_override(**{FIELD: [1, -2.5, 3.25]})
    )
    assert created.status_code == 201, created.text
    review = created.json()
    assert review[FIELD] == [1.0, -2.5, 3.25]
    assert review["decision"] == "reposition"
    assert review["outcome"] == "overridden"
    assert review["standing"] is True

    fetched = api.client.get(created.headers["location"], headers=api.headers(RoleValues.CONSOLE))
    assert fetched.json() == review
    assert _reviews(api, registration) == [review]

    audit = api.client.get(
        "/api/v1/audit-events",
        params={"resource_id": review["id"]},
        headers=api.headers(RoleValues.PHYSICIST),
    ).json()["data"]
    assert [e["action"] for e in audit] == ["review.create"]
    assert audit[0]["detail"][FIELD] == [1.0, -2.5, 3.25]
    assert audit[0]["detail"]["computed_decision"] == "reposition"


def test_reviews_without_a_correction_say_so(api: InProcessApi) -> None:
    registration = add_registration(api, _session(api), repositioning_required=True)
    approved = _review(api, registration, outcome="approved")
    assert approved.status_code == 201, approved.text
    assert approved.json()[FIELD] is None
    # Sending null is the same as sending nothing: the plain same-decision override is refused.
    same = _review(
        api, registration, **_override(**{FIELD: None}), supersedes_id=approved.json()["id"]
    )
    assert same.status_code == 422, same.text
    assert same.json()["field"] == "decision"


def test_a_correction_may_supersede_an_approval(api: InProcessApi) -> None:
    registration = add_registration(api, _session(api), repositioning_required=True)
    approved = _review(api, registration, outcome="approved").json()
    corrected = _review(
        api,
        registration,
        RoleValues.PHYSICIST,
        **_override(**{FIELD: [0.0, 0.0, -4.0]}),
        supersedes_id=approved["id"],
    )
    assert corrected.status_code == 201, corrected.text
    assert [(r["id"], r["standing"], r[FIELD]) for r in _reviews(api, registration)] == [
        (approved["id"], False, None),
        (corrected.json()["id"], True, [0.0, 0.0, -4.0]),
    ]
    # And a later correction of the correction.
    again = _review(
        api,
        registration,
        **_override(**{FIELD: [0.5, 0.0, -3.5]}),
        supersedes_id=corrected.json()["id"],
    )
    assert again.status_code == 201, again.text
    assert [r["standing"] for r in _reviews(api, registration)] == [False, False, True]


def test_a_correction_overrides_whatever_was_computed(api: InProcessApi) -> None:
    session_id = _session(api)
    jobs = {
        "computed no_repositioning": (False, RegistrationStatusValues.COMPLETED, "good"),
        "failed job, nothing computed": (None, RegistrationStatusValues.FAILED, None),
        "failed quality, nothing computed": (True, RegistrationStatusValues.COMPLETED, "failed"),
    }
    for case, (flag, status, quality) in jobs.items():
        registration = add_registration(
            api, session_id, status=status, repositioning_required=flag, quality=quality
        )
        created = _review(api, registration, **_override(**{FIELD: [-1.0, 2.0, 0.0]}))
        assert created.status_code == 201, (case, created.text)
        assert created.json()[FIELD] == [-1.0, 2.0, 0.0], case
        assert created.json()["decision"] == "reposition", case


MISPLACED_CORRECTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "approval": ({"outcome": "approved", FIELD: [1.0, 2.0, 3.0]}, FIELD),
    "no_repositioning": (_override(decision="no_repositioning", **{FIELD: [1.0, 2.0, 3.0]}), FIELD),
    "repeat_cbct": (_override(decision="repeat_cbct", **{FIELD: [1.0, 2.0, 3.0]}), FIELD),
    "no decision": (
        {"outcome": "overridden", "reason": REASON, FIELD: [1.0, 2.0, 3.0]},
        "decision",
    ),
    "no reason": (_override(reason=None, **{FIELD: [1.0, 2.0, 3.0]}), "reason"),
}


def test_a_correction_needs_an_override_to_reposition(api: InProcessApi) -> None:
    registration = add_registration(api, _session(api), repositioning_required=False)
    for case, (body, field) in MISPLACED_CORRECTIONS.items():
        refused = _review(api, registration, **body)
        assert refused.status_code == 422, (case, refused.text)
        assert refused.json()["field"] == field, case
    assert _reviews(api, registration) == []


BAD_CORRECTIONS: dict[str, Any] = {
    "beyond +100 mm": [0.0, 0.0, 100.001],
    "beyond -100 mm": [-100.5, 0.0, 0.0],
    "two values": [1.0, 2.0],
    "four values": [1.0, 2.0, 3.0, 4.0],
    "empty": [],
    "a string": [1.0, "two", 3.0],
    "not a list": 5.0,
    "an object": {"x": 1.0, "y": 2.0, "z": 3.0},
}


def test_corrections_must_be_three_finite_numbers_within_100_mm(api: InProcessApi) -> None:
    registration = add_registration(api, _session(api), repositioning_required=True)
    for case, value in BAD_CORRECTIONS.items():
        refused = _review(api, registration, **_override(**{FIELD: value}))
        assert refused.status_code == 422, (case, refused.text)
        assert refused.json()["code"] == "invalid_input", case
        assert refused.json()["field"].startswith(FIELD), (case, refused.json())
    # Non-finite numbers: JSON has none, but Python's parser reads these tokens.
    for token in ("NaN", "Infinity", "-Infinity", "1e400"):
        content = (
            '{"outcome": "overridden", "decision": "reposition", "reason": "r", '
            f'"{FIELD}": [0.0, {token}, 0.0]}}'
        )
        refused = api.client.post(
            f"/api/v1/registrations/{registration}/reviews",
            content=content.encode(),
            headers={**api.headers(), "Content-Type": "application/json"},
        )
        assert refused.status_code == 422, (token, refused.text)
        assert refused.json()["field"].startswith(FIELD), (token, refused.json())
    assert _reviews(api, registration) == []
    # The bounds themselves are allowed.
    edge = _review(api, registration, **_override(**{FIELD: [-100, 100, 0]}))
    assert edge.status_code == 201, edge.text
    assert edge.json()[FIELD] == [-100.0, 100.0, 0.0]


def test_a_console_cannot_correct(api: InProcessApi) -> None:
    registration = add_registration(api, _session(api), repositioning_required=True)
    refused = _review(api, registration, RoleValues.CONSOLE, **_override(**{FIELD: [1, 2, 3]}))
    assert refused.status_code == 403
    assert _reviews(api, registration) == []


def test_a_running_registration_cannot_be_corrected(api: InProcessApi) -> None:
    registration = add_registration(api, _session(api), status=RegistrationStatusValues.RUNNING)
    refused = _review(api, registration, **_override(**{FIELD: [1, 2, 3]}))
    assert refused.status_code == 409, refused.text


def test_motion_assessment_reviews_take_no_correction(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    patient = api.create_patient()
    session_id = api.create_session(patient["id"])["id"]
    upload = api.upload(session_id, make_dicom())
    assert upload.status_code == 201, upload.text
    assessment = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        json={"upload_id": upload.json()["id"]},
        headers=api.headers(RoleValues.CONSOLE),
    ).json()
    url = f"/api/v1/motion-assessments/{assessment['id']}/reviews"
    bodies = [
        {"outcome": "approved", FIELD: [1, 2, 3]},
        {"outcome": "overridden", "decision": "no_device", "reason": REASON, FIELD: [1, 2, 3]},
        {"outcome": "overridden", "decision": "reposition", "reason": REASON, FIELD: [1, 2, 3]},
    ]
    for body in bodies:
        refused = api.client.post(url, json=body, headers=api.headers())
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["field"] == FIELD, body
    assert api.client.get(url, headers=api.headers()).json()["count"] == 0
    # Without the correction the same approval goes through.
    approved = api.client.post(url, json={"outcome": "approved"}, headers=api.headers())
    assert approved.status_code == 201, approved.text
    assert approved.json()[FIELD] is None


def test_approving_a_questionable_registration_needs_a_reason(api: InProcessApi) -> None:
    registration_id = add_registration(api, _session(api), quality="questionable")
    bare = _review(api, registration_id, outcome="approved")
    assert bare.status_code == 422, bare.text
    assert bare.json()["field"] == "reason"
    reasoned = _review(api, registration_id, outcome="approved", reason="dome overlay checked")
    assert reasoned.status_code == 201, reasoned.text
