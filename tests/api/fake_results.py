"""Rows the worklist, history and review tests need without running the pipelines.

A finished registration job and a stream alert are written straight into the database of an
in-process app: the routes under test read only their columns (status, quality, the
repositioning flag; the audit action, resource and detail), and a real registration or a real
WebSocket stream would cost seconds per test. The registration pipeline itself is exercised by
``test_registrations.py``, the demo test and the overlay-layer test.
"""

from __future__ import annotations

from typing import Any

from api.audit import record_audit
from api.db.base import utc_now
from api.db.models import RegistrationJob, VolumeUpload
from api.enums import RegistrationStatusValues
from api.service import Service
from tests.api.conftest import InProcessApi


def service_of(api: InProcessApi) -> Service:
    """The running app's service."""
    service: Service = api.client.app.state.service  # type: ignore[attr-defined]
    return service


def add_registration(
    api: InProcessApi,
    session_id: str,
    *,
    status: RegistrationStatusValues = RegistrationStatusValues.COMPLETED,
    repositioning_required: bool | None = True,
    quality: str | None = "good",
) -> str:
    """A registration job of ``session_id`` in ``status`` (with placeholder volumes); its id."""
    finished = status in (RegistrationStatusValues.COMPLETED, RegistrationStatusValues.FAILED)
    with service_of(api).sessions() as db:
        volumes = [
            VolumeUpload(
                session_id=session_id,
                kind=kind,
                format="mha",
                content_type="application/octet-stream",
                filename=f"{kind}.mha",
                size_bytes=1,
                sha256="0" * 64,
                stored_path=f"placeholder/{kind}.mha",
                volume_sha256="0" * 64,
                volume_path=f"placeholder/{kind}-volume.mha",
                geometry={},
            )
            for kind in ("planning_ct", "cbct")
        ]
        db.add_all(volumes)
        db.flush()
        job = RegistrationJob(
            session_id=session_id,
            planning_ct_upload_id=volumes[0].id,
            cbct_upload_id=volumes[1].id,
            degrees_of_freedom=3,
            status=status.value,
            reason="placeholder failure" if status is RegistrationStatusValues.FAILED else None,
            quality=quality if finished else None,
            repositioning_required=repositioning_required if finished else None,
            software_version="test",
            started_at=utc_now() if status is not RegistrationStatusValues.QUEUED else None,
            finished_at=utc_now() if finished else None,
        )
        db.add(job)
        db.commit()
        return job.id


def add_audit_event(
    api: InProcessApi,
    action: str,
    resource_id: str,
    detail: dict[str, Any] | None = None,
    *,
    resource_type: str = "session",
) -> None:
    """An audit event by the service itself, as a stream writes ``stream.alert_raised``."""
    with service_of(api).sessions() as db:
        record_audit(db, None, action, resource_type, resource_id, detail)
        db.commit()
