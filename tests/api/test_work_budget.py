"""The heavy-work budget (issue 12, finding 8): 503 with Retry-After beyond it, health unaffected.

The service is started with two heavy-work slots and no wait; the test takes both slots itself
(as two long uploads would), then checks that uploads and assessments are refused at once with
a Problem JSON 503 and ``Retry-After``, that nothing was stored, that unauthenticated requests
still get 401 (they never take a slot), and that ``/healthz`` answers meanwhile. Registration
jobs wait for a slot queued (:mod:`tests.api.test_job_quota`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from api.enums import RoleValues
from api.work_budget import WorkBudget, WorkBudgetExhaustedError
from tests.api.conftest import InProcessApi, make_settings, start_in_process


def _start(tmp_path: Path, wait_s: float) -> Iterator[InProcessApi]:
    settings = make_settings(
        tmp_path / "data",
        heavy_work_max_concurrent=2,
        heavy_work_wait_s=wait_s,
        registration_workers=1,
    )
    yield from start_in_process(settings)


@pytest.fixture
def busy_api(tmp_path: Path) -> Iterator[InProcessApi]:
    """Two heavy-work slots; a request finding none is refused at once."""
    yield from _start(tmp_path, 0.0)


@pytest.fixture
def waiting_api(tmp_path: Path) -> Iterator[InProcessApi]:
    """Two heavy-work slots; a request waits 2 s for one."""
    yield from _start(tmp_path, 2.0)


def _hold_every_slot(api: InProcessApi, stack: ExitStack) -> WorkBudget:
    budget: WorkBudget = api.client.app.state.service.heavy_work  # type: ignore[attr-defined]
    for _ in range(budget.max_concurrent):
        stack.enter_context(budget.slot("test"))
    return budget


def _assert_busy(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"].startswith("application/json")
    problem = response.json()
    assert problem["status"] == 503
    assert problem["code"] == "busy"
    assert "retry" in problem["detail"]


def test_heavy_requests_beyond_the_budget_get_503_with_retry_after(
    busy_api: InProcessApi, make_dicom: Any
) -> None:
    api = busy_api
    patient = api.create_patient()
    session_id = api.create_session(patient["id"])["id"]
    stored = api.upload(session_id, make_dicom())
    assert stored.status_code == 201, stored.text
    uploads_url = f"/api/v1/sessions/{session_id}/uploads"

    with ExitStack() as stack:
        budget = _hold_every_slot(api, stack)
        _assert_busy(api.upload(session_id, make_dicom()))
        _assert_busy(
            api.client.post(
                f"/api/v1/sessions/{session_id}/uploads/volume",
                files={"file": ("v.mha", b"ObjectType = Image\n", "application/octet-stream")},
                data={"kind": "cbct", "format": "mha"},
                headers=api.headers(RoleValues.CONSOLE),
            )
        )
        _assert_busy(
            api.client.post(
                f"/api/v1/sessions/{session_id}/motion-assessments",
                json={"upload_id": stored.json()["id"]},
                headers=api.headers(),
            )
        )
        # Authentication comes first: a stranger neither takes nor waits for a slot.
        anonymous = api.client.post(
            f"/api/v1/sessions/{session_id}/uploads/fluoroscopy",
            files={"file": ("f.dcm", make_dicom(), "application/dicom")},
            data={"format": "dicom"},
        )
        assert anonymous.status_code == 401
        assert api.client.get("/healthz").status_code == 200
        # Light routes do not need the budget.
        assert api.client.get(uploads_url, headers=api.headers()).json()["count"] == 1
        assert budget.running == budget.max_concurrent

    assert budget.running == 0
    again = api.upload(session_id, make_dicom())
    assert again.status_code == 201, again.text
    assert budget.running == 0  # the request gave its slot back


def test_healthz_answers_quickly_while_heavy_requests_wait(
    waiting_api: InProcessApi, make_dicom: Any
) -> None:
    api = waiting_api
    patient = api.create_patient()
    session_id = api.create_session(patient["id"])["id"]
    content = make_dicom()
    statuses: list[int] = []

    def upload() -> None:
        statuses.append(api.upload(session_id, content).status_code)

    with ExitStack() as stack:
        _hold_every_slot(api, stack)
        waiting = [threading.Thread(target=upload) for _ in range(6)]
        for thread in waiting:
            thread.start()
        time.sleep(0.3)  # the uploads now wait for a slot
        latencies_s = []
        for _ in range(10):
            start = time.perf_counter()
            assert api.client.get("/healthz").status_code == 200
            latencies_s.append(time.perf_counter() - start)
        for thread in waiting:
            thread.join()
    assert max(latencies_s) < 0.1, latencies_s
    assert statuses == [503] * 6


def test_the_budget_queues_for_its_wait_then_refuses() -> None:
    budget = WorkBudget(max_concurrent=1, wait_s=0.05)
    with budget.slot("first"):
        start = time.perf_counter()
        with pytest.raises(WorkBudgetExhaustedError) as refused, budget.slot("second"):
            pass
        assert time.perf_counter() - start >= 0.05
        assert refused.value.retry_after_s == 1
        assert "second" in str(refused.value)

    # A slot given back on another thread within the wait lets the waiting request through.
    queued = WorkBudget(max_concurrent=1, wait_s=5.0)
    release = threading.Event()

    def hold() -> None:
        with queued.slot("holder"):
            release.wait(5.0)

    holder = threading.Thread(target=hold)
    holder.start()
    while queued.running == 0:
        time.sleep(0.001)
    threading.Timer(0.05, release.set).start()
    with queued.slot("waiter"):
        assert queued.running == 1
    holder.join()
    assert queued.running == 0


def test_background_work_waits_until_a_slot_is_free_or_the_service_stops() -> None:
    budget = WorkBudget(max_concurrent=1, wait_s=0.0)
    stop = threading.Event()
    with budget.slot("request"):
        threading.Timer(0.05, stop.set).start()
        with budget.slot_when_free(stop) as running:
            assert not running
    with budget.slot_when_free(threading.Event()) as running:
        assert running
        assert budget.running == 1
    assert budget.running == 0


def test_settings_keep_a_slot_for_requests_beyond_the_registration_workers(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="heavy_work_max_concurrent"):
        make_settings(tmp_path, heavy_work_max_concurrent=2, registration_workers=2)
