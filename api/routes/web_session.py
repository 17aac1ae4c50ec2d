"""Sign-in for the review page: a session cookie made from an API token (see api.web_sessions).

``POST /api/v1/web-session`` checks the token and sets the ``igrt_session`` cookie (HttpOnly,
SameSite=Strict, Secure when ``IGRT_COOKIE_SECURE``); ``GET`` tells a signed-in page who it is
and its CSRF token; ``DELETE`` signs out. Both sign-in and sign-out go to the audit trail.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.audit import record_audit
from api.core.config import API_PREFIX
from api.deps import SESSION_COOKIE_SCHEME, DbSession, JsonContent, ServiceDep
from api.errors import PROBLEM_RESPONSES, ApiError, problem
from api.schemas.web_sessions import WebSessionCreate, WebSessionPublic
from api.security import authenticate_token
from api.web_sessions import (
    CSRF_HEADER,
    SESSION_COOKIE,
    SignedIn,
    authenticate_web_session,
    csrf_token_for,
    csrf_token_matches,
    end_web_session,
    start_web_session,
)

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["web-session"], responses=PROBLEM_RESPONSES)

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _public(signed_in: SignedIn, secret: str, pepper: bytes) -> WebSessionPublic:
    principal = signed_in.principal
    return WebSessionPublic(
        token_id=principal.token_id,
        name=principal.name,
        role=principal.role,
        csrf_token=csrf_token_for(secret, pepper),
        expires_at=signed_in.expires_at,
    )


def _signed_in(secret: str | None, service: ServiceDep, db: DbSession) -> tuple[SignedIn, str]:
    idle_minutes = service.settings.web_session_idle_minutes
    signed_in = (
        None
        if secret is None
        else authenticate_web_session(db, service.pepper, secret, idle_minutes=idle_minutes)
    )
    if secret is None or signed_in is None:
        raise ApiError(401, "not signed in", headers=_CHALLENGE)
    return signed_in, secret


@router.post(
    "/web-session",
    operation_id="sign_in",
    status_code=201,
    responses={
        **problem(401, "Unknown or revoked token."),
        **problem(415, "Not JSON."),
        **problem(422, "No token."),
    },
)
def sign_in(
    body: WebSessionCreate,
    _json: JsonContent,
    response: Response,
    service: ServiceDep,
    db: DbSession,
) -> WebSessionPublic:
    """Sign the browser in with an API token; sets the session cookie."""
    principal = authenticate_token(db, service.pepper, body.token.strip())
    if principal is None:
        raise ApiError(401, "unknown or revoked token", field="token", headers=_CHALLENGE)
    service.first_run.used_by(principal.token_id)
    settings = service.settings
    secret, signed_in = start_web_session(
        db, service.pepper, principal, hours=settings.web_session_hours
    )
    record_audit(db, principal, "web_session.create", "api_token", principal.token_id)
    db.commit()
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(settings.web_session_hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
    )
    response.headers["Cache-Control"] = "no-store"
    return _public(signed_in, secret, service.pepper)


@router.get(
    "/web-session",
    operation_id="get_web_session",
    responses=problem(401, "Not signed in, or the sign-in ended."),
)
def read_web_session(
    response: Response,
    service: ServiceDep,
    db: DbSession,
    cookie: Annotated[str | None, Depends(SESSION_COOKIE_SCHEME)],
) -> WebSessionPublic:
    """Who is signed in, and the CSRF token for changes."""
    signed_in, secret = _signed_in(cookie, service, db)
    db.commit()  # the refreshed last_seen_at
    response.headers["Cache-Control"] = "no-store"
    return _public(signed_in, secret, service.pepper)


@router.delete(
    "/web-session",
    operation_id="sign_out",
    status_code=204,
    responses={
        **problem(401, "Not signed in."),
        **problem(403, "Missing or wrong CSRF token."),
    },
)
def sign_out(
    request: Request,
    service: ServiceDep,
    db: DbSession,
    cookie: Annotated[str | None, Depends(SESSION_COOKIE_SCHEME)],
) -> Response:
    """Sign out: the session ends on the server and the cookie is cleared."""
    signed_in, secret = _signed_in(cookie, service, db)
    if not csrf_token_matches(secret, service.pepper, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "missing or wrong CSRF token", field=CSRF_HEADER.lower())
    end_web_session(db, signed_in.session_id)
    record_audit(
        db, signed_in.principal, "web_session.end", "api_token", signed_in.principal.token_id
    )
    db.commit()
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
