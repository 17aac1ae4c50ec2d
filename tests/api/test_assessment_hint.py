"""A therapist's dome hint over HTTP: it reaches the tracker, is stored with who gave it, and a
re-run with a hint is a new, audited assessment beside the old one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from api import assessment as assessment_module
from api.enums import RoleValues
from igrt.sequence import FluoroSequence
from igrt.tracking import DomeTrack, TrackerSettings
from tests.api.conftest import InProcessApi

HINT_OFFSET_PX = (5.0, -6.0)
"""Where the therapist clicks relative to the automatically found apex."""


def _session_with_upload(api: InProcessApi, dicom: bytes) -> tuple[str, str]:
    session_id = str(api.create_session(api.create_patient()["id"])["id"])
    upload = api.upload(session_id, dicom)
    assert upload.status_code == 201, upload.text
    return session_id, str(upload.json()["id"])


def _assess(
    api: InProcessApi,
    session_id: str,
    upload_id: str,
    role: RoleValues = RoleValues.THERAPIST,
    **body: Any,
) -> Any:
    return api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        json={"upload_id": upload_id, **body},
        headers=api.headers(role),
    )


def _assessments(api: InProcessApi, session_id: str) -> list[dict[str, Any]]:
    listed = api.client.get(
        f"/api/v1/sessions/{session_id}/motion-assessments", headers=api.headers()
    )
    data: list[dict[str, Any]] = listed.json()["data"]
    return data


@pytest.fixture
def tracker_spy(monkeypatch: pytest.MonkeyPatch) -> list[TrackerSettings | None]:
    """The settings of every tracker run of the service's assessment (which still runs)."""
    seen: list[TrackerSettings | None] = []
    real: Callable[..., DomeTrack] = assessment_module.track_dome

    def spy(sequence: FluoroSequence, settings: TrackerSettings | None = None) -> DomeTrack:
        seen.append(settings)
        return real(sequence, settings)

    monkeypatch.setattr(assessment_module, "track_dome", spy)
    return seen


def test_a_rerun_with_a_hint_reaches_the_tracker_and_is_a_new_audited_assessment(
    api: InProcessApi,
    make_dicom: Callable[..., bytes],
    tracker_spy: list[TrackerSettings | None],
) -> None:
    session_id, upload_id = _session_with_upload(api, make_dicom())
    first = _assess(api, session_id, upload_id, RoleValues.CONSOLE)
    assert first.status_code == 201, first.text
    original = first.json()
    assert original["dome_hint"] is None
    assert original["rerun_of"] is None
    apex = original["track"][0]
    hint = {
        "column_px": apex["apex_column"] + HINT_OFFSET_PX[0],
        "row_px": apex["apex_row"] + HINT_OFFSET_PX[1],
    }

    response = _assess(api, session_id, upload_id, dome_hint=hint, rerun_of=original["id"])
    assert response.status_code == 201, response.text
    rerun = response.json()
    seeds = [s.seed_column_row if s is not None else None for s in tracker_spy]
    assert seeds == [None, (hint["column_px"], hint["row_px"])]
    assert rerun["id"] != original["id"]
    assert rerun["rerun_of"] == original["id"]
    token_id = rerun["dome_hint"].pop("given_by_token_id")
    assert rerun["dome_hint"] == {**hint, "given_by": "test therapist"}
    # End to end: the tracking started at the dome next to the hint, on the first frame.
    started = rerun["track"][0]
    assert (
        np.hypot(started["apex_column"] - hint["column_px"], started["apex_row"] - hint["row_px"])
        <= 12.0
    )
    assert abs(started["apex_row"] - apex["apex_row"]) <= 2.0

    # The old assessment stays as it was; both are listed, and read back the same.
    assert [a["id"] for a in _assessments(api, session_id)] == [original["id"], rerun["id"]]
    stored = api.client.get(f"/api/v1/motion-assessments/{original['id']}", headers=api.headers())
    assert stored.json() == original
    again = api.client.get(f"/api/v1/motion-assessments/{rerun['id']}", headers=api.headers())
    assert again.json()["dome_hint"]["given_by_token_id"] == token_id
    # On the worklist the re-run replaces the assessment it repeats: one result to review.
    worklist = api.client.get("/api/v1/worklist", headers=api.headers()).json()["data"]
    item = next(i for i in worklist if i["session_id"] == session_id)
    assert (item["results"], item["awaiting_review"]) == (1, 1)
    audit = api.client.get(
        "/api/v1/audit-events",
        params={"resource_id": rerun["id"]},
        headers=api.headers(RoleValues.PHYSICIST),
    ).json()["data"]
    assert audit[0]["action"] == "motion_assessment.create"
    assert audit[0]["actor_role"] == "therapist"
    assert audit[0]["detail"]["rerun_of"] == original["id"]
    assert audit[0]["detail"]["dome_hint"]["column_px"] == hint["column_px"]
    assert audit[0]["detail"]["dome_hint"]["given_by"] == "test therapist"


def test_bad_hints_are_refused_and_store_nothing(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    session_id, upload_id = _session_with_upload(api, make_dicom())
    other_upload = api.upload(session_id, make_dicom()).json()["id"]
    earlier = _assess(api, session_id, other_upload).json()["id"]
    inside = {"column_px": 100.0, "row_px": 100.0}
    cases = [
        # 256 x 256 frames: pixels 0..255
        ({"dome_hint": {"column_px": 256.0, "row_px": 10.0}}, RoleValues.THERAPIST, 422),
        ({"dome_hint": {"column_px": 10.0, "row_px": 255.5}}, RoleValues.PHYSICIST, 422),
        ({"dome_hint": {"column_px": -1.0, "row_px": 10.0}}, RoleValues.THERAPIST, 422),
        ({"dome_hint": {"column_px": 10.0}}, RoleValues.THERAPIST, 422),
        ({"dome_hint": {**inside, "radius_px": 3}}, RoleValues.THERAPIST, 422),
        ({"dome_hint": [100, 100]}, RoleValues.THERAPIST, 422),
        ({"dome_hint": inside}, RoleValues.CONSOLE, 403),
        ({"rerun_of": earlier}, RoleValues.THERAPIST, 422),  # another upload's assessment
        ({"rerun_of": "00000000-0000-4000-8000-000000000000"}, RoleValues.THERAPIST, 422),
    ]
    for body, role, status in cases:
        response = _assess(api, session_id, upload_id, role, **body)
        assert response.status_code == status, (body, response.text)
        problem = response.json()
        assert problem["field"].split(".")[0] in {"dome_hint", "rerun_of"}, problem
    off = _assess(api, session_id, upload_id, dome_hint={"column_px": 256.0, "row_px": 10.0})
    assert "outside the first frame" in off.json()["detail"]
    assert [a["id"] for a in _assessments(api, session_id)] == [earlier]
    # The edge pixel itself is on the frame.
    edge = _assess(api, session_id, upload_id, dome_hint={"column_px": 255.0, "row_px": 0.0})
    assert edge.status_code == 201, edge.text
