"""Look-ups shared by the routes (404 for unknown ids)."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

from api.db.base import Base
from api.db.models import Patient, TreatmentSession, Upload
from api.errors import ApiError

__all__ = ["get_or_404", "get_patient", "get_session", "get_upload"]

_Row = TypeVar("_Row", bound=Base)


def get_or_404(db: Session, model: type[_Row], row_id: str, what: str, field: str) -> _Row:
    """The row with ``row_id``, or a 404 naming the path parameter ``field``."""
    row = db.get(model, row_id) if len(row_id) <= 64 else None
    if row is None:
        raise ApiError(404, f"no {what} with id {row_id[:64]!r}", field=field)
    return row


def get_patient(db: Session, patient_id: str) -> Patient:
    """The patient, or 404."""
    return get_or_404(db, Patient, patient_id, "patient", "patient_id")


def get_session(db: Session, session_id: str) -> TreatmentSession:
    """The treatment session, or 404."""
    return get_or_404(db, TreatmentSession, session_id, "session", "session_id")


def get_upload(db: Session, upload_id: str) -> Upload:
    """The upload, or 404."""
    return get_or_404(db, Upload, upload_id, "upload", "upload_id")
