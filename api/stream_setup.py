"""What a stream needs from the service before its first frame: the protocol and the plan.

Both transports (:mod:`api.routes.stream`, :mod:`api.routes.stream_http`) call these; errors are
:class:`~api.errors.ApiError` (the WebSocket turns them into error messages).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import RegistrationJob
from api.enums import RegistrationStatusValues
from api.errors import ApiError
from api.service import Service
from api.streaming import PlannedDome
from igrt.protocol import DEFAULT_PROTOCOL, MotionProtocol

__all__ = ["planned_dome", "session_protocol"]


def session_protocol(service: Service, version: str) -> MotionProtocol | None:
    """The protocol a session names: the service's active one, or the built-in defaults.

    None when this service knows neither (the stream is then refused).
    """
    active = service.protocol.protocol
    if version == active.version:
        return active
    if version == DEFAULT_PROTOCOL.version:
        return DEFAULT_PROTOCOL
    return None


def _triple(value: Any) -> tuple[float, float, float] | None:
    if not isinstance(value, list | tuple) or len(value) != 3:
        return None
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in numbers):
        return None
    return (numbers[0], numbers[1], numbers[2])


def _from_job(job: RegistrationJob) -> PlannedDome | None:
    result = job.result or {}
    ct_apex = (result.get("dome_check") or {}).get("ct_apex") or {}
    apex = _triple(ct_apex.get("position_lps_mm"))
    isocentre = _triple(result.get("reference_point_lps_mm"))
    if apex is None or isocentre is None:
        return None
    return PlannedDome(
        registration_id=job.id,
        apex_lps_mm=apex,
        isocentre_lps_mm=isocentre,
        isocentre_source=str(result.get("reference_point_source") or "unknown"),
    )


def planned_dome(db: Session, session_id: str, registration_id: str | None) -> PlannedDome:
    """The planning CT's dome apex and the isocentre, from one of the session's registrations.

    Without ``registration_id``: the latest completed registration whose dome check found the
    planning apex.

    Raises
    ------
    ApiError
        404 for a registration id unknown in this session; 409 when no registration of the
        session has a planning dome apex (register the day's CBCT first, or give a fixed level).
    """
    completed = RegistrationStatusValues.COMPLETED.value
    if registration_id is not None:
        job = db.get(RegistrationJob, registration_id) if len(registration_id) <= 64 else None
        if job is None or job.session_id != session_id:
            raise ApiError(
                404,
                f"no registration {registration_id[:64]!r} in this session",
                field="reference.registration_id",
            )
        planned = _from_job(job) if job.status == completed else None
        if planned is None:
            raise ApiError(
                409,
                f"registration {job.id} has no planning dome apex (status {job.status}): it "
                "cannot give the reference",
                field="reference.registration_id",
            )
        return planned
    jobs = db.scalars(
        select(RegistrationJob)
        .where(RegistrationJob.session_id == session_id, RegistrationJob.status == completed)
        .order_by(RegistrationJob.finished_at.desc(), RegistrationJob.created_at.desc())
    )
    for job in jobs:
        planned = _from_job(job)
        if planned is not None:
            return planned
    raise ApiError(
        409,
        "this session has no completed registration with a planning dome apex: register the "
        "day's CBCT first, or give the reference as mode fixed",
        field="reference.mode",
    )
