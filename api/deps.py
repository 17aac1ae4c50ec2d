"""Typed dependency aliases for the routes (FastAPI full-stack template style)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.core.config import Settings
from api.enums import RoleValues
from api.errors import ApiError
from api.permissions import PermissionValues, check_permission
from api.request_guard import PRE_AUTHENTICATED
from api.security import Principal
from api.service import Service
from api.web_sessions import (
    BACKGROUND_HEADER,
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    authenticate_web_session,
    csrf_token_matches,
)

__all__ = [
    "BEARER",
    "SESSION_COOKIE_SCHEME",
    "AnyRole",
    "ClinicalStaff",
    "CurrentPrincipal",
    "DbSession",
    "HeavyWork",
    "JsonContent",
    "MultipartContent",
    "OriginalsReader",
    "PatientReader",
    "Physicist",
    "QuarantineResolver",
    "ReportReader",
    "ServiceDep",
    "SettingsDep",
    "WriteDbSession",
    "require_permission",
    "require_roles",
]

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="An API token made with `igrt token create` (header `Authorization: Bearer ...`).",
)
SESSION_COOKIE_SCHEME = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="SessionCookie",
    description="The review page's sign-in (`POST /api/v1/web-session`); browsers only. "
    "Requests that change something must also send the `X-CSRF-Token` header.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def get_service(request: Request) -> Service:
    """The running service (set by :func:`api.main.create_app`).

    Async so that it runs on the event loop: routes that must not wait behind the request
    thread pool (``/readyz``) can depend on it.
    """
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def get_settings(service: ServiceDep) -> Settings:
    """The service's settings."""
    return service.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_db(service: ServiceDep) -> Iterator[Session]:
    """A database session for one request; rolled back unless the route commits."""
    with service.sessions() as db:
        yield db


DbSession = Annotated[Session, Depends(get_db)]


def get_write_db(service: ServiceDep) -> Iterator[Session]:
    """A session for routes that read, check and then write (on SQLite: ``BEGIN IMMEDIATE``)."""
    with service.write_sessions() as db:
        yield db


WriteDbSession = Annotated[Session, Depends(get_write_db)]
"""For read-check-write routes: the check cannot be invalidated by a concurrent writer."""


async def get_principal(
    request: Request,
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    secret: Annotated[str | None, Depends(SESSION_COOKIE_SCHEME)],
) -> Principal:
    """The caller, from a valid bearer token or the review page's sign-in cookie; 401 otherwise.

    A bearer token wins over a cookie. A cookie-authenticated request that changes state must
    carry the session's CSRF token (403 otherwise): see :mod:`api.web_sessions`.

    Async, and with no database session of the request: a bearer token is checked in one step
    from the event loop (:class:`api.token_reader.TokenReader`), a sign-in cookie in one worker
    thread. A chain of sync dependencies waited for the thread pool at each link, and under a
    burst of stream opens that wait was most of a request's time (issue 12).
    """
    if credentials is not None:
        if credentials.scheme.lower() != "bearer":
            raise ApiError(401, "a bearer token is required", headers=_CHALLENGE)
        # The middleware authenticated this very header before reading the body.
        checked = getattr(request.state, PRE_AUTHENTICATED, None)
        principal = (
            checked
            if isinstance(checked, Principal)
            else await service.tokens.authenticate(service.pepper, credentials.credentials)
        )
        if principal is None:
            raise ApiError(401, "unknown or revoked token", headers=_CHALLENGE)
    else:
        if secret is None:
            raise ApiError(401, "a bearer token is required", headers=_CHALLENGE)
        principal = await run_in_threadpool(
            _signed_in_principal,
            service,
            secret,
            request.method,
            request.headers.get(BACKGROUND_HEADER) != "1",
            request.headers.get(CSRF_HEADER),
        )
    request.state.principal = principal
    service.first_run.used_by(principal.token_id)
    return principal


