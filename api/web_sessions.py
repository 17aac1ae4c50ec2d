"""Browser sign-in for the review page: an HttpOnly cookie bound to an API token, and CSRF.

A therapist signs in with their API token once; the browser then holds only a random session
secret in an ``HttpOnly; SameSite=Strict`` cookie (scripts cannot read it, other sites cannot
send it). The database keeps the secret's keyed hash and the token it stands for, so every
request re-checks that token: revoking it signs its browsers out, and the page has exactly the
token's role. A sign-in ends after ``IGRT_WEB_SESSION_HOURS``, or sooner when left unused for
``IGRT_WEB_SESSION_IDLE_MINUTES`` (a console left signed in does not stay open).

State-changing requests made with the cookie must also carry ``X-CSRF-Token``: a keyed hash of
the session secret (synchronizer token). The page learns it from ``GET /api/v1/web-session``,
which another origin cannot read, so a forged form or ``fetch`` from another site cannot supply
it even if a browser were to send the cookie.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from api.db.base import utc_now
from api.db.models import ApiToken, WebSession
from api.enums import RoleValues
from api.security import Principal, hash_token, token_is_active

__all__ = [
    "BACKGROUND_HEADER",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "SignedIn",
    "authenticate_web_session",
    "csrf_token_for",
    "csrf_token_matches",
    "end_web_session",
    "start_web_session",
]

SESSION_COOKIE = "igrt_session"
CSRF_HEADER = "X-CSRF-Token"
BACKGROUND_HEADER = "X-Igrt-Background"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_SECRET_CHARS = 100
# last_seen_at is written at most this often: a page polling every few seconds must not turn
# every read into a database write.
_SEEN_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class SignedIn:
    """A live browser session: who it is, and until when (UTC)."""

    principal: Principal
    session_id: str
    expires_at: datetime


def csrf_token_for(secret: str, pepper: bytes) -> str:
    """The CSRF token of the session whose cookie holds ``secret``."""
    return hash_token("csrf:" + secret, pepper)


def csrf_token_matches(secret: str, pepper: bytes, header_value: str | None) -> bool:
    """Whether a request's ``X-CSRF-Token`` header belongs to its session cookie."""
    if not header_value:
        return False
    return hmac.compare_digest(csrf_token_for(secret, pepper), header_value)


def start_web_session(
    db: Session, pepper: bytes, principal: Principal, *, hours: float
) -> tuple[str, SignedIn]:
    """Add a session row (not committed); return the cookie secret, shown only to the browser."""
    secret = secrets.token_urlsafe(32)
    row = WebSession(
        id=hash_token(secret, pepper),
        token_id=principal.token_id,
        expires_at=utc_now() + timedelta(hours=hours),
    )
    db.add(row)
    db.flush()
    return secret, SignedIn(principal=principal, session_id=row.id, expires_at=row.expires_at)


def authenticate_web_session(
    db: Session, pepper: bytes, secret: str, *, idle_minutes: float, touch: bool = True
) -> SignedIn | None:
    """The signed-in principal of a cookie secret, or None.

    None when the secret is unknown, the session ended, expired or was idle for longer than
    ``idle_minutes``, or its token was revoked. A live session's ``last_seen_at`` is refreshed
    (not committed) when older than a minute, unless ``touch`` is false: a page's own periodic
    refresh (header ``X-Igrt-Background: 1``) is not someone using it. The refresh ends the
    session's read transaction first: see :func:`_touch`.
    """
    if not secret or len(secret) > _MAX_SECRET_CHARS:
        return None
    row = db.get(WebSession, hash_token(secret, pepper))
    now = utc_now()
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    last_seen = row.last_seen_at or row.created_at
    if now - last_seen > timedelta(minutes=idle_minutes):
        return None
    token = db.get(ApiToken, row.token_id)
    if token is None or not token_is_active(db, token.id):
        return None
    if touch and now - last_seen > _SEEN_RESOLUTION:
        _touch(db, row.id, now)
    principal = Principal(token_id=token.id, name=token.name, role=RoleValues(token.role))
    return SignedIn(principal=principal, session_id=row.id, expires_at=row.expires_at)


def _touch(db: Session, session_id: str, now: datetime) -> None:
    # A page opens with several parallel reads, each wanting to refresh the same row. Written
    # from the read snapshot, all but the first would be refused on SQLite ("database is
    # locked" at commit, whatever the busy timeout) and the page would fail. A conditional
    # UPDATE as the first statement of a fresh transaction waits for the lock instead, and the
    # later ones find the row already fresh.
    db.commit()
    db.execute(
        update(WebSession)
        .where(WebSession.id == session_id)
        .where(
            or_(
                WebSession.last_seen_at.is_(None),
                WebSession.last_seen_at < now - _SEEN_RESOLUTION,
            )
        )
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )


def end_web_session(db: Session, session_id: str) -> None:
    """Mark a session signed out (not committed); nothing when it already ended."""
    row = db.get(WebSession, session_id)
    if row is not None and row.ended_at is None:
        row.ended_at = utc_now()
