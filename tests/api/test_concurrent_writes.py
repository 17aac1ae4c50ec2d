"""Routes that work for seconds between their reads and their writes (assessment, upload
decoding) still store their rows when another connection commits meanwhile.

On SQLite (WAL) a transaction whose read snapshot predates another connection's commit may not
write: SQLITE_BUSY_SNAPSHOT, "database is locked", at once and whatever the busy timeout. Streams'
audit events, registration jobs and other requests commit at any time, so these routes end their
read transaction before the long work. Each test commits from a second connection in the middle.

Read-check-write routes (a first review, a new session) begin ``IMMEDIATE`` on SQLite and rely on
database constraints on PostgreSQL: two reviewers at the same moment get one 201 and one 409.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import api.routes.assessments as assessments_route
import api.routes.reviews as reviews_route
import api.routes.uploads as uploads_route
import api.routes.volumes as volumes_route
from api.audit import record_audit
from api.enums import RoleValues
from tests.api.conftest import InProcessApi, Volumes, make_settings, start_in_process
from tests.api.fake_results import add_registration


@pytest.fixture
def db_api(tmp_path: Path, database_url: str) -> Iterator[InProcessApi]:
    """The app on SQLite or on PostgreSQL."""
    yield from start_in_process(make_settings(tmp_path / "data", database_url))


def _commit_meanwhile(
    api: InProcessApi, module: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make ``module.name`` commit an audit event from another connection before it runs."""
    service = api.client.app.state.service  # type: ignore[attr-defined]
    work = getattr(module, name)

    def work_while_someone_commits(*args: Any, **kwargs: Any) -> Any:
        with service.sessions() as db:
            record_audit(db, None, "test.concurrent_write", "test", "concurrent")
            db.commit()
        return work(*args, **kwargs)

    monkeypatch.setattr(module, name, work_while_someone_commits)


def _session(api: InProcessApi) -> str:
    return str(api.create_session(api.create_patient()["id"])["id"])


def test_an_assessment(
    api: InProcessApi, make_dicom: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = _session(api)
    upload = api.upload(session_id, make_dicom())
    assert upload.status_code == 201, upload.text
    _commit_meanwhile(api, assessments_route, "assess_sequence", monkeypatch)
    response = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        json={"upload_id": upload.json()["id"]},
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text


def test_a_fluoroscopy_upload(
    api: InProcessApi, make_dicom: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = _session(api)
    _commit_meanwhile(api, uploads_route, "ingest_fluoroscopy", monkeypatch)
    response = api.upload(session_id, make_dicom())
    assert response.status_code == 201, response.text


def test_a_volume_upload(
    api: InProcessApi, volumes: Volumes, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = _session(api)
    _commit_meanwhile(api, volumes_route, "ingest_volume", monkeypatch)
    response = api.client.post(
        f"/api/v1/sessions/{session_id}/uploads/volume",
        files={"file": ("cbct.mha", volumes.cbct_mha, "application/octet-stream")},
        data={"kind": "cbct", "format": "mha"},
        headers=api.headers(RoleValues.CONSOLE),
    )
    assert response.status_code == 201, response.text


# --- two reviewers at the same moment ---------------------------------------------------------


def test_two_simultaneous_first_reviews_cannot_both_stand(
    db_api: InProcessApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both requests read "no review yet" before either writes (a barrier in between): the
    first-review constraint lets one stand and answers the other 409, never 503."""
    session_id = _session(db_api)
    registration_id = add_registration(db_api, session_id)
    barrier = threading.Barrier(2, timeout=3)
    read_reviews = reviews_route._reviews_of

    def read_then_wait(*args: Any, **kwargs: Any) -> Any:
        rows = read_reviews(*args, **kwargs)
        # On SQLite the write lock serialises the reads: the barrier breaks and the second
        # request reads the first one's review.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return rows

    monkeypatch.setattr(reviews_route, "_reviews_of", read_then_wait)
    answers: list[int] = []

    def approve(role: RoleValues) -> None:
        response = db_api.client.post(
            f"/api/v1/registrations/{registration_id}/reviews",
            json={"outcome": "approved"},
            headers=db_api.headers(role),
        )
        answers.append(response.status_code)

    threads = [
        threading.Thread(target=approve, args=(role,))
        for role in (RoleValues.THERAPIST, RoleValues.PHYSICIST)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201, 409]
    listed = db_api.client.get(
        f"/api/v1/registrations/{registration_id}/reviews", headers=db_api.headers()
    )
    assert listed.json()["count"] == 1
