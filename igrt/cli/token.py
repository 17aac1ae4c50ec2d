"""``igrt token``: create, list and revoke the service's API tokens.

The token is printed once, on creation; only a keyed hash is stored. The command works on the
database the service would use (``IGRT_DATA_DIR`` / ``IGRT_DATABASE_URL``) and migrates it first,
so a token can be made before the service ever started.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

_ROLES = ("console", "therapist", "physicist", "physician")


def register(commands: Any) -> None:
    """Add the ``token`` sub-command to ``commands`` (an argparse sub-parser action)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "token",
        help="manage the HTTP service's API tokens",
        description="Create, list and revoke API tokens of the HTTP service.",
    )
    actions = parser.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="create a token and print it once", description="Create an API token."
    )
    create.add_argument("--role", required=True, choices=_ROLES, help="what the token may do")
    create.add_argument("--name", required=True, help="who or what uses it, e.g. 'linac-3'")
    create.add_argument(
        "--expires-in",
        default=None,
        metavar="DURATION",
        help="the token stops working after this long: 90m, 12h, 30d (default: until revoked)",
    )
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="list tokens (never the tokens themselves)")
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", help="id shown by 'igrt token list'")
    revoke.set_defaults(handler=_revoke)


def load_settings() -> Any:
    """The service's settings from ``IGRT_*``; a bad value is bad input naming the variable."""
    from pydantic import ValidationError

    from api.core.config import Settings
    from igrt.errors import InvalidInputError

    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "IGRT_" + str(error["loc"][0]).upper() if error["loc"] else "IGRT_*"
        raise InvalidInputError(f"{name}: {error['msg']}", field=name) from None


def open_database(settings: Any) -> tuple[Any, Any]:
    """(session factory, engine) of the service's database, migrated to the head revision."""
    from api.db.engine import make_engine, make_session_factory
    from api.db.migrate import upgrade

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return make_session_factory(engine), engine


def _open() -> Any:
    from api.security import load_pepper

    settings = load_settings()
    sessions, engine = open_database(settings)
    return sessions, load_pepper(settings), engine


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> float:
    """``90m``, ``12h``, ``30d`` (or ``45s``) in seconds; at most 400 days."""
    from igrt.errors import InvalidInputError

    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS_S else ""
    number = value[: -len(unit)] if unit else value
    try:
        seconds = float(number) * _UNITS_S[unit or "s"]
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 400 * 86400:
        raise InvalidInputError(
            f"--expires-in {text!r}: give a positive duration such as 90m, 12h or 30d "
            "(at most 400d)",
            field="expires-in",
        )
    return seconds


def _create(arguments: argparse.Namespace) -> int:
    from datetime import timedelta

    from api.audit import record_audit
    from api.db.base import utc_now
    from api.enums import RoleValues
    from api.security import create_api_token
    from igrt.errors import InvalidInputError

    name = str(arguments.name).strip()
    if not name or len(name) > 100:
        raise InvalidInputError("the name must be 1 to 100 characters", field="name")
    expires_at = None
    if arguments.expires_in is not None:
        expires_at = utc_now() + timedelta(seconds=parse_duration_s(arguments.expires_in))
    sessions, pepper, engine = _open()
    try:
        with sessions() as db:
            row, token = create_api_token(
                db, pepper, name=name, role=RoleValues(arguments.role), expires_at=expires_at
            )
            detail = {
                "role": row.role,
                "expires_at": None if expires_at is None else expires_at.isoformat(),
            }
            record_audit(db, None, "token.create", "api_token", row.id, detail)
            db.commit()
    finally:
        engine.dispose()
    print(token)
    until = "" if expires_at is None else f", valid until {expires_at:%Y-%m-%d %H:%M} UTC"
    print(
        f"created {arguments.role} token {row.id} ({name!r}{until}); it is shown only now",
        file=sys.stderr,
    )
    return 0


def _list(arguments: argparse.Namespace) -> int:
    from sqlalchemy import select

    from api.db.models import ApiToken

    sessions, _, engine = _open()
    try:
        with sessions() as db:
            rows = db.scalars(select(ApiToken).order_by(ApiToken.created_at)).all()
    finally:
        engine.dispose()
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
        print(f"{row.id}  {row.role:<10} {state:<18} {row.token_prefix}...  {row.name}")
    return 0


def _revoke(arguments: argparse.Namespace) -> int:
    from api.audit import record_audit
    from api.security import revoke_api_token
    from igrt.errors import InvalidInputError

    sessions, _, engine = _open()
    try:
        with sessions() as db:
            row = revoke_api_token(db, arguments.token_id)
            if row is None:
                raise InvalidInputError(f"no token with id {arguments.token_id}", field="token_id")
            record_audit(db, None, "token.revoke", "api_token", row.id, {"role": row.role})
            db.commit()
    finally:
        engine.dispose()
    print(f"revoked token {arguments.token_id}", file=sys.stderr)
    return 0
