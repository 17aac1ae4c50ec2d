"""API tokens: creation, keyed hashing, authentication and role checks.

A token is ``igrt_`` followed by 43 URL-safe characters (256 random bits). Only
``HMAC-SHA256(pepper, token)`` is stored: with that much entropy a slow password hash adds
nothing, and the pepper (``IGRT_TOKEN_PEPPER``, or a random one generated once into
``<data_dir>/token-pepper``) makes a stolen database useless for forging tokens. The plain token
is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.core.config import Settings
from api.db.base import utc_now
from api.db.models import ApiToken
from api.enums import RoleValues

__all__ = [
    "TOKEN_PREFIX",
    "Principal",
    "active_principal",
    "authenticate_token",
    "create_api_token",
    "hash_token",
    "load_pepper",
    "revoke_api_token",
    "token_digest",
    "token_is_active",
]

TOKEN_PREFIX = "igrt_"
_PEPPER_BYTES = 32
_MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, display name and role."""

    token_id: str
    name: str
    role: RoleValues


def load_pepper(settings: Settings) -> bytes:
    """The token pepper: ``IGRT_TOKEN_PEPPER``, else the generated file (created on first use)."""
    if settings.token_pepper is not None:
        value = settings.token_pepper.get_secret_value()
        if len(value) < 16:
            raise ValueError("IGRT_TOKEN_PEPPER must be at least 16 characters")
        return value.encode()
    path = settings.pepper_path
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    pepper = secrets.token_bytes(_PEPPER_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its pepper
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as handle:
        handle.write(pepper.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return pepper


def hash_token(token: str, pepper: bytes) -> str:
    """The stored form of a token: hex HMAC-SHA256 keyed with the pepper."""
    return hmac.new(pepper, token.encode(), hashlib.sha256).hexdigest()


def create_api_token(
    db: Session,
    pepper: bytes,
    *,
    name: str,
    role: RoleValues,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Add a token row (not committed) and return it with the plain token, shown only once.

    ``expires_at`` (UTC): the token stops working then (None: until revoked).
    """
    if not name.strip() or len(name) > 100:
        raise ValueError("a token name must be 1 to 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name.strip(),
        role=RoleValues(role).value,
        token_hash=hash_token(token, pepper),
        token_prefix=token[: len(TOKEN_PREFIX) + 6],
        expires_at=expires_at,
    )
    db.add(row)
    db.flush()
    return row, token


def token_digest(pepper: bytes, token: str) -> str | None:
    """The stored form to look ``token`` up by; None for a string that cannot be a token."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_CHARS:
        return None
    return hash_token(token, pepper)


def active_principal(
    digest: str,
    *,
    token_id: str,
    token_hash: str,
    name: str,
    role: str,
    revoked_at: datetime | None,
    expires_at: datetime | None,
) -> Principal | None:
    """The principal of the token row found by ``digest``; None if revoked or expired."""
    if revoked_at is not None or (expires_at is not None and expires_at <= utc_now()):
        return None
    # The lookup was by digest; compare again in constant time for good measure.
    if not hmac.compare_digest(token_hash, digest):
        return None
    return Principal(token_id=token_id, name=name, role=RoleValues(role))


def authenticate_token(db: Session, pepper: bytes, token: str) -> Principal | None:
    """The principal of a valid, unrevoked token; None otherwise."""
    digest = token_digest(pepper, token)
    if digest is None:
        return None
    row = db.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).one_or_none()
    if row is None:
        return None
    return active_principal(
        digest,
        token_id=row.id,
        token_hash=row.token_hash,
        name=row.name,
        role=row.role,
        revoked_at=row.revoked_at,
        expires_at=row.expires_at,
    )


def _active(row: ApiToken) -> bool:
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > utc_now())


def token_is_active(db: Session, token_id: str) -> bool:
    """Whether the token still works (not revoked, not expired): open connections re-check."""
    row = db.get(ApiToken, token_id)
    return row is not None and _active(row)


def revoke_api_token(db: Session, token_id: str) -> ApiToken | None:
    """Mark a token revoked (not committed); None when there is no such token."""
    row = db.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utc_now()
    return row
