"""Registration job quotas and clip-box bounds (issue 12, finding 8).

A token may have ``IGRT_REGISTRATION_MAX_ACTIVE_PER_TOKEN`` jobs queued or running (429 with
``Retry-After`` beyond), the service ``IGRT_REGISTRATION_MAX_ACTIVE`` (503). The jobs are kept
queued by taking every heavy-work slot in the test: a job waits for a slot before it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.enums import RoleValues
from api.work_budget import WorkBudget
from tests.api.conftest import InProcessApi, Volumes, make_settings, start_in_process
from tests.api.test_registrations import upload_volume


@pytest.fixture
def quota_api(tmp_path: Path) -> Iterator[InProcessApi]:
    settings = make_settings(
        tmp_path / "data",
        registration_max_active_per_token=2,
        registration_max_active=3,
        registration_workers=1,
        heavy_work_max_concurrent=2,
    )
    yield from start_in_process(settings)


def _prepared(api: InProcessApi, volumes: Volumes) -> tuple[str, dict[str, str]]:
    patient = api.create_patient()
    session_id = api.create_session(patient["id"], kind="fraction", fraction_number=1)["id"]
    ct = upload_volume(api, session_id, volumes.planning_mha, kind="planning_ct", fmt="mha")
    assert ct.status_code == 201, ct.text
    cbct = upload_volume(api, session_id, volumes.cbct_mha, kind="cbct", fmt="mha")
    assert cbct.status_code == 201, cbct.text
    return session_id, {
        "planning_ct_upload_id": ct.json()["id"],
        "cbct_upload_id": cbct.json()["id"],
    }


def _hold_every_slot(api: InProcessApi) -> list[Any]:
    """Take every slot; the caller keeps the result (a dropped hold gives its slot back).

    Never given back otherwise: the service stops with the jobs still queued (the worker gives
    up waiting on shutdown), so the test does not wait for registrations it does not need.
    """
    budget: WorkBudget = api.client.app.state.service.heavy_work  # type: ignore[attr-defined]
    holds = [budget.slot("test") for _ in range(budget.max_concurrent)]
    for hold in holds:
        hold.__enter__()
    return holds


def test_a_token_beyond_its_active_jobs_gets_429_and_the_service_503(
    quota_api: InProcessApi, volumes: Volumes
) -> None:
    api = quota_api
    session_id, body = _prepared(api, volumes)
    url = f"/api/v1/sessions/{session_id}/registrations"
    holds = _hold_every_slot(api)

    def post(role: RoleValues) -> Any:
        return api.client.post(url, json=body, headers=api.headers(role))

    for _ in range(2):
        queued = post(RoleValues.CONSOLE)
        assert queued.status_code == 202, queued.text
        assert queued.json()["status"] == "queued"
    refused = post(RoleValues.CONSOLE)
    assert refused.status_code == 429, refused.text
    assert refused.headers["retry-after"] == "30"
    assert refused.json()["code"] == "too_many_jobs"
    assert "this token" in refused.json()["detail"]

    # Another token still may, up to the service's bound.
    assert post(RoleValues.THERAPIST).status_code == 202
    full = post(RoleValues.THERAPIST)
    assert full.status_code == 503, full.text
    assert full.headers["retry-after"] == "30"
    assert full.json()["code"] == "busy"

    listed = api.client.get(url, headers=api.headers()).json()
    assert listed["count"] == 3
    assert {job["status"] for job in listed["data"]} == {"queued"}
    assert len(holds) == 2


def test_finished_jobs_do_not_count(quota_api: InProcessApi, volumes: Volumes) -> None:
    from sqlalchemy import update

    from api.db.models import RegistrationJob

    api = quota_api
    session_id, body = _prepared(api, volumes)
    url = f"/api/v1/sessions/{session_id}/registrations"
    holds = _hold_every_slot(api)
    for _ in range(2):
        assert api.client.post(url, json=body, headers=api.headers()).status_code == 202
    assert len(holds) == 2
    service = api.client.app.state.service  # type: ignore[attr-defined]
    with service.sessions() as db:
        db.execute(update(RegistrationJob).values(status="failed", reason="test"))
        db.commit()
    assert api.client.post(url, json=body, headers=api.headers()).status_code == 202
    assert len(holds) == 2


@pytest.mark.parametrize(
    ("lower", "upper", "accepted"),
    [
        ([-5000, -5000, -5000], [5000, 5000, 5000], False),  # 10 m on a side
        ([-100, -100, -100], [501, 0, 0], False),  # 601 mm in x
        ([0, 0, 0], [10, 10, 700], False),  # 700 mm in z
        ([-300, -300, -300], [300, 300, 300], True),  # 600 mm: a whole planning CT
        ([-120, -60, -20], [-20, 40, 60], True),  # around the right dome
        ([0, 0, 0], [0, 10, 10], False),  # zero width
        ([0, 0, 0], [10, 10, float("inf")], False),  # not finite
    ],
)
def test_clip_box_sides_are_bounded(lower: list[float], upper: list[float], accepted: bool) -> None:
    from pydantic import ValidationError

    from api.schemas.registrations import RegistrationCreate

    body = {
        "planning_ct_upload_id": "a",
        "cbct_upload_id": "b",
        "clip_box_lps_mm": {"lower_lps_mm": lower, "upper_lps_mm": upper},
    }
    if accepted:
        RegistrationCreate.model_validate(body)
        return
    with pytest.raises(ValidationError) as refused:
        RegistrationCreate.model_validate(body)
    assert refused.value.errors()[0]["loc"][0] == "clip_box_lps_mm"


def test_a_ten_metre_clip_box_is_a_422_naming_the_field(api: InProcessApi) -> None:
    patient = api.create_patient()
    session_id = api.create_session(patient["id"], kind="fraction", fraction_number=1)["id"]
    response = api.client.post(
        f"/api/v1/sessions/{session_id}/registrations",
        json={
            "planning_ct_upload_id": "a",
            "cbct_upload_id": "b",
            "clip_box_lps_mm": {"lower_lps_mm": [-5000] * 3, "upper_lps_mm": [5000] * 3},
        },
        headers=api.headers(),
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "clip_box_lps_mm"
    assert "600 mm" in response.json()["detail"]


@pytest.fixture
def hasty_api(tmp_path: Path) -> Iterator[InProcessApi]:
    settings = make_settings(
        tmp_path / "data",
        registration_time_limit_s=0.3,
        job_lease_s=0.5,
        registration_workers=1,
        heavy_work_max_concurrent=2,
    )
    yield from start_in_process(settings)


def test_a_registration_past_its_time_limit_is_failed_with_the_reason(
    hasty_api: InProcessApi, volumes: Volumes
) -> None:
    import time

    api = hasty_api
    session_id, body = _prepared(api, volumes)
    created = api.client.post(
        f"/api/v1/sessions/{session_id}/registrations", json=body, headers=api.headers()
    )
    assert created.status_code == 202, created.text
    url = created.headers["location"]
    deadline = time.monotonic() + 30.0
    job = created.json()
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = api.client.get(url, headers=api.headers()).json()
    assert job["status"] == "failed"
    assert "time limit of 0.3 s exceeded" in job["reason"]
    # The late result is dropped: the job stays failed once its computation ends.
    budget: WorkBudget = api.client.app.state.service.heavy_work  # type: ignore[attr-defined]
    while budget.running:
        assert time.monotonic() < deadline + 60.0
        time.sleep(0.1)
    assert api.client.get(url, headers=api.headers()).json()["status"] == "failed"
