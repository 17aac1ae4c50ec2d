"""SQLite stays single-process: a second service on the same database file refuses to start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.db.single_process import SqliteProcessLock, sqlite_file
from api.errors import DatabaseInUseError
from api.main import create_app
from tests.api.conftest import make_settings
from tests.api.live_server import LiveServer, free_port, service_environment


def test_the_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'igrt.sqlite3'}"
    first = SqliteProcessLock.acquire(url)
    assert first is not None
    assert first.path == tmp_path / "igrt.sqlite3.lock"
    with pytest.raises(DatabaseInUseError, match=rf"\(pid {os.getpid()}\)") as refused:
        SqliteProcessLock.acquire(url)
    assert str(tmp_path / "igrt.sqlite3") in str(refused.value)
    assert "PostgreSQL (IGRT_DATABASE_URL)" in str(refused.value)
    first.release()
    first.release()  # idempotent
    again = SqliteProcessLock.acquire(url)
    assert again is not None
    again.release()


@pytest.mark.parametrize(
    "url", ["postgresql://u@h/db", "sqlite://", "sqlite:///:memory:", "postgresql+psycopg://h/d"]
)
def test_only_a_sqlite_file_is_locked(url: str) -> None:
    assert sqlite_file(url) is None
    assert SqliteProcessLock.acquire(url) is None


def test_a_second_app_on_the_same_file_refuses_to_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        second = TestClient(create_app(settings))
        with pytest.raises(DatabaseInUseError, match="SQLite serves one process"), second:
            pass
    with TestClient(create_app(settings)) as client:  # released on shutdown
        assert client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_a_second_igrt_serve_exits_with_a_clear_error_and_a_crash_leaves_no_stale_lock(
    tmp_path: Path,
) -> None:
    env = service_environment(tmp_path / "data", demo_data="false", first_run_token="false")
    first = LiveServer(env, tmp_path / "first.log").start()
    try:
        assert first.process is not None
        second = subprocess.run(
            [sys.executable, "-m", "igrt.cli.main", "serve", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2, second.stderr
        message = second.stderr.strip()
        assert message.startswith(f"igrt: another igrt service process (pid {first.process.pid})")
        assert str(tmp_path / "data" / "igrt.sqlite3") in message
        assert "Traceback" not in second.stderr
    finally:
        first.kill()  # kill -9: the operating system releases the lock with the process
    restarted = LiveServer(env, tmp_path / "restarted.log").start()
    assert restarted.stop(), restarted.log()[-2000:]
