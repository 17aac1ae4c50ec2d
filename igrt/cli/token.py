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
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="list tokens (never the tokens themselves)")
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", help="id shown by 'igrt token list'")
    revoke.set_defaults(handler=_revoke)


def _open() -> Any:
    from pydantic import ValidationError

    from api.core.config import Settings
    from api.db.engine import make_engine, make_session_factory
    from api.db.migrate import upgrade
    from api.security import load_pepper
    from igrt.errors import InvalidInputError

    try:
        settings = Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "IGRT_" + str(error["loc"][0]).upper() if error["loc"] else "IGRT_*"
        raise InvalidInputError(f"{name}: {error['msg']}", field=name) from None
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return make_session_factory(engine), load_pepper(settings), engine


def _create(arguments: argparse.Namespace) -> int:
    from api.audit import record_audit
    from api.enums import RoleValues
    from api.security import create_api_token
    from igrt.errors import InvalidInputError

    name = str(arguments.name).strip()
    if not name or len(name) > 100:
        raise InvalidInputError("the name must be 1 to 100 characters", field="name")
    sessions, pepper, engine = _open()
    try:
        with sessions() as db:
            row, token = create_api_token(db, pepper, name=name, role=RoleValues(arguments.role))
            record_audit(db, None, "token.create", "api_token", row.id, {"role": row.role})
            db.commit()
    finally:
        engine.dispose()
    print(token)
    print(
        f"created {arguments.role} token {row.id} ({name!r}); it is shown only now",
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
