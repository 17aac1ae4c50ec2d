"""Engine and session factory for SQLite (default) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "SQLITE_BEGIN_OPTION",
    "make_engine",
    "make_session_factory",
    "make_write_session_factory",
    "normalise_url",
]


def normalise_url(url: str) -> str:
    """Pick psycopg 3 for a bare ``postgresql://`` URL (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # WAL + synchronous FULL: a committed (acknowledged) transaction survives a crash.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")
    cursor.execute("PRAGMA busy_timeout = 10000")
    cursor.close()
    # pysqlite's own transaction handling skips BEGIN before DDL; let SQLAlchemy emit BEGIN
    # itself so that every transaction (migrations included) is atomic (SQLAlchemy's
    # documented recipe for "serializable isolation / savepoints / transactional DDL").
    dbapi_connection.isolation_level = None


SQLITE_BEGIN_OPTION = "igrt_sqlite_begin"
"""Execution option naming SQLite's BEGIN mode (``IMMEDIATE``: take the write lock at once)."""


def _sqlite_begin(connection: Any) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


def make_engine(url: str, *, pool_size: int = 10, pool_timeout_s: float = 10.0) -> Engine:
    """An engine for ``url`` with the durability settings this service relies on.

    The pool keeps ``pool_size`` connections and opens as many again on demand; a request that
    finds none free waits ``pool_timeout_s`` and then fails (503), instead of the default 30 s.
    """
    normalised = normalise_url(url)
    pool = {"pool_size": pool_size, "max_overflow": pool_size, "pool_timeout": pool_timeout_s}
    if make_url(normalised).get_backend_name() == "sqlite":
        engine = create_engine(normalised, connect_args={"check_same_thread": False}, **pool)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(normalised, pool_pre_ping=True, **pool)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (responses are built after it)."""
    return sessionmaker(engine, expire_on_commit=False)


def make_write_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for read-check-write transactions (a first review, a new patient).

    On SQLite every transaction of these sessions begins ``IMMEDIATE``: it holds the write lock
    from its first read, so a concurrent writer waits (busy timeout) instead of invalidating
    the read snapshot ("database is locked" at the write, whatever the timeout). PostgreSQL
    ignores the option: its row locks and constraints do that job.
    """
    return sessionmaker(
        engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}), expire_on_commit=False
    )
