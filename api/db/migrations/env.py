"""Alembic environment.

Programmatic use (:func:`api.db.migrate.upgrade`) passes the engine in ``config.attributes``;
the ``alembic`` command line (``alembic -c api/db/alembic.ini ...``) reads ``IGRT_DATABASE_URL``
through :class:`api.core.config.Settings`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from api.core.config import Settings
from api.db import models  # noqa: F401  (registers every table on the metadata)
from api.db.base import Base
from api.db.engine import make_engine

config = context.config

# Any fixed 64-bit number, the same in every replica: service replicas starting together
# against one PostgreSQL take turns, and the later ones find the schema already at head.
_MIGRATION_LOCK_KEY = 0x6967_7274_6D69_6772  # "igrtmigr"


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if isinstance(engine, Engine):
        return engine
    return make_engine(Settings().database_url)


def run_migrations_online() -> None:
    """Migrate through a live connection (the only mode this project uses)."""
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            transactional_ddl=True,  # SQLite too: the engine emits BEGIN (api.db.engine)
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Released at commit; taken before Alembic reads the current revision.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run them online")
run_migrations_online()
