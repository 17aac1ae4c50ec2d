"""Issue 13.6 through the service: the stream's reference from the plan, breath-hold mode, and an
inferior shift alerting as soon as a superior one (simulated fluoroscopy, the real tracker).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.sync.client import connect

from api.enums import RoleValues
from api.schemas.stream import StreamOpen
from api.streaming import PlannedDome, StreamMonitor, monitor_reference
from igrt.geometry import xvi_geometry
from igrt.intrafraction import MonitorModeValues, MonitorReference, ReferenceSourceValues
from igrt.protocol import DEFAULT_PROTOCOL
from igrt.sequence import FluoroSequence, IntensityValues
from igrt.tracking import TrackerSettings
from tests.api.conftest import InProcessApi, bearer
from tests.api.fake_results import add_registration, service_of
from tests.api.test_stream import (
    REFERENCE_WINDOW_S,
    SHIFT_AT_S,
    SHIFT_MM,
    Stack,
    _receive,
    _simulate,
    stack,  # noqa: F401  (the live server of the WebSocket tests)
)
from tests.api.test_stream_http import _frame, _session, _stream_events

GEOMETRY = {"preset": "xvi", "binning": 4}


@pytest.fixture(scope="module")
def clips() -> dict[str, FluoroSequence]:
    return {
        "steady": _simulate(0.0),
        "superior": _simulate(SHIFT_MM),
        "inferior": _simulate(-SHIFT_MM),
    }


@pytest.fixture(scope="module")
def breath_hold_clip() -> FluoroSequence:
    from fixtures import breathing
    from fixtures.fluoro import simulate_fluoro
    from fixtures.phantom import make_phantom

    signal = breathing.breath_holds(
        12.0,
        4.0,
        50.0,
        hold_durations_s=(15.0, 15.0),
        hold_depth_mm=15.0,
        creep_mm=0.5,
        free_breathing_s=6.0,
        recovery_s=6.0,
        seed=4,
    )
    return simulate_fluoro(
        make_phantom(),
        signal,
        duration_s=float(signal.times_s[-1]),
        fps=4.0,
        geometry=xvi_geometry(binning=4),
        grid_spacing_mm=(2.5, 2.0),
        seed=3,
    ).sequence


def _monitor(
    reference: MonitorReference | None = None,
    mode: MonitorModeValues = MonitorModeValues.FREE_BREATHING,
) -> StreamMonitor:
    return StreamMonitor(
        DEFAULT_PROTOCOL,
        TrackerSettings(),
        IntensityValues.RAW,
        window_s=8.0,
        reference_window_s=REFERENCE_WINDOW_S,
        reference=reference,
        mode=mode,
    )


def _track(monitor: StreamMonitor, clip: FluoroSequence) -> list[dict[str, Any]]:
    geometry = xvi_geometry(binning=4)
    return [
        monitor.process(frame, float(time_s), geometry)[0]
        for frame, time_s in zip(clip.frames, clip.timestamps_s, strict=True)
    ]


def _raised(results: list[dict[str, Any]]) -> list[float]:
    return [r["time_s"] for r in results if r["alert"]["event"] == "raised"]


def test_an_inferior_shift_alerts_as_soon_as_a_superior_one(
    clips: dict[str, FluoroSequence],
) -> None:
    superior = _raised(_track(_monitor(), clips["superior"]))
    inferior = _raised(_track(_monitor(), clips["inferior"]))
    persistence = DEFAULT_PROTOCOL.intrafraction_alert_duration_s
    assert len(superior) == len(inferior) == 1
    for raised in (superior[0], inferior[0]):
        assert SHIFT_AT_S + persistence < raised <= SHIFT_AT_S + persistence + 4.5
    assert abs(superior[0] - inferior[0]) <= 0.5


def _steady_level(clip: FluoroSequence) -> float:
    monitor = _monitor()
    _track(monitor, clip)
    level = monitor.summary()["reference_si_mm"]
    assert level is not None
    return float(level)


def test_an_offset_already_there_at_the_start_is_seen_against_the_plan(
    clips: dict[str, FluoroSequence],
) -> None:
    level = _steady_level(clips["steady"])
    # The plan puts the dome 4 mm above where it rests all along (the patient sank by 4 mm).
    plan = MonitorReference.given(level + SHIFT_MM, ReferenceSourceValues.PLAN, "planning CT")
    results = _track(_monitor(plan), clips["steady"])
    raised = _raised(results)
    assert len(raised) == 1
    assert raised[0] <= DEFAULT_PROTOCOL.intrafraction_alert_duration_s + 4.5
    assert results[-1]["displacement_si_mm"] == pytest.approx(-SHIFT_MM, abs=0.8)
    assert results[-1]["reference_source"] == "plan"
    # The stream-start reference (the former and still default rule) cannot see it, and says so.
    from_start = _track(_monitor(), clips["steady"])
    assert not _raised(from_start)
    assert from_start[-1]["reference_source"] == "stream_start"


def test_a_breath_hold_treatment_alerts_on_no_hold_in_breath_hold_mode(
    breath_hold_clip: FluoroSequence,
) -> None:
    free = _track(_monitor(), breath_hold_clip)
    assert len(_raised(free)) == 2  # the former rule: one alert per hold
    holds = [r for r in free if r["time_s"] > 15.0]
    hold_level = min(r["dome"]["si_isocentre_mm"] for r in holds if r["dome"]["trusted"]) + 0.5
    reference = MonitorReference.given(hold_level, ReferenceSourceValues.THERAPIST, "ABC level")
    gated = _track(_monitor(reference, MonitorModeValues.BREATH_HOLD), breath_hold_clip)
    assert not _raised(gated)
    assert {r["monitoring"] for r in gated} >= {"monitoring", "between_holds"}
    assert {r["gate"] for r in gated} == {"in", "out"}
    assert all(r["alert"]["threshold_mm"] == 3.0 for r in gated)  # the gating window
    # The same holds judged against a level 5 mm away: an alert in each hold.
    wrong = MonitorReference.given(hold_level + 5.0, ReferenceSourceValues.THERAPIST, "typo")
    assert _raised(_track(_monitor(wrong, MonitorModeValues.BREATH_HOLD), breath_hold_clip))


# --- the HTTP API ------------------------------------------------------------------------


def _post_start(api: InProcessApi, session_id: str, body: dict[str, Any]) -> Any:
    return api.client.post(
        f"/api/v1/sessions/{session_id}/streams",
        json={"geometry": GEOMETRY, **body},
        headers=api.headers(RoleValues.CONSOLE),
    )


def _with_dome(api: InProcessApi, session_id: str, apex_z_mm: float) -> str:
    registration_id = add_registration(api, session_id)
    with service_of(api).sessions() as db:
        from api.db.models import RegistrationJob

        job = db.get(RegistrationJob, registration_id)
        assert job is not None
        job.result = {
            "reference_point_lps_mm": [10.0, -20.0, -100.0],
            "reference_point_source": "isocentre",
            "dome_check": {"ct_apex": {"position_lps_mm": [10.0, -20.0, -100.0 + apex_z_mm]}},
        }
        db.commit()
    return registration_id


def test_a_plan_reference_needs_a_registration_with_the_planning_dome(api: InProcessApi) -> None:
    session_id = _session(api)
    refused = _post_start(api, session_id, {"reference": {"mode": "plan"}})
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "reference.mode"
    unknown = _post_start(api, session_id, {"reference": {"mode": "plan", "registration_id": "x"}})
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "reference.registration_id"
    other_patient = api.create_patient("MRN-OTHER")
    other_session = api.create_session(other_patient["id"], kind="fraction", fraction_number=1)
    other = _with_dome(api, str(other_session["id"]), 30.0)
    foreign = _post_start(
        api, session_id, {"reference": {"mode": "plan", "registration_id": other}}
    )
    assert foreign.status_code == 404
    both = _post_start(api, session_id, {"reference": {"mode": "plan", "si_isocentre_mm": 1.0}})
    assert both.status_code == 422


def test_a_plan_reference_is_the_planning_dome_and_every_answer_says_so(
    api: InProcessApi, clips: dict[str, FluoroSequence]
) -> None:
    session_id = _session(api)
    level = _steady_level(clips["steady"])
    registration_id = _with_dome(api, session_id, level + SHIFT_MM)
    opened = _post_start(api, session_id, {"reference": {"mode": "plan"}})
    assert opened.status_code == 201, opened.text
    started = opened.json()
    assert started["reference_mode"] == "plan"
    assert started["mode"] == "free_breathing"
    reference = started["reference"]
    assert reference["source"] == "plan"
    assert reference["si_isocentre_mm"] == pytest.approx(level + SHIFT_MM, abs=1e-3)
    assert registration_id in reference["detail"]
    fields = started["rule"]["fields"]
    assert fields["intrafraction_alert_mm"]["value"] == DEFAULT_PROTOCOL.intrafraction_alert_mm
    assert fields["intrafraction_alert_mm"]["kind"] == "literature"
    results = []
    for frame, time_s in zip(clips["steady"].frames, clips["steady"].timestamps_s, strict=True):
        answer = _frame(api, started, frame, float(time_s))
        assert answer.status_code == 200, answer.text
        results.append(answer.json())
    assert all(r["reference_source"] == "plan" for r in results)
    assert len(_raised(results)) == 1  # the 4 mm the patient sank before the stream started
    stopped = api.client.post(started["stop_url"], headers=api.headers(RoleValues.CONSOLE))
    assert stopped.json()["reference"]["source"] == "plan"
    events = _stream_events(api, started["stream_id"])
    assert events[0]["detail"]["reference"]["source"] == "plan"
    raised = [e for e in events if e["action"] == "stream.alert_raised"]
    assert raised[0]["detail"]["reference"]["source"] == "plan"


def test_the_former_requests_still_work_and_say_their_reference_is_unverified(
    api: InProcessApi,
) -> None:
    session_id = _session(api)
    plain = _post_start(api, session_id, {})
    assert plain.status_code == 201, plain.text
    assert plain.json()["reference_mode"] == "initial"
    assert plain.json()["reference"]["source"] == "stream_start"
    assert "not checked against the plan" in plain.json()["reference"]["detail"]
    fixed = _post_start(api, session_id, {"reference": {"mode": "fixed", "si_isocentre_mm": 4.9}})
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["reference"]["source"] == "therapist"
    assert fixed.json()["reference"]["si_isocentre_mm"] == 4.9
    held = _post_start(
        api,
        session_id,
        {"mode": "breath_hold", "reference": {"mode": "fixed", "si_isocentre_mm": -10.0}},
    )
    assert held.status_code == 201, held.text
    assert held.json()["mode"] == "breath_hold"
    assert held.json()["alert_threshold_mm"] == DEFAULT_PROTOCOL.intrafraction_gating_window_mm
    assert held.json()["alert_persistence_s"] == DEFAULT_PROTOCOL.intrafraction_gating_duration_s
    misplaced = _post_start(api, session_id, {"reference": {"mode": "initial", "source": "plan"}})
    assert misplaced.status_code == 422


def test_the_websocket_answers_a_plan_reference_it_cannot_give_and_waits_for_another_start(
    stack: Stack,  # noqa: F811  (the fixture imported from test_stream)
) -> None:
    headers = bearer(stack.tokens[RoleValues.CONSOLE])
    with connect(stack.url, additional_headers=headers, open_timeout=10) as ws:
        assert _receive(ws)["type"] == "ready"
        ws.send(json.dumps({"type": "start", "geometry": GEOMETRY, "reference": {"mode": "plan"}}))
        error = _receive(ws)
        assert error["type"] == "error"
        assert error["code"] == "no_reference"
        assert error["field"] == "reference.mode"
        ws.send(json.dumps({"type": "start", "geometry": GEOMETRY, "mode": "breath_hold"}))
        started = _receive(ws)
        assert started["type"] == "started", started
        assert started["mode"] == "breath_hold"
        assert started["reference"]["source"] == "stream_start"
        assert started["rule"]["fields"]["intrafraction_gating_window_mm"]["kind"] == "site_choice"
        ws.send(json.dumps({"type": "stop"}))
        summary = _receive(ws)
        assert summary["reference"]["source"] == "stream_start"
        assert summary["mode"] == "breath_hold"


@pytest.fixture(scope="module")
def planned_apex() -> PlannedDome:
    """The planning CT's dome apex (found as the registration finds it) and the isocentre."""
    from fixtures import breathing
    from fixtures.fluoro import simulate_fluoro
    from fixtures.phantom import make_phantom
    from registration.dome import find_dome_apex

    anatomy = make_phantom()
    apex = find_dome_apex(anatomy.ct_hu)
    # The simulator's default isocentre (the one the clips were made with), read off its truth.
    truth = simulate_fluoro(
        anatomy,
        breathing.regular(12.0, 4.0, 0.5, 50.0),
        duration_s=0.5,
        fps=4.0,
        geometry=xvi_geometry(binning=4),
        grid_spacing_mm=(2.5, 2.0),
        seed=3,
    ).truth
    x, y, z = (float(v) for v in apex.position_lps_mm)
    ix, iy, iz = (float(v) for v in truth.isocentre_lps_mm)
    return PlannedDome("simulated", (x, y, z), (ix, iy, iz), "isocentre")


