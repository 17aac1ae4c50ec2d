"""The live-monitor hub of several replicas: Redis pub/sub between hubs (the machine's Redis).

Two hubs on one event loop stand for two replicas: what a stream publishes on one reaches the
watchers of the other, once, in order. Without Redis the hub keeps working for its own
watchers and tells them that other replicas' streams are not shown.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from api.live_monitor import RELAY_UNAVAILABLE, LiveMonitorHub, RedisLiveMonitorHub
from tests.api.live_server import free_port
from tests.api.redis_server import require_redis

TIMEOUT_S = 10.0


@pytest.fixture
def redis_url() -> str:
    return require_redis()


def session() -> str:
    return f"test-{uuid.uuid4().hex}"


@asynccontextmanager
async def started(*hubs: LiveMonitorHub) -> AsyncIterator[None]:
    for hub in hubs:
        await hub.start()
    try:
        yield
    finally:
        for hub in hubs:
            await hub.close()


async def subscribed(hub: RedisLiveMonitorHub, probe_session: str) -> None:
    """Wait until ``hub`` receives from Redis (its subscription is asynchronous)."""
    other = RedisLiveMonitorHub(hub._url)
    async with started(other):
        with hub.watch(probe_session) as queue:
            while True:
                other.publish(probe_session, {"type": "probe"})
                try:
                    await asyncio.wait_for(queue.get(), 0.2)
                    return
                except TimeoutError:
                    continue


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_message_published_on_one_replica_reaches_the_watchers_of_another(
    redis_url: str,
) -> None:
    async def scenario() -> None:
        a, b = RedisLiveMonitorHub(redis_url), RedisLiveMonitorHub(redis_url)
        s1, s2 = session(), session()
        async with started(a, b):
            await subscribed(b, session())
            await subscribed(a, session())
            with a.watch(s1) as on_a, b.watch(s1) as on_b, b.watch(s2) as other_session:
                messages = [{"type": "result", "frame_index": n} for n in range(50)]
                for message in messages:
                    a.publish(s1, message)
                received = [await asyncio.wait_for(on_b.get(), TIMEOUT_S) for _ in messages]
                assert received == messages  # every one, in order
                # The publishing replica's own watcher got each message once, at once, and
                # not again when it came back from Redis.
                await asyncio.sleep(0.3)
                assert [on_a.get_nowait() for _ in messages] == messages
                assert on_a.empty()
                assert on_b.empty()
                assert other_session.empty()
            assert a.relay_ok
            assert b.relay_ok
            assert a.dropped == b.dropped == 0

    run(scenario)


def test_replicas_watching_nothing_ignore_the_traffic(redis_url: str) -> None:
    async def scenario() -> None:
        a, b = RedisLiveMonitorHub(redis_url), RedisLiveMonitorHub(redis_url)
        s1, s2 = session(), session()
        async with started(a, b):
            await subscribed(b, session())
            with b.watch(s2) as marker:
                a.publish(s1, {"type": "result", "frame_index": 0})  # nobody on b watches s1
                a.publish(s2, {"type": "marker"})  # one connection each way: s1's went first
                assert await asyncio.wait_for(marker.get(), TIMEOUT_S) == {"type": "marker"}
            with b.watch(s1) as late:  # a watcher sees what comes after it arrived
                a.publish(s1, {"type": "result", "frame_index": 1})
                assert await asyncio.wait_for(late.get(), TIMEOUT_S) == {
                    "type": "result",
                    "frame_index": 1,
                }
                await asyncio.sleep(0.1)
                assert late.empty()

    run(scenario)


def test_a_message_json_cannot_carry_is_not_relayed_and_the_rest_flow(redis_url: str) -> None:
    async def scenario() -> None:
        a, b = RedisLiveMonitorHub(redis_url), RedisLiveMonitorHub(redis_url)
        s1 = session()
        async with started(a, b):
            await subscribed(b, session())
            with b.watch(s1) as on_b:
                a.publish(s1, {"type": "result", "excursion_mm": float("nan")})
                a.publish(s1, {"type": "result", "excursion_mm": 1.0})
                assert await asyncio.wait_for(on_b.get(), TIMEOUT_S) == {
                    "type": "result",
                    "excursion_mm": 1.0,
                }
            assert a.dropped == 1

    run(scenario)


def test_without_redis_local_watchers_still_see_local_streams_and_are_told() -> None:
    async def scenario() -> None:
        hub = RedisLiveMonitorHub(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
        s1 = session()
        async with started(hub):
            with hub.watch(s1) as queue:
                hub.publish(s1, {"type": "result", "frame_index": 0})  # never blocks
                assert queue.get_nowait() == {"type": "result", "frame_index": 0}
                told = await asyncio.wait_for(queue.get(), TIMEOUT_S)
                assert told["type"] == "error"
                assert told["code"] == RELAY_UNAVAILABLE
                assert "other service replicas" in told["detail"]
            assert not hub.relay_ok
            with hub.watch(s1) as newcomer:  # a watcher arriving during the outage hears too
                assert newcomer.get_nowait()["code"] == RELAY_UNAVAILABLE
            for _ in range(10_000):  # a long outage: the outbox is bounded, publish still O(1)
                hub.publish(s1, {"type": "result"})
            await asyncio.sleep(0)
            assert hub.dropped >= 10_000 - 4096

    run(scenario)


def test_the_relay_comes_back_after_an_outage(redis_url: str) -> None:
    """A broken connection (Redis restarted, network blip) is reconnected and re-subscribed."""

    async def scenario() -> None:
        a, b = RedisLiveMonitorHub(redis_url), RedisLiveMonitorHub(redis_url)
        s1 = session()
        async with started(a, b):
            await subscribed(b, session())
            assert b._client is not None
            # Drop b's subscription connection from the server side, as a Redis restart does.
            clients: list[dict[str, Any]] = await b._client.client_list(_type="pubsub")
            killed = [c for c in clients if c["name"] == b.client_name]
            assert len(killed) == 1
            await b._client.client_kill_filter(_id=killed[0]["id"])
            with b.watch(s1) as on_b:
                deadline = asyncio.get_running_loop().time() + TIMEOUT_S
                received: dict[str, Any] = {}
                while asyncio.get_running_loop().time() < deadline:
                    a.publish(s1, {"type": "result", "frame_index": 7})
                    try:
                        received = await asyncio.wait_for(on_b.get(), 0.3)
                    except TimeoutError:
                        continue
                    if received.get("type") == "result":
                        break
                assert received == {"type": "result", "frame_index": 7}

    run(scenario)


def test_a_relay_task_that_dies_of_a_bug_is_not_silent(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: RedisLiveMonitorHub, pubsub: Any) -> None:
        raise ValueError("a bug in the receiving loop")

    monkeypatch.setattr(RedisLiveMonitorHub, "_receive_from", broken)

    async def scenario() -> None:
        hub = RedisLiveMonitorHub(redis_url)
        with hub.watch(session()) as queue:
            async with started(hub):
                told = await asyncio.wait_for(queue.get(), TIMEOUT_S)
                assert told["code"] == RELAY_UNAVAILABLE
                assert not hub.relay_ok

    run(scenario)
