"""Fan-out of real-time stream results to the review pages watching a session.

The console streams frames on ``/sessions/{id}/stream``; therapists watch on
``/sessions/{id}/monitor``. Both WebSockets live on the service's event loop, so an in-process
hub of bounded queues is enough for one service process (:class:`LiveMonitorHub`). A watcher
that falls behind loses its oldest messages (the live trace can skip a frame; the console's
stream never waits for a slow browser).

Several replicas behind a load balancer (``IGRT_REDIS_URL``) use :class:`RedisLiveMonitorHub`:
the console's stream lives in one replica and the watcher's page may be on another, so each
message also goes through Redis pub/sub (one channel per session) to every replica.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from api.core.logging import log_event

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["RELAY_UNAVAILABLE", "LiveMonitorHub", "RedisLiveMonitorHub"]


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
        self._deliver(session_id, message)

    async def start(self) -> None:
        """Connect to what the hub needs (nothing: one process)."""

    async def close(self) -> None:
        """Disconnect (nothing to do: one process)."""

    def _deliver(self, session_id: str, message: dict[str, Any]) -> None:
        """Give ``message`` to this process's watchers of ``session_id``."""
        for queue in self._watchers.get(session_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)


RELAY_UNAVAILABLE = "relay_unavailable"
"""``code`` of the ``error`` message watchers get while Redis cannot be reached."""

_CHANNEL_PREFIX = "igrt:live:"
_RETRY_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0)
_LOG_WARNING = logging.WARNING
_CONNECT_TIMEOUT_S = 5.0  # a loaded host can take seconds to accept


