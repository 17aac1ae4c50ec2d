"""The live monitor: the fan-out hub (unit, asyncio) and ``/sessions/{id}/monitor``.

The WebSocket runs on the test client's event loop (its blocking portal), so messages are
published on that loop with ``client.portal.call`` exactly as a stream on the server would.
Every receive is bounded in time, so a message that never comes fails the test instead of
hanging it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import pytest
from starlette.testclient import WebSocketTestSession

from api.enums import RoleValues
from api.live_monitor import LiveMonitorHub
from api.web_sessions import SESSION_COOKIE
from igrt.protocol import DEFAULT_PROTOCOL
from tests.api.conftest import InProcessApi
from tests.api.fake_results import service_of

POLICY_VIOLATION = 1008
RECEIVE_TIMEOUT_S = 10.0

# --- the hub -------------------------------------------------------------------------------


def test_a_watcher_gets_its_sessions_messages_in_order() -> None:
    async def scenario() -> None:
        hub = LiveMonitorHub()
        with hub.watch("s1") as queue:
            assert hub.watchers("s1") == 1
            hub.publish("s1", {"n": 1})
            hub.publish("s2", {"n": "other session"})
            hub.publish("s1", {"n": 2})
            assert [queue.get_nowait(), queue.get_nowait()] == [{"n": 1}, {"n": 2}]
            assert queue.empty()
        assert hub.watchers("s1") == 0

    asyncio.run(scenario())


def test_every_watcher_of_a_session_gets_every_message() -> None:
    async def scenario() -> None:
        hub = LiveMonitorHub()
        with hub.watch("s1") as first, hub.watch("s1") as second, hub.watch("s2") as other:
            assert (hub.watchers("s1"), hub.watchers("s2")) == (2, 1)
            hub.publish("s1", {"type": "result", "frame_index": 0})
            assert first.get_nowait() == second.get_nowait() == {"type": "result", "frame_index": 0}
            assert other.empty()
        assert (hub.watchers("s1"), hub.watchers("s2")) == (0, 0)

    asyncio.run(scenario())


def test_a_waiting_watcher_is_woken_by_a_publish() -> None:
    async def scenario() -> list[dict[str, Any]]:
        hub = LiveMonitorHub()
        received: list[dict[str, Any]] = []
        with hub.watch("s1") as queue:

            async def watch() -> None:
                for _ in range(2):
                    received.append(await queue.get())

            task = asyncio.create_task(watch())
            await asyncio.sleep(0)  # the watcher now waits on the empty queue
            hub.publish("s1", {"n": 1})
            await asyncio.sleep(0)
            hub.publish("s1", {"n": 2})
            await asyncio.wait_for(task, timeout=5)
        return received

    assert asyncio.run(scenario()) == [{"n": 1}, {"n": 2}]


def test_a_slow_watcher_loses_the_oldest_messages_and_publish_never_blocks() -> None:
    async def scenario() -> None:
        hub = LiveMonitorHub(max_queued=3)
        with hub.watch("s1") as slow, hub.watch("s1") as fast:
            for n in range(10):
                hub.publish("s1", {"n": n})  # synchronous: it cannot wait for a reader
                if n == 7:
                    while not fast.empty():
                        fast.get_nowait()
            assert slow.qsize() == 3
            assert [slow.get_nowait()["n"] for _ in range(3)] == [7, 8, 9]
            assert [fast.get_nowait()["n"] for _ in range(2)] == [8, 9]

    asyncio.run(scenario())


def test_leaving_the_block_stops_delivery_even_after_an_error() -> None:
    async def scenario() -> None:
        hub = LiveMonitorHub()
        with pytest.raises(RuntimeError, match="page closed"), hub.watch("s1") as queue:
            raise RuntimeError("page closed")
        assert hub.watchers("s1") == 0
        hub.publish("s1", {"n": 1})  # nobody watches: dropped without error
        assert queue.empty()
        with hub.watch("s1") as again:
            assert again is not queue
            assert hub.watchers("s1") == 1

    asyncio.run(scenario())


# --- the WebSocket ---------------------------------------------------------------------------


def monitor_url(session_id: str) -> str:
    return f"/api/v1/sessions/{session_id}/monitor"


@pytest.fixture
def session_id(api: InProcessApi) -> str:
    return str(api.create_session(api.create_patient()["id"])["id"])


@pytest.fixture
def cookie(api: InProcessApi) -> str:
    """A therapist's sign-in cookie secret."""
    response = api.client.post(
        "/api/v1/web-session", json={"token": api.tokens[RoleValues.THERAPIST]}
    )
    assert response.status_code == 201, response.text
    secret = response.cookies[SESSION_COOKIE]
    api.client.cookies.clear()
    return str(secret)


def publish(api: InProcessApi, session_id: str, message: dict[str, Any]) -> None:
    """Publish on the server's event loop, as a stream does."""
    portal = api.client.portal
    assert portal is not None
    portal.call(service_of(api).live.publish, session_id, message)


def receive(websocket: WebSocketTestSession) -> dict[str, Any]:
    """The next ASGI message the app sent, within ``RECEIVE_TIMEOUT_S``.

    ``WebSocketTestSession.receive`` waits forever; this reads the same stream with a deadline.
    """

    async def next_message() -> dict[str, Any]:
        with anyio.fail_after(RECEIVE_TIMEOUT_S):
            return dict(await websocket._send_rx.receive())

    return websocket.portal.call(next_message)


