"""Bounds on long-lived connections (issue 12, finding 9): stream slots per service and per token
over both transports, idle WebSockets closed, and revocation or sign-out closing open streams and
live monitors within seconds.

The burst test runs a real uvicorn server (its thread pool and database pool are what failed:
500s after 30 s and a 29.7 s stall); the WebSocket tests run in-process with short timeouts.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from api.enums import RoleValues
from api.security import load_pepper, revoke_api_token
from api.web_sessions import SESSION_COOKIE
from tests.api.conftest import (
    InProcessApi,
    bearer,
    create_token,
    make_settings,
    start_in_process,
)
from tests.api.live_server import LiveServer, service_environment

_OPEN_BODY = {"geometry": {"preset": "xvi", "binning": 4}}
_BURST = 40
_SLOTS = 32
_PER_TOKEN = 16


@pytest.fixture(scope="module")
def burst_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, list[str], str]]:
    folder = Path(tmp_path_factory.mktemp("burst"))
    data_dir = folder / "data"
    settings = make_settings(data_dir)
    tokens = [create_token(settings, RoleValues.CONSOLE, f"console {n}") for n in range(3)]
    therapist = create_token(settings, RoleValues.THERAPIST)
    env = service_environment(data_dir, demo_data="false", first_run_token="false")
    server = LiveServer(env, folder / "server.log").start()
    try:
        with server.client(therapist) as client:
            patient = client.post("/api/v1/patients", json={"external_id": "MRN-BURST"}).json()
            session = client.post(
                f"/api/v1/patients/{patient['id']}/sessions",
                json={"kind": "fraction", "fraction_number": 1, "patient_position": "HFS"},
            ).json()
        yield server, tokens, session["id"]
    finally:
        assert server.stop(), server.log()[-2000:]


def _open(base_url: str, session_id: str, token: str) -> tuple[int, float, dict[str, Any]]:
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, headers=bearer(token), timeout=60) as client:
        response = client.post(f"/api/v1/sessions/{session_id}/streams", json=_OPEN_BODY)
    return response.status_code, time.perf_counter() - started, response.json()


def test_forty_simultaneous_opens_give_thirty_two_streams_and_eight_429s_at_once(
    burst_server: tuple[LiveServer, list[str], str],
) -> None:
    server, tokens, session_id = burst_server
    # 16 + 16 + 8 attempts: the per-token bound is not what refuses here, the service's is.
    owners = [tokens[0]] * 16 + [tokens[1]] * 16 + [tokens[2]] * 8
    with concurrent.futures.ThreadPoolExecutor(max_workers=_BURST + 1) as pool:
        opens = [pool.submit(_open, server.base_url, session_id, token) for token in owners]
        with httpx.Client(base_url=server.base_url, timeout=30) as probe:
            health = [probe.get("/healthz").status_code for _ in range(5)]
        results = [future.result() for future in opens]
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [201] * _SLOTS + [429] * (_BURST - _SLOTS)
    refused = [(elapsed, body) for status, elapsed, body in results if status == 429]
    assert all(body["code"] == "too_many_streams" for _, body in refused)
    # "At once": a refusal waits for nothing the successes do not (the defect waited 30 s for
    # a database connection and then answered 500). Absolute times depend on the machine's
    # load and are measured in benchmarks/service.py.
    slowest_success = max(elapsed for status, elapsed, _ in results if status == 201)
    assert max(elapsed for elapsed, _ in refused) <= slowest_success + 2.0
    assert health == [200] * 5
    with httpx.Client(base_url=server.base_url, headers=bearer(tokens[2]), timeout=30) as client:
        assert client.get("/api/v1/me").status_code == 200


def test_one_token_cannot_take_every_slot(tmp_path: Path) -> None:
    for api in start_in_process(make_settings(tmp_path / "data", stream_max_per_token=2)):
        session_id = _session(api)
        url = f"/api/v1/sessions/{session_id}/streams"
        console, therapist = api.headers(RoleValues.CONSOLE), api.headers(RoleValues.THERAPIST)
        assert [
            api.client.post(url, json=_OPEN_BODY, headers=console).status_code for _ in range(2)
        ] == [201, 201]
        refused = api.client.post(url, json=_OPEN_BODY, headers=console)
        assert refused.status_code == 429
        assert "one token may hold" in refused.json()["detail"]
        assert refused.headers["retry-after"]
        assert api.client.post(url, json=_OPEN_BODY, headers=therapist).status_code == 201
        # WebSockets count against the same slots.
        with api.client.websocket_connect(
            f"/api/v1/sessions/{session_id}/stream", headers=console
        ) as websocket:
            _receive(websocket)  # ready
            error = _receive(websocket)
            assert error["code"] == "too_many_streams", error
            _assert_closed(websocket, 1013)


def _session(api: InProcessApi) -> str:
    patient = api.create_patient()
    return str(api.create_session(patient["id"])["id"])


def _receive(websocket: WebSocketTestSession) -> dict[str, Any]:
    return dict(json.loads(websocket.receive_text()))


def _assert_closed(websocket: WebSocketTestSession, code: int) -> None:
    with pytest.raises(WebSocketDisconnect) as closed:
        websocket.receive_text()
    assert closed.value.code == code


@pytest.fixture
def quick_api(tmp_path: Path) -> Iterator[InProcessApi]:
    """Idle timeout 0.5 s and credential re-check every 0.1 s."""
    yield from start_in_process(
        make_settings(tmp_path / "data", stream_idle_timeout_s=0.5, credential_recheck_s=0.1)
    )


def test_an_idle_websocket_stream_is_closed(quick_api: InProcessApi) -> None:
    session_id = _session(quick_api)
    with quick_api.client.websocket_connect(
        f"/api/v1/sessions/{session_id}/stream", headers=quick_api.headers(RoleValues.CONSOLE)
    ) as websocket:
        assert _receive(websocket)["type"] == "ready"
        error = _receive(websocket)  # nothing sent for 0.5 s
        assert error["code"] == "idle_timeout", error
        _assert_closed(websocket, 1001)


def _assert_signed_out(websocket: WebSocketTestSession) -> None:
    error = _receive(websocket)
    assert error["code"] == "unauthenticated", error
    _assert_closed(websocket, 1008)


def _revoke(api: InProcessApi, role: RoleValues) -> None:
    from api.db.engine import make_engine, make_session_factory
    from api.security import authenticate_token

    engine = make_engine(api.settings.database_url)
    try:
        with make_session_factory(engine)() as db:
            principal = authenticate_token(db, load_pepper(api.settings), api.tokens[role])
            assert principal is not None
            revoke_api_token(db, principal.token_id)
            db.commit()
    finally:
        engine.dispose()


def test_revoking_a_token_closes_its_open_websocket_stream(quick_api: InProcessApi) -> None:
    session_id = _session(quick_api)
    with quick_api.client.websocket_connect(
        f"/api/v1/sessions/{session_id}/stream", headers=quick_api.headers(RoleValues.CONSOLE)
    ) as websocket:
        assert _receive(websocket)["type"] == "ready"
        websocket.send_text(json.dumps({"type": "start", **_OPEN_BODY}))
        assert _receive(websocket)["type"] == "started"
        _revoke(quick_api, RoleValues.CONSOLE)
        _assert_signed_out(websocket)


def test_revoking_a_token_closes_its_live_monitor(quick_api: InProcessApi) -> None:
    session_id = _session(quick_api)
    with quick_api.client.websocket_connect(
        f"/api/v1/sessions/{session_id}/monitor", headers=quick_api.headers(RoleValues.PHYSICIST)
    ) as websocket:
        assert _receive(websocket)["type"] == "ready"
        _revoke(quick_api, RoleValues.PHYSICIST)
        _assert_signed_out(websocket)


def test_signing_out_closes_the_pages_live_monitor(quick_api: InProcessApi) -> None:
    session_id = _session(quick_api)
    client = quick_api.client
    signed_in = client.post(
        "/api/v1/web-session", json={"token": quick_api.tokens[RoleValues.THERAPIST]}
    )
    assert signed_in.status_code in (200, 201), signed_in.text
    page = {
        "Cookie": f"{SESSION_COOKIE}={signed_in.cookies[SESSION_COOKIE]}",
        "Origin": "http://testserver",
    }
    client.cookies.clear()
    csrf = client.get("/api/v1/web-session", headers=page).json()["csrf_token"]
    with client.websocket_connect(
        f"/api/v1/sessions/{session_id}/monitor", headers=page
    ) as websocket:
        assert _receive(websocket)["type"] == "ready"
        signed_out = client.delete("/api/v1/web-session", headers={**page, "X-CSRF-Token": csrf})
        assert signed_out.status_code in (200, 204), signed_out.text
        _assert_signed_out(websocket)


def test_a_token_watches_at_most_its_share_of_monitors(tmp_path: Path) -> None:
    for api in start_in_process(make_settings(tmp_path / "data", monitor_max_per_token=1)):
        session_id = _session(api)
        url = f"/api/v1/sessions/{session_id}/monitor"
        with api.client.websocket_connect(url, headers=api.headers()) as first:
            assert _receive(first)["type"] == "ready"
            with api.client.websocket_connect(url, headers=api.headers()) as second:
                assert _receive(second)["code"] == "too_many_monitors"
                _assert_closed(second, 1013)
