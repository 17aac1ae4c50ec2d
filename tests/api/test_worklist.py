"""The review worklist (statuses, counts, filters) and a session's history.

One app holds a worklist with every status (built once for the module; the tests only read):

==============  =====================================================  ========================
session         results                                                status
==============  =====================================================  ========================
``none``        nothing (an alert event of another resource type)      no_results
``awaiting``    a motion assessment, unreviewed                        awaiting_review
``reviewed``    two registrations (one flagged), both approved         reviewed
``flagged``     a flagged and a failed registration, a queued one      flagged_for_repositioning
``alert``       a flagged registration unreviewed, one reviewed twice  alert_during_monitoring
                (approved, then overridden with a couch correction),
                an alert raised and cleared on its stream
``cleared``     only a ``stream.alert_cleared`` event                  no_results
==============  =====================================================  ========================

Registrations and alert events are written straight into the database (``fake_results``);
the motion assessment and the reviews go through the API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from api.enums import RegistrationStatusValues, RoleValues, WorklistStatusValues
from tests.api.conftest import InProcessApi, make_settings, start_in_process
from tests.api.fake_results import add_audit_event, add_registration

WORKLIST = "/api/v1/worklist"
CORRECTION_REASON = "Shift applied from the soft-tissue match; bony match disagreed."


@dataclass
class Scenario:
    api: InProcessApi
    sessions: dict[str, str]  # name -> session id, in creation order (oldest first)
    patients: dict[str, str]  # "A"/"B" -> patient id
    reviews: dict[str, str]  # name -> review id

    def names_of(self, items: list[dict[str, Any]]) -> list[str]:
        by_id = {session_id: name for name, session_id in self.sessions.items()}
        return [by_id[item["session_id"]] for item in items]

    def worklist(self, role: RoleValues = RoleValues.THERAPIST, **params: Any) -> Any:
        return self.api.client.get(WORKLIST, params=params, headers=self.api.headers(role))


def _review_registration(
    api: InProcessApi, registration_id: str, role: RoleValues, **body: Any
) -> str:
    response = api.client.post(
        f"/api/v1/registrations/{registration_id}/reviews", json=body, headers=api.headers(role)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory, make_dicom: Callable[..., bytes]
) -> Iterator[Scenario]:
    settings = make_settings(tmp_path_factory.mktemp("worklist") / "data")
    for api in start_in_process(settings):
        a = api.create_patient("MRN-WL-A")
        b = api.client.post(
            "/api/v1/patients",
            json={"external_id": "MRN-WL-B", "name": "Beta^Bob"},
            headers=api.headers(),
        ).json()
        sessions: dict[str, str] = {}
        reviews: dict[str, str] = {}

        sessions["none"] = api.create_session(a["id"])["id"]
        # An alert-like event about another kind of resource with the same id: not the session.
        add_audit_event(api, "stream.alert_raised", sessions["none"], resource_type="registration")

        sessions["awaiting"] = api.create_session(a["id"])["id"]
        upload = api.upload(sessions["awaiting"], make_dicom("MRN-WL-A"))
        assert upload.status_code == 201, upload.text
        assessment = api.client.post(
            f"/api/v1/sessions/{sessions['awaiting']}/motion-assessments",
            json={"upload_id": upload.json()["id"]},
            headers=api.headers(RoleValues.CONSOLE),
        )
        assert assessment.json()["recommendation"] == "reassess", assessment.text

        sessions["reviewed"] = api.create_session(b["id"], kind="fraction", fraction_number=1)["id"]
        for flagged in (False, True):
            job = add_registration(api, sessions["reviewed"], repositioning_required=flagged)
            _review_registration(api, job, RoleValues.THERAPIST, outcome="approved")

        sessions["flagged"] = api.create_session(b["id"], kind="fraction", fraction_number=2)["id"]
        add_registration(api, sessions["flagged"], repositioning_required=True)
        add_registration(
            api,
            sessions["flagged"],
            status=RegistrationStatusValues.FAILED,
            repositioning_required=None,
            quality=None,
        )
        add_registration(api, sessions["flagged"], status=RegistrationStatusValues.QUEUED)

        sessions["alert"] = api.create_session(b["id"], kind="fraction", fraction_number=3)["id"]
        add_registration(api, sessions["alert"], repositioning_required=True)
        reviewed_job = add_registration(api, sessions["alert"], repositioning_required=True)
        add_audit_event(api, "stream.open", sessions["alert"], {"stream_id": "s1"})
        add_audit_event(
            api,
            "stream.alert_raised",
            sessions["alert"],
            {"displacement_si_mm": 5.26, "over_threshold_s": 5.2},
        )
        reviews["approved"] = _review_registration(
            api, reviewed_job, RoleValues.THERAPIST, outcome="approved"
        )
        add_audit_event(api, "stream.alert_cleared", sessions["alert"], {})
        reviews["corrected"] = _review_registration(
            api,
            reviewed_job,
            RoleValues.PHYSICIST,
            outcome="overridden",
            decision="reposition",
            reason=CORRECTION_REASON,
            couch_correction_iec_support_mm=[1.5, -2.0, 3.0],
            supersedes_id=reviews["approved"],
        )

        sessions["cleared"] = api.create_session(a["id"])["id"]
        add_audit_event(api, "stream.alert_cleared", sessions["cleared"], {})

        yield Scenario(api, sessions, {"A": a["id"], "B": b["id"]}, reviews)


EXPECTED: dict[str, dict[str, Any]] = {
    "cleared": {
        "status": "no_results",
        "alert_during_monitoring": False,
        "flagged_for_repositioning": False,
        "results": 0,
        "awaiting_review": 0,
        "latest_recommendation": None,
    },
    "alert": {
        "status": "alert_during_monitoring",
        "alert_during_monitoring": True,
        "flagged_for_repositioning": True,
        "results": 2,
        "awaiting_review": 1,
        "latest_recommendation": None,
    },
    "flagged": {
        "status": "flagged_for_repositioning",
        "alert_during_monitoring": False,
        "flagged_for_repositioning": True,
        "results": 2,  # the queued job is not a result yet
        "awaiting_review": 2,
        "latest_recommendation": None,
    },
    "reviewed": {
        "status": "reviewed",
        "alert_during_monitoring": False,
        "flagged_for_repositioning": False,  # flagged, but reviewed
        "results": 2,
        "awaiting_review": 0,
        "latest_recommendation": None,
    },
    "awaiting": {
        "status": "awaiting_review",
        "alert_during_monitoring": False,
        "flagged_for_repositioning": False,
        "results": 1,
        "awaiting_review": 1,
        "latest_recommendation": "reassess",
    },
    "none": {
        "status": "no_results",
        "alert_during_monitoring": False,
        "flagged_for_repositioning": False,
        "results": 0,
        "awaiting_review": 0,
        "latest_recommendation": None,
    },
}
NEWEST_FIRST = list(EXPECTED)


def test_sessions_newest_first_with_status_and_counts(scenario: Scenario) -> None:
    response = scenario.worklist()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["data"]) == 6
    assert scenario.names_of(body["data"]) == NEWEST_FIRST
    for item in body["data"]:
        name = scenario.names_of([item])[0]
        flags = {key: item[key] for key in EXPECTED[name]}
        assert flags == EXPECTED[name], name
    created = [item["created_at"] for item in body["data"]]
    assert created == sorted(created, reverse=True)


def test_items_name_the_patient_and_session(scenario: Scenario) -> None:
    items = {
        name: item
        for name, item in zip(NEWEST_FIRST, scenario.worklist().json()["data"], strict=True)
    }
    assert items["flagged"] == {
        **items["flagged"],
        "session_id": scenario.sessions["flagged"],
        "patient_id": scenario.patients["B"],
        "patient_external_id": "MRN-WL-B",
        "patient_name": "Beta^Bob",
        "kind": "fraction",
        "fraction_number": 2,
        "patient_position": "HFS",
    }
    assert items["awaiting"]["patient_external_id"] == "MRN-WL-A"
    assert items["awaiting"]["patient_name"] is None
    assert items["awaiting"]["kind"] == "simulation"
    assert items["awaiting"]["fraction_number"] is None


def test_status_filter_partitions_the_worklist(scenario: Scenario) -> None:
    seen: list[str] = []
    for status in WorklistStatusValues:
        response = scenario.worklist(status=status.value)
        assert response.status_code == 200, response.text
        names = scenario.names_of(response.json()["data"])
        assert names == [n for n in NEWEST_FIRST if EXPECTED[n]["status"] == status.value]
        assert response.json()["count"] == len(names)
        seen += names
    assert sorted(seen) == sorted(NEWEST_FIRST)


@pytest.mark.parametrize(
    ("patient", "expected"),
    [
        ("MRN-WL-B", ["alert", "flagged", "reviewed"]),
        ("wl-a", ["cleared", "awaiting", "none"]),  # case-insensitive, part of the id
        ("beta^", ["alert", "flagged", "reviewed"]),  # the name
        ("BOB", ["alert", "flagged", "reviewed"]),
        ("MRN-WL", NEWEST_FIRST),
        ("nobody", []),
    ],
)
def test_patient_filter_matches_id_or_name(
    scenario: Scenario, patient: str, expected: list[str]
) -> None:
    response = scenario.worklist(patient=patient)
    assert response.status_code == 200, response.text
    assert scenario.names_of(response.json()["data"]) == expected


def test_patient_filter_takes_the_text_literally(scenario: Scenario) -> None:
    assert scenario.worklist(patient="MRN_WL").json()["data"] == []
    assert scenario.worklist(patient="%").json()["data"] == []


def test_since_and_limit(scenario: Scenario) -> None:
    everything = scenario.worklist().json()["data"]
    flagged_created = everything[NEWEST_FIRST.index("flagged")]["created_at"]
    since = scenario.worklist(since=flagged_created).json()["data"]
    assert scenario.names_of(since) == ["cleared", "alert", "flagged"]  # at or after
    assert scenario.worklist(since="2999-01-01T00:00:00Z").json() == {"data": [], "count": 0}
    assert scenario.names_of(scenario.worklist(limit=2).json()["data"]) == ["cleared", "alert"]
    combined = scenario.worklist(patient="MRN-WL-B", status="flagged_for_repositioning")
    assert scenario.names_of(combined.json()["data"]) == ["flagged"]


def test_limit_counts_matching_sessions(scenario: Scenario) -> None:
    response = scenario.worklist(status="awaiting_review", limit=1)
    assert scenario.names_of(response.json()["data"]) == ["awaiting"]


def test_a_since_without_offset_is_not_a_server_error(scenario: Scenario) -> None:
    response = scenario.worklist(since="2020-01-01T00:00:00")
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "since"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "urgent"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"patient": "x" * 65}, "patient"),
        ({"since": "yesterday"}, "since"),
    ],
)
def test_bad_queries_name_the_parameter(
    scenario: Scenario, params: dict[str, Any], field: str
) -> None:
    response = scenario.worklist(**params)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_people_read_the_worklist_and_nobody_else(scenario: Scenario) -> None:
    for role in RoleValues:
        expected = 403 if role is RoleValues.CONSOLE else 200  # it lists every patient
        assert scenario.worklist(role).status_code == expected, role
    assert scenario.api.client.get(WORKLIST).status_code == 401
    session_id = scenario.sessions["alert"]
    history = scenario.api.client.get(f"/api/v1/sessions/{session_id}/history")
    assert history.status_code == 401


def test_history_has_reviews_and_alerts_oldest_first(scenario: Scenario) -> None:
    session_id = scenario.sessions["alert"]
    response = scenario.api.client.get(
        f"/api/v1/sessions/{session_id}/history", headers=scenario.api.headers(RoleValues.CONSOLE)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["data"]) == 4
    entries = body["data"]
    assert [e["kind"] for e in entries] == [
        "stream.alert_raised",
        "review",
        "stream.alert_cleared",
        "review",
    ]
    times = [e["occurred_at"] for e in entries]
    assert times == sorted(times)
    raised, approved, cleared, corrected = entries
    assert raised["summary"] == (
        "intrafraction alert raised: +5.3 mm superior-inferior from the reference"
    )
    assert raised["review"] is None
    assert cleared["summary"] == "intrafraction alert cleared"
    assert approved["review"]["id"] == scenario.reviews["approved"]
    assert approved["review"]["standing"] is False
    assert approved["summary"] == (
        "registration approved by test therapist (therapist): reposition"
    )
    assert corrected["review"]["id"] == scenario.reviews["corrected"]
    assert corrected["review"]["standing"] is True
    assert corrected["review"]["supersedes_id"] == scenario.reviews["approved"]
    assert corrected["review"]["couch_correction_iec_support_mm"] == [1.5, -2.0, 3.0]
    assert corrected["summary"] == (
        "registration overridden by test physicist (physicist): reposition "
        "(couch correction applied: lat +1.5, long -2.0, vert +3.0 mm, IEC 61217). "
        f"Reason: {CORRECTION_REASON}"
    )


def test_history_of_other_sessions(scenario: Scenario) -> None:
    client, headers = scenario.api.client, scenario.api.headers()

    def history(name: str) -> list[dict[str, Any]]:
        response = client.get(
            f"/api/v1/sessions/{scenario.sessions[name]}/history", headers=headers
        )
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    # Events about other resources, or of other sessions, are not in a session's history.
    assert history("none") == []
    assert history("awaiting") == []
    assert [e["kind"] for e in history("cleared")] == ["stream.alert_cleared"]
    reviewed = history("reviewed")
    assert [(e["kind"], e["review"]["standing"]) for e in reviewed] == [
        ("review", True),
        ("review", True),
    ]
    assert [e["review"]["decision"] for e in reviewed] == ["no_repositioning", "reposition"]

    missing = client.get("/api/v1/sessions/no-such-session/history", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_acknowledging_alerts_clears_the_alert_status_until_the_next_alert(
    api: InProcessApi,
) -> None:
    session_id = api.create_session(api.create_patient("MRN-ACK")["id"])["id"]
    url = f"/api/v1/sessions/{session_id}/alert-acknowledgements"
    note = {"note": "Beam held; CBCT repeated and the couch moved 3.5 mm superior."}

    def status() -> str:
        items = api.client.get("/api/v1/worklist", headers=api.headers()).json()["data"]
        return str(next(i for i in items if i["session_id"] == session_id)["status"])

    nothing = api.client.post(url, json=note, headers=api.headers())
    assert nothing.status_code == 409, nothing.text
    assert nothing.json()["field"] == "session_id"

    add_audit_event(api, "stream.alert_raised", session_id, {"displacement_si_mm": 4.2})
    assert status() == "alert_during_monitoring"
    console = api.client.post(url, json=note, headers=api.headers(RoleValues.CONSOLE))
    assert console.status_code == 403
    for bad in ({}, {"note": ""}, {"note": "   "}, {"note": "x" * 501}):
        refused = api.client.post(url, json=bad, headers=api.headers())
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["field"] == "note"

    acknowledged = api.client.post(url, json=note, headers=api.headers())
    assert acknowledged.status_code == 201, acknowledged.text
    assert acknowledged.json()["kind"] == "stream.alert_acknowledged"
    assert acknowledged.json()["summary"] == (
        f"intrafraction alerts acknowledged by test therapist: {note['note']}"
    )
    assert status() == "no_results"
    assert api.client.post(url, json=note, headers=api.headers()).status_code == 409

    history = api.client.get(f"/api/v1/sessions/{session_id}/history", headers=api.headers())
    assert [e["kind"] for e in history.json()["data"]] == [
        "stream.alert_raised",
        "stream.alert_acknowledged",
    ]
    # A new alert after the acknowledgement puts the session back on alert.
    add_audit_event(api, "stream.alert_raised", session_id, {"displacement_si_mm": 3.6})
    assert status() == "alert_during_monitoring"