def receive_json(websocket: WebSocketTestSession) -> Any:
    message = receive(websocket)
    assert message["type"] == "websocket.send", message
    return json.loads(message["text"])


def assert_ready(websocket: WebSocketTestSession, session_id: str) -> None:
    assert receive_json(websocket) == {
        "type": "ready",
        "session_id": session_id,
        "protocol_version": DEFAULT_PROTOCOL.version,
        "alert_threshold_mm": DEFAULT_PROTOCOL.intrafraction_alert_mm,
        "alert_persistence_s": DEFAULT_PROTOCOL.intrafraction_alert_duration_s,
    }


def assert_refused(websocket: WebSocketTestSession, code: str, case: object = None) -> None:
    error = receive_json(websocket)
    assert error["type"] == "error", (case, error)
    assert error["code"] == code, (case, error)
    assert error["detail"], case
    closing = receive(websocket)
    assert closing["type"] == "websocket.close", (case, closing)
    assert closing["code"] == POLICY_VIOLATION, (case, closing)


def test_a_bearer_watcher_gets_ready_then_its_sessions_messages(
    api: InProcessApi, session_id: str
) -> None:
    other_session = api.create_session(api.create_patient("MRN-OTHER")["id"])["id"]
    live = service_of(api).live
    with api.client.websocket_connect(
        monitor_url(session_id), headers=api.headers(RoleValues.CONSOLE)
    ) as websocket:
        assert_ready(websocket, session_id)
        assert live.watchers(session_id) == 1
        websocket.send_json({"type": "hello"})  # messages from the watcher are ignored
        publish(api, other_session, {"type": "result", "frame_index": 99})
        publish(api, session_id, {"type": "started", "stream_id": "abc"})
        publish(api, session_id, {"type": "result", "frame_index": 0, "alert_active": False})
        assert receive_json(websocket) == {"type": "started", "stream_id": "abc"}
        assert receive_json(websocket) == {
            "type": "result",
            "frame_index": 0,
            "alert_active": False,
        }
    assert live.watchers(session_id) == 0  # a closed page stops watching


def test_two_watchers_both_get_the_messages(
    api: InProcessApi, session_id: str, cookie: str
) -> None:
    page = {"Cookie": f"{SESSION_COOKIE}={cookie}", "Origin": "http://testserver"}
    with (
        api.client.websocket_connect(monitor_url(session_id), headers=api.headers()) as first,
        api.client.websocket_connect(monitor_url(session_id), headers=page) as second,
    ):
        assert_ready(first, session_id)
        assert_ready(second, session_id)
        assert service_of(api).live.watchers(session_id) == 2
        publish(api, session_id, {"type": "summary", "frames": 3})
        assert receive_json(first) == receive_json(second) == {"type": "summary", "frames": 3}


def test_bad_credentials_are_refused(api: InProcessApi, session_id: str) -> None:
    bad_headers = {
        "none": {},
        "unknown token": {"Authorization": "Bearer igrt_not-a-real-token"},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "empty bearer": {"Authorization": "Bearer"},
    }
    for case, headers in bad_headers.items():
        with api.client.websocket_connect(monitor_url(session_id), headers=headers) as websocket:
            assert_refused(websocket, "unauthenticated", case)
        assert service_of(api).live.watchers(session_id) == 0, case


def test_an_unknown_session_is_refused(api: InProcessApi) -> None:
    for session_id in ("no-such-session", "x" * 200):
        with api.client.websocket_connect(
            monitor_url(session_id), headers=api.headers()
        ) as websocket:
            assert_refused(websocket, "not_found", session_id)


def test_the_cookie_works_only_from_the_same_origin(
    api: InProcessApi, session_id: str, cookie: str
) -> None:
    jar = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    with api.client.websocket_connect(
        monitor_url(session_id), headers={**jar, "Origin": "http://testserver"}
    ) as websocket:
        assert_ready(websocket, session_id)
    foreign: tuple[dict[str, str], ...] = (
        {},  # no Origin: not a page of this service
        {"Origin": "https://evil.example"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "http://testserver:8443"},
        {"Origin": "null"},
    )
    for origin in foreign:
        with api.client.websocket_connect(
            monitor_url(session_id), headers={**jar, **origin}
        ) as websocket:
            assert_refused(websocket, "unauthenticated", origin)
    # A bearer token needs no Origin (a console is not a browser), and wins over the cookie.
    with api.client.websocket_connect(
        monitor_url(session_id),
        headers={**jar, "Origin": "https://evil.example", **api.headers(RoleValues.CONSOLE)},
    ) as websocket:
        assert_ready(websocket, session_id)


def test_an_ended_sign_in_cannot_watch(api: InProcessApi, session_id: str, cookie: str) -> None:
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}", "Origin": "http://testserver"}
    csrf = api.client.get("/api/v1/web-session", headers=headers).json()["csrf_token"]
    signed_out = api.client.delete("/api/v1/web-session", headers={**headers, "X-CSRF-Token": csrf})
    assert signed_out.status_code == 204
    api.client.cookies.clear()
    with api.client.websocket_connect(monitor_url(session_id), headers=headers) as websocket:
        assert_refused(websocket, "unauthenticated")
