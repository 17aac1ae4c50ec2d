"""Reads of patient data are audited: who read which patient's record, images and results
(issue 12, finding 10), once per token and resource in a window, with the internal patient id
(never the hospital's)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from api.db.models import AuditEvent
from api.enums import RoleValues
from tests.api.conftest import PATIENT_ID, InProcessApi
from tests.api.fake_results import service_of


def _reads(api: InProcessApi) -> list[AuditEvent]:
    with service_of(api).sessions() as db:
        return list(
            db.scalars(
                select(AuditEvent).where(AuditEvent.action.like("%.read")).order_by(AuditEvent.id)
            )
        )


def test_reading_a_patient_and_a_sessions_history_is_audited_once_per_window(
    api: InProcessApi,
) -> None:
    patient = api.create_patient()
    session = api.create_session(patient["id"])
    for _ in range(3):
        assert (
            api.client.get(f"/api/v1/patients/{patient['id']}", headers=api.headers()).status_code
            == 200
        )
        history = api.client.get(
            f"/api/v1/sessions/{session['id']}/history", headers=api.headers(RoleValues.CONSOLE)
        )
        assert history.status_code == 200
    reads = _reads(api)
    assert [(e.action, e.actor_role) for e in reads] == [
        ("patient.read", "therapist"),
        ("session_history.read", "console"),
    ]
    assert all(e.detail["patient_id"] == patient["id"] for e in reads)
    assert all(PATIENT_ID not in str(e.detail) for e in reads)


def test_downloading_an_original_file_is_audited(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    patient = api.create_patient()
    session = api.create_session(patient["id"])
    upload = api.upload(session["id"], make_dicom())
    assert upload.status_code == 201, upload.text
    download = api.client.get(f"/api/v1/uploads/{upload.json()['id']}/file", headers=api.headers())
    assert download.status_code == 200
    reads = _reads(api)
    assert [(e.action, e.resource_id, e.detail["session_id"]) for e in reads] == [
        ("upload_file.read", upload.json()["id"], session["id"])
    ]