def test_the_planning_ct_dome_is_where_the_tracker_finds_the_exhale_level(
    clips: dict[str, FluoroSequence], planned_apex: PlannedDome
) -> None:
    start = StreamOpen.model_validate({"geometry": GEOMETRY, "reference": {"mode": "plan"}})
    reference = monitor_reference(
        start, TrackerSettings().patient_position, xvi_geometry(binning=4), planned_apex
    )
    # The simulated patient lies as planned: the plan's exhale level is the tracked one.
    steady = _track(_monitor(reference), clips["steady"])
    assert not _raised(steady)
    displacements = [r["displacement_si_mm"] for r in steady if r["displacement_si_mm"] is not None]
    assert displacements
    assert max(abs(d) for d in displacements) < 1.0
    assert reference.si_isocentre_mm is not None
    assert abs(reference.si_isocentre_mm - _steady_level(clips["steady"])) < 1.0


def test_a_plan_reference_without_a_given_isocentre_says_what_stands_in_for_it(
    planned_apex: PlannedDome,
) -> None:
    start = StreamOpen.model_validate({"geometry": GEOMETRY, "reference": {"mode": "plan"}})
    geometry = xvi_geometry(binning=4)
    position = TrackerSettings().patient_position
    given = monitor_reference(start, position, geometry, planned_apex)
    assert "stands in" not in given.detail
    centre = PlannedDome(
        "r1", planned_apex.apex_lps_mm, planned_apex.isocentre_lps_mm, "cbct-centre"
    )
    approximate = monitor_reference(start, position, geometry, centre)
    assert "the cbct-centre stands in for it" in approximate.detail
