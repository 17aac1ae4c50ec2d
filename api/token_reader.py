"""Bearer-token lookups that do not wait for the request thread pool.

FastAPI runs every sync dependency in the shared worker-thread pool, and each such hop waits for
a worker and then for the event loop to take the result back. Under a burst (40 stream opens at
once) each hop waited 20-90 ms, and a token check made of several sync dependencies (database
session, token lookup, role check, the route, its response validation) took 100-450 ms for a
route that does 3 ms of work (issue 12, ``benchmarks/service.py`` stream-burst row).

:meth:`TokenReader.authenticate` is the one lookup of a bearer token, awaited from the event
loop:

- on SQLite, on the event loop itself: one indexed read of ``api_tokens`` (about 15 us) through
  a connection of its own (not the request pool, whose checkout may wait), read-only
  (``query_only``) and with no busy timeout. The statement is compiled once from the model and
  run on the DBAPI cursor, its values converted by the columns' own types: through the ORM the
  same read cost about 1 ms of the event loop's time, Core 0.5 ms. A WAL reader does not wait
  for writers; should the database ever answer "busy" or "locked", the lookup is made again in
  a worker thread, where waiting is harmless;
- on PostgreSQL (a network round trip), in one worker-thread hop.

Nothing is cached: every request reads the token row, so a revoked or expired token is refused
at its next request, as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.db.models import ApiToken
from api.security import Principal, active_principal, authenticate_token, token_digest

__all__ = ["TokenReader"]


def _read_only_no_wait(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only = ON")
    cursor.execute("PRAGMA busy_timeout = 0")
    cursor.close()
    # Autocommit: each SELECT reads the latest committed state (a revocation just made).
    dbapi_connection.isolation_level = None


def _loop_engine(engine: Engine) -> Engine | None:
    """A read-only engine for the event loop when ``engine`` is a SQLite file; None otherwise."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if str(url.query.get("mode", "")) == "memory":
        return None
    loop = create_engine(
        make_url(url.render_as_string(hide_password=False)),
        connect_args={"check_same_thread": False},
        # One idle connection kept; more are made (never waited for) should two event loops
        # (tests) read at once.
        pool_size=1,
        max_overflow=-1,
    )
    event.listen(loop, "connect", _read_only_no_wait)
    return loop


_TOKENS = ApiToken.__table__.c
_COLUMNS = (
    _TOKENS.id,
    _TOKENS.token_hash,
    _TOKENS.name,
    _TOKENS.role,
    _TOKENS.revoked_at,
    _TOKENS.expires_at,
)


class _CompiledLookup:
    """The token row's read, compiled once for ``engine``'s dialect, run on a DBAPI cursor."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        dialect = engine.dialect
        statement = select(*_COLUMNS).where(_TOKENS.token_hash == bindparam("digest"))
        self._sql = str(statement.compile(dialect=dialect))
        no_conversion: Callable[[Any], Any] = lambda value: value  # noqa: E731
        self._convert = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) or no_conversion
            for column in _COLUMNS
        ]

    def __call__(self, digest: str) -> tuple[Any, ...] | None:
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, (digest,))
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            connection.close()  # back to the pool
        if row is None:
            return None
        return tuple(convert(value) for convert, value in zip(self._convert, row, strict=True))


class TokenReader:
    """Bearer token -> principal, without a wait for the request thread pool (SQLite).

    Parameters
    ----------
    engine : Engine
        The service's engine (its URL picks the path).
    sessions : sessionmaker
        The service's sessions, for lookups made in a worker thread.
    """

    def __init__(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._loop_engine = _loop_engine(engine)
        self._loop_lookup = (
            None if self._loop_engine is None else _CompiledLookup(self._loop_engine)
        )

    @property
    def on_event_loop(self) -> bool:
        """Whether lookups are made on the event loop (SQLite file database)."""
        return self._loop_lookup is not None

    async def authenticate(self, pepper: bytes, token: str) -> Principal | None:
        """The principal of a valid, unrevoked, unexpired token; None otherwise."""
        if self._loop_lookup is not None:
            digest = token_digest(pepper, token)
            if digest is None:
                return None
            try:
                row = self._loop_lookup(digest)
            except (sqlite3.Error, DBAPIError):
                pass  # busy, locked or not openable here: wait for it in a worker thread
            else:
                if row is None:
                    return None
                token_id, token_hash, name, role, revoked_at, expires_at = row
                return active_principal(
                    digest,
                    token_id=token_id,
                    token_hash=token_hash,
                    name=name,
                    role=role,
                    revoked_at=revoked_at,
                    expires_at=expires_at,
                )
        return await run_in_threadpool(self.authenticate_blocking, pepper, token)

    def authenticate_blocking(self, pepper: bytes, token: str) -> Principal | None:
        """:meth:`authenticate` for worker threads (the service's pool; waits if need be)."""
        with self._sessions() as db:
            return authenticate_token(db, pepper, token)

    def dispose(self) -> None:
        """Close the event loop's connections (at shutdown)."""
        if self._loop_engine is not None:
            self._loop_engine.dispose()
