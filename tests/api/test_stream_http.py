"""Single-frame dome tracking over plain HTTP: the same monitor and answers as the WebSocket, the
audit trail, the bound on open streams, the idle timeout and every refusal of a bad frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from api.enums import RoleValues
from api.http_streams import HttpStreamRegistry
from api.streaming import StreamMonitor
from igrt.geometry import xvi_geometry
from igrt.protocol import DEFAULT_PROTOCOL
from igrt.sequence import FluoroSequence, IntensityValues
from igrt.tracking import TrackerSettings
from tests.api.conftest import InProcessApi, make_settings, start_in_process
from tests.api.test_stream import REFERENCE_WINDOW_S, SHIFT_AT_S, SHIFT_MM, _simulate

START = {
    "geometry": {"preset": "xvi", "binning": 4},
    "reference": {"mode": "initial", "window_s": REFERENCE_WINDOW_S},
}
OCTET = {"content-type": "application/octet-stream"}


@pytest.fixture(scope="module")
def shifted_clip() -> FluoroSequence:
    return _simulate(SHIFT_MM)


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def _session(api: InProcessApi) -> str:
    patient = api.create_patient()
    return str(api.create_session(patient["id"], kind="fraction", fraction_number=1)["id"])


def _open(
    api: InProcessApi, session_id: str, role: RoleValues = RoleValues.CONSOLE, **body: Any
) -> dict[str, Any]:
    response = api.client.post(
        f"/api/v1/sessions/{session_id}/streams", json={**START, **body}, headers=api.headers(role)
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _frame(
    api: InProcessApi,
    opened: dict[str, Any],
    frame: npt.NDArray[Any],
    time_s: float,
    role: RoleValues = RoleValues.CONSOLE,
    **params: Any,
) -> Any:
    rows, columns = frame.shape
    return api.client.post(
        opened["frames_url"],
        params={"time_s": time_s, "rows": rows, "columns": columns, **params},
        content=frame.astype("<u2").tobytes(),
        headers={**api.headers(role), **OCTET},
    )


def _stream_events(api: InProcessApi, stream_id: str) -> list[dict[str, Any]]:
    response = api.client.get(
        "/api/v1/audit-events", params={"limit": 500}, headers=api.headers(RoleValues.PHYSICIST)
    )
    return [
        e
        for e in response.json()["data"]
        if e["action"].startswith("stream.") and e["detail"].get("stream_id") == stream_id
    ]


def _without_timing(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("processing_ms", "latency_ms")}


def test_a_baseline_shift_tracked_over_http_answers_as_the_monitor_does(
    api: InProcessApi, shifted_clip: FluoroSequence
) -> None:
    session_id = _session(api)
    opened = _open(api, session_id)
    assert opened["detector_shape"] == [256, 256]
    assert opened["alert_threshold_mm"] == DEFAULT_PROTOCOL.intrafraction_alert_mm
    assert opened["frames_url"].endswith(f"/streams/{opened['stream_id']}/frames")
    results = []
    for frame, time_s in zip(shifted_clip.frames, shifted_clip.timestamps_s, strict=True):
        response = _frame(api, opened, frame, float(time_s))
        assert response.status_code == 200, response.text
        results.append(response.json())
    stopped = api.client.post(opened["stop_url"], headers=api.headers(RoleValues.CONSOLE))
    assert stopped.status_code == 200, stopped.text
    summary = stopped.json()

    # The WebSocket's monitor, fed the same frames directly: the same answers.
    monitor = StreamMonitor(
        DEFAULT_PROTOCOL,
        TrackerSettings(),
        IntensityValues.RAW,
        window_s=8.0,
        reference_window_s=REFERENCE_WINDOW_S,
    )
    geometry = xvi_geometry(binning=4)
    expected = [
        monitor.process(frame, float(time_s), geometry)[0]
        for frame, time_s in zip(shifted_clip.frames, shifted_clip.timestamps_s, strict=True)
    ]
    assert [_without_timing(r) for r in results] == [_without_timing(r) for r in expected]
    assert summary == monitor.summary()
    assert all(r["latency_ms"] >= r["processing_ms"] >= 0 for r in results)

    raised = [r for r in results if r["alert"]["event"] == "raised"]
    assert len(raised) == 1
    persistence_s = DEFAULT_PROTOCOL.intrafraction_alert_duration_s
    assert SHIFT_AT_S + persistence_s < raised[0]["time_s"] <= SHIFT_AT_S + persistence_s + 3.0
    assert summary["alerts_raised"] == 1
    assert summary["frames"] == shifted_clip.n_frames

    events = _stream_events(api, opened["stream_id"])
    assert [e["action"] for e in events] == ["stream.open", "stream.alert_raised", "stream.close"]
    assert all(e["resource_id"] == session_id for e in events)
    assert all(e["actor_role"] == "console" for e in events)
    assert all(e["detail"]["transport"] == "http" for e in events)
    assert events[1]["detail"]["frame_index"] == raised[0]["frame_index"]
    assert events[2]["detail"]["reason"] == "stopped"
    assert events[2]["detail"]["alerts_raised"] == 1

    again = _frame(api, opened, shifted_clip.frames[0], 100.0)
    assert again.status_code == 404
    assert again.json()["field"] == "stream_id"


def test_bad_frames_are_refused_and_the_stream_goes_on(
    api: InProcessApi, fluoro_sequence: FluoroSequence
) -> None:
    session_id = _session(api)
    opened = _open(api, session_id)
    frame = fluoro_sequence.frames[0]
    rows, columns = frame.shape
    url = opened["frames_url"]
    params = {"time_s": 0.0, "rows": rows, "columns": columns}
    pixels = frame.astype("<u2").tobytes()

    no_token = api.client.post(url, params=params, content=pixels, headers=OCTET)
    assert no_token.status_code == 401
    assert no_token.json()["code"] == "unauthenticated"

    console = api.headers(RoleValues.CONSOLE)
    as_json = api.client.post(url, params=params, content=pixels, headers=console)
    assert as_json.status_code == 415
    assert as_json.json()["field"] == "content-type"

    truncated = api.client.post(url, params=params, content=pixels[:-2], headers=console | OCTET)
    assert truncated.status_code == 422
    assert (truncated.json()["code"], truncated.json()["field"]) == ("invalid_frame", "body")

    smaller = _frame(api, opened, frame[:, :-16], 0.0)
    assert smaller.status_code == 422
    assert (smaller.json()["code"], smaller.json()["field"]) == ("invalid_frame", "rows")

    nan_time = api.client.post(
        url, params={**params, "time_s": "nan"}, content=pixels, headers=console | OCTET
    )
    assert nan_time.status_code == 422
    assert nan_time.json()["field"] == "time_s"

    unknown = api.client.post(
        url.replace(opened["stream_id"], "0" * 32), params=params, content=pixels, headers=console
    )
    assert unknown.status_code == 415  # the content type is checked before the stream
    unknown = api.client.post(
        url.replace(opened["stream_id"], "0" * 32),
        params=params,
        content=pixels,
        headers=console | OCTET,
    )
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "stream_id"

    # Another token (even of the same role), or another session, does not find the stream.
    other_token = _frame(api, opened, frame, 0.0, role=RoleValues.THERAPIST)
    assert other_token.status_code == 404
    other_session = api.client.post(
        url.replace(session_id, "no-such-session"),
        params=params,
        content=pixels,
        headers=console | OCTET,
    )
    assert other_session.status_code == 404

    first = _frame(api, opened, frame, 0.0)
    assert first.status_code == 200, first.text
    assert (first.json()["type"], first.json()["frame_index"]) == ("result", 0)
    not_later = _frame(api, opened, fluoro_sequence.frames[1], 0.0)
    assert not_later.status_code == 422
    assert (not_later.json()["code"], not_later.json()["field"]) == ("invalid_frame", "time_s")
    offset = _frame(
        api,
        opened,
        fluoro_sequence.frames[1],
        float(fluoro_sequence.timestamps_s[1]),
        detector_offset_u_mm=0.0,
        gantry_deg=0.0,
    )
    assert offset.status_code == 200, offset.text
    assert offset.json()["frame_index"] == 1
    summary = api.client.post(opened["stop_url"], headers=console).json()
    assert summary["frames"] == 2
    assert api.client.post(opened["stop_url"], headers=console).status_code == 404


def test_a_start_is_refused_for_an_unknown_session_a_bad_geometry_or_no_json(
    api: InProcessApi,
) -> None:
    session_id = _session(api)
    console = api.headers(RoleValues.CONSOLE)
    unknown = api.client.post("/api/v1/sessions/nope/streams", json=START, headers=console)
    assert unknown.status_code == 404
    both = {"geometry": {"preset": "xvi", "sad_mm": 1000.0}}
    bad = api.client.post(f"/api/v1/sessions/{session_id}/streams", json=both, headers=console)
    assert bad.status_code == 422
    assert bad.json()["field"] == "geometry"
    text = api.client.post(
        f"/api/v1/sessions/{session_id}/streams",
        content=b"geometry=xvi",
        headers=console | {"content-type": "text/plain"},
    )
    assert text.status_code == 415
    no_token = api.client.post(f"/api/v1/sessions/{session_id}/streams", json=START)
    assert no_token.status_code == 401
    # The WebSocket's start message, type included, is accepted as it is.
    assert _open(api, session_id, role=RoleValues.PHYSICIST, type="start")["type"] == "started"


def test_open_streams_are_bounded_and_idle_ones_close(
    api: InProcessApi, fluoro_sequence: FluoroSequence
) -> None:
    clock = FakeClock()
    api.client.app.state.http_streams = HttpStreamRegistry(  # type: ignore[attr-defined]
        max_streams=1, idle_timeout_s=30.0, clock=clock
    )
    session_id = _session(api)
    first = _open(api, session_id)
    assert first["idle_timeout_s"] == 30.0
    refused = api.client.post(
        f"/api/v1/sessions/{session_id}/streams",
        json=START,
        headers=api.headers(RoleValues.THERAPIST),
    )
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_streams"
    assert refused.headers["retry-after"] == "30"

    frame = fluoro_sequence.frames[0]
    clock.now_s += 29.0
    assert _frame(api, first, frame, 0.0).status_code == 200  # a frame keeps it open
    clock.now_s += 31.0
    second = _open(api, session_id, role=RoleValues.THERAPIST)  # the idle one made room
    expired = _frame(api, first, fluoro_sequence.frames[1], 0.2)
    assert expired.status_code == 404
    assert "30 s without a frame" in expired.json()["detail"]
    closed = _stream_events(api, first["stream_id"])[-1]
    assert closed["action"] == "stream.close"
    assert (closed["detail"]["reason"], closed["detail"]["frames"]) == ("idle_timeout", 1)
    stop = api.client.post(second["stop_url"], headers=api.headers(RoleValues.THERAPIST))
    assert stop.status_code == 200


@pytest.fixture
def small_frames_api(tmp_path: Path) -> Iterator[InProcessApi]:
    yield from start_in_process(
        make_settings(tmp_path / "data", stream_max_frame_bytes=256 * 256 * 2)
    )


def test_admission_comes_first_and_a_failed_start_gives_its_slot_back(api: InProcessApi) -> None:
    """The 429 is decided in memory before any database read (issue 12: under a burst of
    opens the refusals answer at once), and a start refused after admission (404, 422) does
    not keep the slot it was admitted with."""
    streams = HttpStreamRegistry(max_streams=1, idle_timeout_s=30.0)
    api.client.app.state.http_streams = streams  # type: ignore[attr-defined]
    session_id = _session(api)
    console = api.headers(RoleValues.CONSOLE)
    unknown = api.client.post(
        "/api/v1/sessions/no-such-session/streams", json=START, headers=console
    )
    assert unknown.status_code == 404
    no_plan = api.client.post(
        f"/api/v1/sessions/{session_id}/streams",
        json={**START, "reference": {"mode": "plan"}},
        headers=console,
    )
    assert no_plan.status_code == 409, no_plan.text
    assert len(streams.slots) == 0
    first = _open(api, session_id)
    assert len(streams.slots) == 1
    # Full: refused before the session is looked up (an unknown one included).
    for url in (
        f"/api/v1/sessions/{session_id}/streams",
        "/api/v1/sessions/no-such-session/streams",
    ):
        refused = api.client.post(url, json=START, headers=console)
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "too_many_streams"
    assert api.client.post(first["stop_url"], headers=console).status_code == 200
    assert len(streams.slots) == 0


def test_a_body_over_the_frame_limit_is_413_and_a_panel_over_it_is_refused(
    small_frames_api: InProcessApi,
) -> None:
    api = small_frames_api
    session_id = _session(api)
    opened = _open(api, session_id)
    frame = np.zeros((256, 256), dtype="<u2")
    response = api.client.post(
        opened["frames_url"],
        params={"time_s": 0.0, "rows": 256, "columns": 256},
        content=frame.tobytes() + b"\x00\x00",
        headers=api.headers(RoleValues.CONSOLE) | OCTET,
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    larger = api.client.post(
        f"/api/v1/sessions/{session_id}/streams",
        json={"geometry": {"preset": "xvi", "binning": 2}},
        headers=api.headers(RoleValues.CONSOLE),
    )
    assert larger.status_code == 422
    assert larger.json()["field"] == "geometry"


def test_streams_opened_and_stopped_at_once_all_succeed(api: InProcessApi) -> None:
    """Eight consoles starting together: each start and stop is audited, none is a 500."""
    from concurrent.futures import ThreadPoolExecutor

    session_id = _session(api)

    def open_and_stop(_: int) -> tuple[int, int]:
        opened = api.client.post(
            f"/api/v1/sessions/{session_id}/streams",
            json=START,
            headers=api.headers(RoleValues.CONSOLE),
        )
        if opened.status_code != 201:
            return opened.status_code, 0
        stopped = api.client.post(
            opened.json()["stop_url"], headers=api.headers(RoleValues.CONSOLE)
        )
        return opened.status_code, stopped.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(open_and_stop, range(16)))
    assert outcomes == [(201, 200)] * 16


def test_the_live_monitor_sees_an_http_stream(
    api: InProcessApi, fluoro_sequence: FluoroSequence
) -> None:
    session_id = _session(api)
    url = f"/api/v1/sessions/{session_id}/monitor"
    with api.client.websocket_connect(url, headers=api.headers(RoleValues.THERAPIST)) as watcher:
        assert watcher.receive_json()["type"] == "ready"
        opened = _open(api, session_id)
        response = _frame(api, opened, fluoro_sequence.frames[0], 0.0)
        assert response.status_code == 200, response.text
        api.client.post(opened["stop_url"], headers=api.headers(RoleValues.CONSOLE))
        seen = [watcher.receive_json() for _ in range(3)]
    assert [m["type"] for m in seen] == ["started", "result", "summary"]
    assert seen[0]["stream_id"] == opened["stream_id"]
    assert _without_timing(seen[1]) == _without_timing(response.json())
