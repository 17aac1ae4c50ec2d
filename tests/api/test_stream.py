"""The real-time WebSocket against a real uvicorn server: per-frame answers, the KIM-style alert
on a simulated baseline shift (and none without it), the audit trail, bad frames and bad tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from api.enums import RoleValues
from igrt.protocol import DEFAULT_PROTOCOL
from igrt.sequence import FluoroSequence
from tests.api.conftest import bearer, create_token, make_settings
from tests.api.live_server import LiveServer, service_environment

SHIFT_MM = 4.0
SHIFT_AT_S = 8.0
DURATION_S = 18.0
FPS = 4.0
REFERENCE_WINDOW_S = 6.0
START = {
    "type": "start",
    "geometry": {"preset": "xvi", "binning": 4},
    "reference": {"mode": "initial", "window_s": REFERENCE_WINDOW_S},
}


def _simulate(shift_mm: float) -> FluoroSequence:
    from fixtures import breathing
    from fixtures.fluoro import simulate_fluoro
    from fixtures.phantom import make_phantom
    from igrt.geometry import xvi_geometry

    signal = breathing.BaselineShift(
        breathing.regular(12.0, 4.0, DURATION_S, 50.0), shift_mm, SHIFT_AT_S
    )
    return simulate_fluoro(
        make_phantom(),
        signal,
        duration_s=DURATION_S,
        fps=FPS,
        geometry=xvi_geometry(binning=4),
        grid_spacing_mm=(2.5, 2.0),
        seed=3,
    ).sequence


@pytest.fixture(scope="module")
def clips() -> dict[str, FluoroSequence]:
    return {"steady": _simulate(0.0), "shifted": _simulate(SHIFT_MM)}


@dataclass
class Stack:
    server: LiveServer
    tokens: dict[RoleValues, str]
    session_id: str

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/api/v1/sessions/{self.session_id}/stream"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = Path(tmp_path_factory.mktemp("stream"))
    data_dir = folder / "data"
    settings = make_settings(data_dir)
    tokens = {role: create_token(settings, role) for role in RoleValues}
    env = service_environment(data_dir, demo_data="false", first_run_token="false")
    server = LiveServer(env, folder / "server.log").start()
    try:
        with server.client(tokens[RoleValues.THERAPIST]) as client:
            patient = client.post("/api/v1/patients", json={"external_id": "MRN-STREAM"}).json()
            session = client.post(
                f"/api/v1/patients/{patient['id']}/sessions",
                json={"kind": "fraction", "fraction_number": 1, "patient_position": "HFS"},
            ).json()
        yield Stack(server, tokens, session["id"])
    finally:
        assert server.stop(), server.log()[-2000:]
        assert "MRN-STREAM" not in server.log()
        assert all(token not in server.log() for token in tokens.values())


def _receive(ws: ClientConnection) -> dict[str, Any]:
    message = ws.recv(timeout=10)
    assert isinstance(message, str), message
    return dict(json.loads(message))


@contextmanager
def _open(stack: Stack, role: RoleValues = RoleValues.CONSOLE) -> Iterator[ClientConnection]:
    with connect(stack.url, additional_headers=bearer(stack.tokens[role]), open_timeout=10) as ws:
        ready = _receive(ws)
        assert ready["type"] == "ready", ready
        ws.send(json.dumps(START))
        started = _receive(ws)
        assert started["type"] == "started", started
        ws.stream_id = started["stream_id"]  # type: ignore[attr-defined]
        yield ws


def _send_frame(ws: ClientConnection, frame: npt.NDArray[Any], time_s: float) -> None:
    rows, columns = frame.shape
    ws.send(json.dumps({"type": "frame", "time_s": time_s, "rows": rows, "columns": columns}))
    ws.send(frame.astype("<u2").tobytes())


def _stream(stack: Stack, sequence: FluoroSequence) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    results = []
    with _open(stack) as ws:
        for index in range(sequence.n_frames):
            _send_frame(ws, sequence.frames[index], float(sequence.timestamps_s[index]))
            results.append(_receive(ws))
        ws.send(json.dumps({"type": "stop"}))
        summary = _receive(ws)
        summary["stream_id"] = ws.stream_id  # type: ignore[attr-defined]
    return results, summary


def _audit(stack: Stack) -> list[dict[str, Any]]:
    with stack.server.client(stack.tokens[RoleValues.PHYSICIST]) as client:
        events = client.get("/api/v1/audit-events", params={"limit": 500}).json()["data"]
    return [e for e in events if e["action"].startswith("stream.")]


def test_a_baseline_shift_raises_the_alert_after_the_persistence_time(
    stack: Stack, clips: dict[str, FluoroSequence]
) -> None:
    results, summary = _stream(stack, clips["shifted"])
    assert [r["type"] for r in results] == ["result"] * clips["shifted"].n_frames
    assert all(r["dome"]["status"] == "tracked" for r in results)
    assert all(r["latency_ms"] < 500 for r in results)  # image to flag, CLINICAL.md
    raised = [r for r in results if r["alert"]["event"] == "raised"]
    assert len(raised) == 1
    alert = raised[0]
    persistence = alert["alert"]["persistence_s"]
    assert persistence == DEFAULT_PROTOCOL.intrafraction_alert_duration_s
    assert alert["alert"]["threshold_mm"] == DEFAULT_PROTOCOL.intrafraction_alert_mm
    # Not before the shift has persisted for the persistence time, and soon after that.
    assert SHIFT_AT_S + persistence < alert["time_s"] <= SHIFT_AT_S + persistence + 3.0
    assert alert["alert"]["over_threshold_s"] > persistence
    # Superior shift, superior-positive displacement, near the simulated 4 mm.
    assert 3.0 < alert["displacement_si_mm"] < 6.0
    before = [r for r in results if r["time_s"] < SHIFT_AT_S]
    assert not any(r["alert"]["active"] for r in before)
    assert results[-1]["alert"]["active"] is True
    assert summary == {
        **summary,
        "type": "summary",
        "frames": clips["shifted"].n_frames,
        "alerts_raised": 1,
        "alert_active": True,
        "reference_mode": "initial",
    }
    excursions = [r["excursion_mm"] for r in results if r["time_s"] >= 4.0]
    assert all(9.0 < e < 16.0 for e in excursions)  # 12 mm breathing at the isocentre
    events = [e for e in _audit(stack) if e["detail"]["stream_id"] == summary["stream_id"]]
    assert [e["action"] for e in events] == ["stream.open", "stream.alert_raised", "stream.close"]
    assert all(e["resource_id"] == stack.session_id for e in events)
    assert all(e["actor_role"] == "console" for e in events)
    assert events[1]["detail"]["frame_index"] == alert["frame_index"]
    assert events[1]["detail"]["threshold_mm"] == DEFAULT_PROTOCOL.intrafraction_alert_mm
    assert events[2]["detail"]["alerts_raised"] == 1


def test_steady_breathing_raises_no_alert(stack: Stack, clips: dict[str, FluoroSequence]) -> None:
    results, summary = _stream(stack, clips["steady"])
    assert len(results) == clips["steady"].n_frames
    building = [r for r in results if r["monitoring"] == "building_reference"]
    assert building
    assert all(r["time_s"] <= REFERENCE_WINDOW_S + 0.5 for r in building)
    monitoring = [r for r in results if r["monitoring"] == "monitoring"]
    assert len(monitoring) == len(results) - len(building)
    assert max(abs(r["displacement_si_mm"]) for r in monitoring) < 1.5
    assert not any(r["alert"]["active"] or r["alert"]["event"] for r in results)
    assert summary["alerts_raised"] == 0
    events = [e for e in _audit(stack) if e["detail"]["stream_id"] == summary["stream_id"]]
    assert [e["action"] for e in events] == ["stream.open", "stream.close"]


def _closed_with(ws: ClientConnection) -> tuple[dict[str, Any], int | None]:
    error = _receive(ws)
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    return error, closed.value.rcvd.code if closed.value.rcvd else None


@pytest.mark.parametrize(
    ("headers", "first", "code"),
    [
        ({}, {"type": "start"}, "unauthenticated"),
        ({}, {"type": "auth", "token": "igrt_not-a-token"}, "unauthenticated"),
        ({"Authorization": "Basic abc"}, None, "unauthenticated"),
    ],
)
def test_a_missing_or_unknown_token_closes_with_1008(
    stack: Stack, headers: dict[str, str], first: dict[str, Any] | None, code: str
) -> None:
    with connect(stack.url, additional_headers=headers, open_timeout=10) as ws:
        if first is not None:
            ws.send(json.dumps(first))
        error, close_code = _closed_with(ws)
    assert error["type"] == "error"
    assert error["code"] == code
    assert close_code == 1008


def test_the_token_may_come_as_the_first_message_and_sessions_must_exist(stack: Stack) -> None:
    token = stack.tokens[RoleValues.THERAPIST]
    with connect(stack.url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": token}))
        assert _receive(ws)["type"] == "ready"
    unknown = stack.url.replace(stack.session_id, "no-such-session")
    with connect(unknown, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": token}))
        error, close_code = _closed_with(ws)
    assert (error["code"], close_code) == ("not_found", 1008)


def test_binary_data_before_start_closes_with_1003(stack: Stack) -> None:
    headers = bearer(stack.tokens[RoleValues.CONSOLE])
    with connect(stack.url, additional_headers=headers, open_timeout=10) as ws:
        assert _receive(ws)["type"] == "ready"
        ws.send(b"\x00\x01")
        error, close_code = _closed_with(ws)
    assert (error["code"], close_code) == ("not_started", 1003)


def test_bad_frames_get_typed_errors_and_the_stream_goes_on(
    stack: Stack, clips: dict[str, FluoroSequence]
) -> None:
    sequence = clips["steady"]
    frame = sequence.frames[0]
    rows, columns = frame.shape
    with _open(stack) as ws:
        ws.send(frame.astype("<u2").tobytes())  # pixels without a header
        assert _receive(ws)["code"] == "frame_without_header"
        ws.send("not json")
        assert _receive(ws)["code"] == "invalid_message"
        ws.send(json.dumps({"type": "frame", "time_s": "nan", "rows": rows, "columns": columns}))
        error = _receive(ws)
        assert (error["code"], error["field"]) == ("invalid_message", "time_s")
        ws.send(json.dumps({"type": "frame", "time_s": 0.0, "rows": rows, "columns": columns}))
        ws.send(frame.astype("<u2").tobytes()[:-2])  # truncated
        assert (_receive(ws)["code"], 0) == ("invalid_frame", 0)
        _send_frame(ws, frame[:, :-16], 0.0)  # another panel size
        error = _receive(ws)
        assert (error["code"], error["field"]) == ("invalid_frame", "rows")
        ws.send(json.dumps({"type": "frame", "time_s": 0.0, "rows": 4096, "columns": 4096}))
        assert _receive(ws)["code"] == "frame_too_large"
        _send_frame(ws, frame, 0.0)
        first = _receive(ws)
        assert first["type"] == "result"
        assert first["frame_index"] == 0
        _send_frame(ws, sequence.frames[1], 0.0)  # time not after the previous frame's
        error = _receive(ws)
        assert (error["code"], error["field"]) == ("invalid_frame", "time_s")
        _send_frame(ws, sequence.frames[1], float(sequence.timestamps_s[1]))
        second = _receive(ws)
        assert second["type"] == "result"
        assert second["frame_index"] == 1
        assert second["dome"]["status"] == "tracked"
        ws.send(json.dumps({"type": "stop"}))
        assert _receive(ws)["frames"] == 2