class RedisLiveMonitorHub(LiveMonitorHub):
    """The hub of one replica among several: local delivery at once, Redis pub/sub between them.

    A published message goes to this replica's watchers straight away and into a bounded
    outbox that one task sends to Redis (channel ``igrt:live:<session id>``, pipelined when
    several wait). Every replica subscribes to ``igrt:live:*`` and gives what other replicas
    sent to its own watchers of that session (its own messages, tagged with a per-process
    origin, it skips; a message for a session nobody here watches is not even parsed).

    Redis is not on the console's path: ``publish`` never waits for it, and while it cannot be
    reached the streams go on, this replica's watchers still see this replica's streams, and
    every watcher is told (an ``error`` message with code ``relay_unavailable``) that streams
    on other replicas are not shown; the outage and the messages it dropped are logged.

    Parameters
    ----------
    url : str
        ``redis://`` (or ``rediss://``, ``unix://``) URL of the Redis server.
    max_queued : int, optional
        Messages kept per watcher before the oldest are dropped.
    max_outgoing : int, optional
        Messages waiting for Redis before the oldest are dropped.
    """

    def __init__(self, url: str, *, max_queued: int = 512, max_outgoing: int = 4096) -> None:
        super().__init__(max_queued=max_queued)
        self._url = url
        self._origin = uuid.uuid4().hex
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(max_outgoing)
        self._client: Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sending_ok = True
        self._receiving_ok = True
        self.dropped = 0
        """Messages that did not reach Redis (outbox full, or Redis unreachable)."""

    @property
    def client_name(self) -> str:
        """The name of this hub's Redis connections (seen in ``CLIENT LIST``)."""
        return f"igrt-live-{self._origin[:12]}"

    @property
    def relay_ok(self) -> bool:
        """Whether messages currently flow to and from the other replicas."""
        return self._sending_ok and self._receiving_ok

    @contextmanager
    def watch(self, session_id: str) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        """As :meth:`LiveMonitorHub.watch`; a new watcher hears at once if Redis is down."""
        with super().watch(session_id) as queue:
            if not self.relay_ok:
                queue.put_nowait(_relay_unavailable())
            yield queue

    def publish(self, session_id: str, message: dict[str, Any]) -> None:
        """To this replica's watchers now, and to the others through Redis (never blocks)."""
        self._deliver(session_id, message)
        if self._outbox.full():
            self._outbox.get_nowait()
            self.dropped += 1
        self._outbox.put_nowait((session_id, message))

    async def start(self) -> None:
        """Start sending and receiving (in the background; an outage is retried, not fatal)."""
        try:
            import redis.asyncio as redis
        except ImportError as error:
            raise RuntimeError(
                "IGRT_REDIS_URL is set but the redis package is missing: pip install 'igrt[redis]'"
            ) from error
        # No read timeout: the subscription waits for messages as long as it takes.
        self._client = redis.from_url(
            self._url,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            socket_keepalive=True,
            client_name=self.client_name,  # which replica is which in CLIENT LIST
        )
        self._tasks = [
            asyncio.create_task(self._send_forever(self._client), name="live-monitor-send"),
            asyncio.create_task(self._receive_forever(self._client), name="live-monitor-receive"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """Both tasks run until closed: one that ends otherwise (a bug) must not go unseen."""
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self._sending_ok = self._receiving_ok = False
            self._relay_lost(task.get_name(), error)

    async def close(self) -> None:
        """Stop both tasks and close the connections."""
        for task in self._tasks:
            task.cancel()
        # A task that died of an error was reported when it ended (_task_ended).
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- sending --------------------------------------------------------------------------

    async def _send_forever(self, client: Redis) -> None:
        from redis.exceptions import RedisError

        try:
            await client.ping()  # connect now, not on the first frame of the first stream
        except (RedisError, OSError) as error:
            self._sending_failed(error)
        failures = 0
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 256:
                batch.append(self._outbox.get_nowait())
            envelopes = self._envelopes(batch)
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for channel, envelope in envelopes:
                        pipe.publish(channel, envelope)
                    await pipe.execute()
            except (RedisError, OSError) as error:
                self.dropped += len(batch)
                self._sending_failed(error)
                await asyncio.sleep(_RETRY_DELAYS_S[min(failures, len(_RETRY_DELAYS_S) - 1)])
                failures += 1
                continue
            failures = 0
            if not self._sending_ok:
                self._sending_ok = True
                self._relay_restored("send")

    def _envelopes(self, batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
        """(channel, JSON) of each message; one that JSON cannot carry is logged and left out."""
        envelopes = []
        for session_id, message in batch:
            try:
                text = json.dumps({"origin": self._origin, "message": message}, allow_nan=False)
            except (TypeError, ValueError) as error:
                self.dropped += 1
                log_event(
                    "live monitor message not relayed: not JSON",
                    level=_LOG_WARNING,
                    error=str(error),
                )
                continue
            envelopes.append((_CHANNEL_PREFIX + session_id, text))
        return envelopes

    def _sending_failed(self, error: BaseException) -> None:
        if self._sending_ok:
            self._sending_ok = False
            self._relay_lost("send", error)

    # --- receiving ------------------------------------------------------------------------

    async def _receive_forever(self, client: Redis) -> None:
        from redis.exceptions import RedisError

        failures = 0
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(_CHANNEL_PREFIX + "*")
                if not self._receiving_ok:
                    self._receiving_ok = True
                    self._relay_restored("receive")
                failures = 0
                await self._receive_from(pubsub)
            except (RedisError, OSError) as error:
                if self._receiving_ok:
                    self._receiving_ok = False
                    self._relay_lost("receive", error)
                await asyncio.sleep(_RETRY_DELAYS_S[min(failures, len(_RETRY_DELAYS_S) - 1)])
                failures += 1
            finally:
                with suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _receive_from(self, pubsub: PubSub) -> None:
        async for item in pubsub.listen():
            channel = item.get("channel")
            if item.get("type") != "pmessage" or not isinstance(channel, bytes):
                continue
            session_id = channel.decode(errors="replace").removeprefix(_CHANNEL_PREFIX)
            if not self._watchers.get(session_id):
                continue  # nobody here watches this session
            try:
                envelope = json.loads(item["data"])
                origin, message = envelope["origin"], envelope["message"]
            except (ValueError, TypeError, KeyError):
                log_event("live monitor message ignored: not an igrt envelope", level=_LOG_WARNING)
                continue
            if origin != self._origin and isinstance(message, dict):
                self._deliver(session_id, message)

    # --- telling watchers -----------------------------------------------------------------

    def _relay_lost(self, direction: str, error: BaseException) -> None:
        log_event(
            "live monitor relay lost: streams on other replicas are not shown",
            level=_LOG_WARNING,
            direction=direction,
            error=type(error).__name__,
        )
        for session_id in list(self._watchers):
            self._deliver(session_id, _relay_unavailable())

    def _relay_restored(self, direction: str) -> None:
        log_event("live monitor relay restored", direction=direction, dropped=self.dropped)
        if self.relay_ok:
            for session_id in list(self._watchers):
                self._deliver(session_id, {"type": "relay_restored"})


def _relay_unavailable() -> dict[str, Any]:
    return {
        "type": "error",
        "code": RELAY_UNAVAILABLE,
        "detail": "the live monitor cannot reach the other service replicas (Redis): "
        "streams sent to another replica are not shown",
        "field": None,
    }
