"""The event loop's bearer-token lookup (:class:`api.token_reader.TokenReader`) agrees with the
ORM's (:func:`api.security.authenticate_token`) on every kind of token, revocation included."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from api.db.base import utc_now
from api.db.engine import make_engine, make_session_factory
from api.db.migrate import upgrade
from api.db.models import ApiToken
from api.enums import RoleValues
from api.security import authenticate_token, create_api_token, load_pepper, revoke_api_token
from api.token_reader import TokenReader
from tests.api.conftest import make_settings


def _both(reader: TokenReader, db: Session, pepper: bytes, token: str) -> tuple[object, object]:
    db.rollback()  # a fresh snapshot for the ORM's read
    return asyncio.run(reader.authenticate(pepper, token)), authenticate_token(db, pepper, token)


def test_the_loop_lookup_agrees_with_the_orm_and_sees_revocation_at_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    pepper = load_pepper(settings)
    sessions = make_session_factory(engine)
    reader = TokenReader(engine, sessions)
    assert reader.on_event_loop
    try:
        with sessions() as db:
            row, token = create_api_token(db, pepper, name="linac 3", role=RoleValues.CONSOLE)
            later, expiring = create_api_token(
                db,
                pepper,
                name="expires",
                role=RoleValues.PHYSICIST,
                expires_at=utc_now() + timedelta(days=1),
            )
            db.commit()

            on_loop, orm = _both(reader, db, pepper, token)
            assert on_loop == orm
            assert orm is not None
            assert orm.role is RoleValues.CONSOLE
            on_loop, orm = _both(reader, db, pepper, expiring)
            assert on_loop == orm
            assert orm is not None
            assert orm.role is RoleValues.PHYSICIST
            for wrong in (token + "x", "not-igrt", "igrt_" + "x" * 300, ""):
                assert _both(reader, db, pepper, wrong) == (None, None)
            assert _both(reader, db, b"another pepper..", token) == (None, None)

            # Expired a second ago (the stored time goes through the column's own type).
            db.execute(
                update(ApiToken)
                .where(ApiToken.id == later.id)
                .values(expires_at=utc_now() - timedelta(seconds=1))
            )
            db.commit()
            assert _both(reader, db, pepper, expiring) == (None, None)

            # Revoked by another connection: refused at the very next lookup (nothing cached).
            assert asyncio.run(reader.authenticate(pepper, token)) is not None
            revoke_api_token(db, row.id)
            db.commit()
            assert _both(reader, db, pepper, token) == (None, None)
    finally:
        reader.dispose()
        engine.dispose()


def test_postgresql_is_read_in_a_worker_thread() -> None:
    pytest.importorskip("psycopg")
    engine = make_engine("postgresql://igrt@localhost/igrt")  # never connected
    try:
        assert not TokenReader(engine, make_session_factory(engine)).on_event_loop
    finally:
        engine.dispose()
