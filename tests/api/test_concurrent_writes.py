"""Routes that work for seconds between their reads and their writes (assessment, upload
decoding) still store their rows when another connection commits meanwhile.

On SQLite (WAL) a transaction whose read snapshot predates another connection's commit may not
write: SQLITE_BUSY_SNAPSHOT, "database is locked", at once and whatever the busy timeout. Streams'
audit events, registration jobs and other requests commit at any time, so these routes end their
read transaction before the long work. Each test commits from a second connection in the middle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import api.routes.assessments as assessments_route
import api.routes.uploads as uploads_route
import api.routes.volumes as volumes_route
from api.audit import record_audit
from api.enums import RoleValues
from tests.api.conftest import InProcessApi, Volumes


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
