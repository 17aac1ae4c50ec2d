"""Append entries to the audit trail: changes in the caller's transaction, reads on their own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.core.logging import REQUEST_ID
from api.db.models import AuditEvent, TreatmentSession
from api.security import Principal

__all__ = ["ReadAudit", "record_audit"]


def record_audit(
    db: Session,
    principal: Principal | None,
    action: str,
    resource_type: str,
    resource_id: str,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event (committed with the change it records; no patient identifiers).

    ``principal`` None means the service itself (demo data, migrations).
    """
    event = AuditEvent(
        actor_token_id=principal.token_id if principal else None,
        actor_role=principal.role.value if principal else None,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        request_id=REQUEST_ID.get(),
        detail=detail or {},
    )
    db.add(event)
    return event


class ReadAudit:
    """Audit of reads of patient data: who read which patient's images and results.

    Each read is an ``<what>.read`` event with the session and patient (internal ids, never the
    hospital's), written in a transaction of its own (a read's snapshot must not turn into a
    write, see :mod:`api.deps`). A page that shows a cine fetches every frame: the same token
    reading the same resource is recorded once per ``window_s``.

    Parameters
    ----------
    sessions : sessionmaker
        Database sessions whose transactions take the write lock at their start (see
        :func:`api.db.engine.make_write_session_factory`).
    window_s : float
        Repeated reads of one resource by one token within this long are one event, s.
    clock : callable, optional
        Monotonic seconds.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self.window_s = window_s
        self._clock = clock
        self._last: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def _is_new(self, key: tuple[str, str, str]) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._last) > 100_000:  # bounded: forget everything rather than grow
                self._last.clear()
            last = self._last.get(key)
            if last is not None and now - last < self.window_s:
                return False
            self._last[key] = now
            return True

    def record(
        self,
        principal: Principal,
        resource_type: str,
        resource_id: str,
        *,
        session_id: str | None = None,
        patient_id: str | None = None,
        what: str | None = None,
    ) -> None:
        """Record that ``principal`` read ``resource_type`` ``resource_id``.

        ``session_id`` names the session the resource belongs to (its patient is looked up)
        unless ``patient_id`` is given.
        """
        action = f"{what or resource_type}.read"
        if not self._is_new((principal.token_id, action, resource_id)):
            return
        with self._sessions() as db:
            if patient_id is None and session_id is not None:
                session = db.get(TreatmentSession, session_id)
                patient_id = None if session is None else session.patient_id
            detail = {"session_id": session_id, "patient_id": patient_id}
            record_audit(db, principal, action, resource_type, resource_id, detail)
            db.commit()
