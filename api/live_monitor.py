"""Fan-out of real-time stream results to the review pages watching a session.

The console streams frames on ``/sessions/{id}/stream``; therapists watch on
``/sessions/{id}/monitor``. Both WebSockets live on the service's event loop, so an in-process
hub of bounded queues is enough for one service process. A watcher that falls behind loses
its oldest messages (the live trace can skip a frame; the console's stream never waits for
a slow browser). Several service replicas would need a broker (Redis pub/sub) here instead.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["LiveMonitorHub"]


class LiveMonitorHub:
    """Per-session subscriber queues.

    Parameters
    ----------
    max_queued : int, optional
        Messages kept per watcher before the oldest are dropped.
    """

    def __init__(self, *, max_queued: int = 512) -> None:
        self._max_queued = max_queued
        self._watchers: defaultdict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    def watchers(self, session_id: str) -> int:
        """How many pages watch ``session_id``."""
        return len(self._watchers.get(session_id, ()))

    @contextmanager
    def watch(self, session_id: str) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        """A queue receiving every message published for ``session_id`` while in the block."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._max_queued)
        self._watchers[session_id].add(queue)
        try:
            yield queue
        finally:
            watchers = self._watchers.get(session_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[session_id]

    def publish(self, session_id: str, message: dict[str, Any]) -> None:
        """Give ``message`` to every watcher of ``session_id`` (never blocks; call on the loop)."""
        for queue in self._watchers.get(session_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)