def _signed_in_principal(
    service: Service, secret: str, method: str, touch: bool, csrf: str | None
) -> Principal:
    """The principal of a sign-in cookie (401), with the CSRF check of a change (403)."""
    with service.sessions() as db:
        signed_in = authenticate_web_session(
            db,
            service.pepper,
            secret,
            idle_minutes=service.settings.web_session_idle_minutes,
            touch=touch,
        )
        if signed_in is None:
            raise ApiError(401, "the sign-in has ended; sign in again", headers=_CHALLENGE)
        if method not in SAFE_METHODS and not csrf_token_matches(secret, service.pepper, csrf):
            raise ApiError(403, "missing or wrong CSRF token", field=CSRF_HEADER.lower())
        db.commit()  # the refreshed last_seen_at, if any
    return signed_in.principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: RoleValues) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting only tokens of the given roles (403 for the others)."""
    allowed = frozenset(roles)

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(role.value for role in allowed))
            raise ApiError(403, f"this needs one of the roles: {names}")
        return principal

    return check


AnyRole = Annotated[
    Principal,
    Depends(
        require_roles(
            RoleValues.CONSOLE, RoleValues.THERAPIST, RoleValues.PHYSICIST, RoleValues.PHYSICIAN
        )
    ),
]
"""Any valid token."""

ClinicalStaff = Annotated[
    Principal,
    Depends(require_roles(RoleValues.THERAPIST, RoleValues.PHYSICIST, RoleValues.PHYSICIAN)),
]
"""Therapists, physicists and physicians (people, not consoles)."""

Physicist = Annotated[Principal, Depends(require_roles(RoleValues.PHYSICIST))]
"""Physicists (administrators) only."""


def require_permission(
    permission: PermissionValues,
) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting only roles that grant ``permission`` (:mod:`api.permissions`)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        check_permission(principal, permission)
        return principal

    return check


PatientReader = Annotated[Principal, Depends(require_permission(PermissionValues.READ_PATIENTS))]
"""Roles that may list, search and read every patient (not consoles)."""

OriginalsReader = Annotated[
    Principal, Depends(require_permission(PermissionValues.DOWNLOAD_ORIGINALS))
]
"""Roles that may download uploaded files byte for byte (not consoles)."""

ReportReader = Annotated[Principal, Depends(require_permission(PermissionValues.DOWNLOAD_REPORTS))]
"""Roles that may download printable reports, which name the patient (not consoles)."""

QuarantineResolver = Annotated[
    Principal, Depends(require_permission(PermissionValues.RESOLVE_QUARANTINE))
]
"""Roles that may release or discard quarantined DICOM instances (physicists)."""


def require_media_type(*media_types: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing other request content types with 415 (before body validation)."""

    async def check(request: Request) -> None:
        content_type = request.headers.get("content-type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type not in media_types:
            raise ApiError(
                415,
                f"send {' or '.join(media_types)}, not {media_type or 'no content type'}",
                field="content-type",
            )

    return check


JsonContent = Annotated[None, Depends(require_media_type("application/json"))]
"""Declare after the principal in routes that take a JSON body (415 otherwise)."""

MultipartContent = Annotated[None, Depends(require_media_type("multipart/form-data"))]
"""Declare after the principal in upload routes (415 otherwise)."""


def _heavy_work_slot(request: Request) -> Iterator[None]:
    """Hold one of the process's heavy-work slots for the request (503 when none comes free)."""
    service: Service = request.app.state.service
    route = request.scope.get("route")
    what = getattr(route, "name", None) or "request"
    with service.heavy_work.slot(str(what)):
        yield


HeavyWork = Annotated[None, Depends(_heavy_work_slot)]
"""Declare right after the principal in routes that decode uploads or run an analysis: the
request waits up to ``IGRT_HEAVY_WORK_WAIT_S`` for a slot of :mod:`api.work_budget`, then 503
with ``Retry-After``. Unauthenticated requests are refused before they take one."""
