"""SQLite serves one service process: an OS file lock beside the database, held while it runs.

Two ``igrt serve`` processes on one SQLite file would each run a registration worker over the
same jobs and each keep an in-memory live monitor and stream table the other cannot see; the
second one refuses to start instead. The lock is an exclusive ``flock`` on
``<database>.lock`` (the holder's pid written inside for the message): the operating system
releases it when the process ends in any way, kill -9 and power loss included, so a crash
never leaves a stale lock. Several replicas need PostgreSQL (``IGRT_DATABASE_URL``) and
Redis (``IGRT_REDIS_URL``).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from api.errors import DatabaseInUseError

__all__ = ["SqliteProcessLock", "sqlite_file"]


def sqlite_file(database_url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser().resolve()


class SqliteProcessLock:
    """The exclusive lock of one process on one SQLite database (see the module docstring)."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, database_url: str) -> SqliteProcessLock | None:
        """Lock the database of ``database_url``; None when it is not a SQLite file.

        Raises
        ------
        DatabaseInUseError
            If another process holds it; the message names that process and what to do.
        """
        database = sqlite_file(database_url)
        if database is None:
            return None
        path = database.with_name(f"{database.name}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise DatabaseInUseError(
                f"another igrt service process (pid {holder}) is using the SQLite database "
                f"{database}; SQLite serves one process. Stop that one, or run several "
                "replicas on PostgreSQL (IGRT_DATABASE_URL) with Redis (IGRT_REDIS_URL)."
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        return cls(path, descriptor)

    def release(self) -> None:
        """Unlock (also done by the operating system when the process ends)."""
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None
