"""The machine's Redis for the replica tests (``IGRT_TEST_REDIS_URL``).

Default ``redis://127.0.0.1:6379/0``. Tests that need it skip with the reason when it cannot be
reached, or fail when ``IGRT_REQUIRE_REDIS`` is set (as ``.ci/run`` does: CI machines run Redis).
Pub/sub channels are shared by every database of a server, so tests keep apart by their
sessions' random ids, never by database number.
"""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("IGRT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_state: dict[str, str | None] = {}


def redis_unreachable_reason() -> str | None:
    """None when Redis answers, else why not (checked once per run)."""
    if "reason" not in _state:
        try:
            import redis
        except ImportError:
            _state["reason"] = "redis-py is not installed (pip install 'igrt[redis]')"
        else:
            try:
                with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3) as client:
                    client.ping()
                _state["reason"] = None
            except Exception as exc:
                _state["reason"] = f"Redis not reachable at {REDIS_URL} ({type(exc).__name__})"
    return _state["reason"]


def require_redis() -> str:
    """The Redis URL, or skip (fail under ``IGRT_REQUIRE_REDIS``) when it cannot be reached."""
    reason = redis_unreachable_reason()
    if reason is not None:
        if os.environ.get("IGRT_REQUIRE_REDIS"):
            pytest.fail(f"IGRT_REQUIRE_REDIS is set but {reason}")
        pytest.skip(reason)
    return REDIS_URL
