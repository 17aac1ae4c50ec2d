"""The therapist review page in a real browser (headless Chromium) against a real server.

Walks through what a therapist does: sign in; open the demo patient; play and step the cine
and see the dome overlay; click the breathing trace to jump frames; open the registration,
switch overlay modes and override it with a reason and an edited correction; find that in the
session's history; watch a live-monitor alert fire on a simulated baseline shift. Also: a
signed-out browser sees no patient data, and a console-role sign-in cannot approve.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from api.enums import RoleValues
from tests.api.conftest import bearer
from tests.api.web.conftest import DemoServer, sign_in

pytestmark = pytest.mark.browser

DEMO_PATIENT = ("DEMO-0001", "Demo^Phantom")


def _canvas_pixel(page: Any, selector: str, x: float, y: float) -> list[int]:
    return list(
        page.evaluate(
            """([selector, x, y]) => {
                const canvas = document.querySelector(selector);
                return Array.from(canvas.getContext("2d").getImageData(x, y, 1, 1).data);
            }""",
            [selector, x, y],
        )
    )


def _frame(page: Any) -> int:
    return int(page.locator(".cine").get_attribute("data-frame"))


def test_a_signed_out_browser_sees_no_patient_data(page: Any, demo_server: DemoServer) -> None:
    page.goto(demo_server.url + "/#/worklist")
    page.get_by_role("button", name="Sign in").wait_for()
    content = page.content()
    assert all(identifier not in content for identifier in DEMO_PATIENT)
    statuses = page.evaluate(
        """async (paths) => Promise.all(paths.map(async (path) => (await fetch(path)).status))""",
        [
            "/api/v1/worklist",
            f"/api/v1/sessions/{demo_server.simulation_session_id}",
            f"/api/v1/motion-assessments/{demo_server.assessment_id}",
            f"/api/v1/registrations/{demo_server.registration_id}/overlays/axial",
            "/api/v1/web-session",
        ],
    )
    assert statuses == [401] * 5
    # A wrong token is refused with a message, and still nothing is shown.
    page.get_by_label("API token").fill("igrt_wrong")
    page.get_by_role("button", name="Sign in").click()
    page.locator("#sign-in-error").filter(has_text="unknown or revoked token").wait_for()
    assert all(identifier not in page.content() for identifier in DEMO_PATIENT)


def test_sign_in_and_the_worklist(page: Any, demo_server: DemoServer, screenshot_dir: Path) -> None:
    sign_in(page, demo_server)
    rows = page.locator("tr.worklist-row")
    rows.first.wait_for()
    assert rows.count() == 2
    flagged = page.locator("tr.status-flagged_for_repositioning")
    assert flagged.count() == 1
    assert "DEMO-0001" in flagged.inner_text()
    assert "awaiting review" in page.locator("tr.status-awaiting_review").inner_text()
    # Filters: by status, and by patient text.
    page.get_by_label("Status").select_option("flagged_for_repositioning")
    page.wait_for_function("() => document.querySelectorAll('tr.worklist-row').length === 1")
    page.get_by_label("Status").select_option("")
    page.get_by_label("Patient").fill("nobody-by-that-name")
    page.get_by_text("No sessions match").wait_for()
    page.get_by_label("Patient").fill("")
    rows.nth(1).wait_for()
    page.screenshot(path=str(screenshot_dir / "worklist.png"))
    # The session cookie is HttpOnly: scripts cannot read it.
    assert "igrt_session" not in page.evaluate("() => document.cookie")
    cookie = next(c for c in page.context.cookies() if c["name"] == "igrt_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"


RECOMMENDATION_LABELS = {
    "no_device": "No motion-management device",
    "active_breathing_control": "Active breathing control (ABC)",
    "abdominal_compression": "Abdominal compression",
    "breath_hold_trial_next": "Motion management required: breath-hold (ABC) trial next",
    "gating_or_larger_margin": "Gating or a larger margin",
    "reassess": "Re-assess (no trustworthy decision)",
}
"""The review page's wording of each recommendation (``api/web/static/js/dom.js``)."""


def test_cine_overlay_steps_plays_and_follows_the_trace(
    page: Any, demo_server: DemoServer, screenshot_dir: Path
) -> None:
    with demo_server.api() as client:
        assessment = client.get(f"/api/v1/motion-assessments/{demo_server.assessment_id}").json()
    track = assessment["track"]
    label = RECOMMENDATION_LABELS[assessment["recommendation"]]
    sign_in(page, demo_server)
    # Straight to the assessment (the worklist's navigation is tested above; which
    # awaiting-review row comes first depends on when the demo's registration finished).
    page.goto(f"{demo_server.url}/#/assessments/{demo_server.assessment_id}")
    info = page.locator("#cine-info")
    info.filter(has_text="Frame 1 / 60").wait_for()
    page.get_by_text(label, exact=True).first.wait_for()
    # The dome overlay: the apex cross is drawn in the "tracked" green at the tracked apex
    # (6 px right of the apex, on the cross's arm, off the dome curve).
    first = track[0]
    page.locator(".cine[data-image='shown']").wait_for()
    page.wait_for_function(
        """([x, y]) => {
            const canvas = document.querySelector("#cine-canvas");
            const [r, g, b] = canvas.getContext("2d").getImageData(x, y, 1, 1).data;
            return g > 150 && r < 120 && b < 160;
        }""",
        arg=[first["apex_column"] + 6.5, first["apex_row"] + 0.5],
    )
    # ... and the frame itself is there: a dark lung above the dome, bright liver below.
    above = _canvas_pixel(page, "#cine-canvas", first["apex_column"], first["apex_row"] - 40)
    below = _canvas_pixel(page, "#cine-canvas", first["apex_column"], first["apex_row"] + 40)
    assert below[0] > above[0] + 40, (above, below)

    page.get_by_role("button", name="Next frame").click()
    info.filter(has_text="Frame 2 / 60").wait_for()
    page.locator(".cine").press("ArrowRight")
    info.filter(has_text="Frame 3 / 60").wait_for()
    page.locator(".cine").press("ArrowLeft")
    info.filter(has_text="Frame 2 / 60").wait_for()

    page.get_by_label("Speed").select_option("4")
    page.get_by_role("button", name="Play").click()
    page.wait_for_function("() => Number(document.querySelector('.cine').dataset.frame) >= 6")
    page.get_by_role("button", name="Pause").click()
    paused_at = _frame(page)
    page.wait_for_timeout(400)
    assert _frame(page) == paused_at

    # Click the trace at 70 % of the plot's width: the cine shows the frame nearest that time.
    chart = page.locator("#trace-chart")
    box = chart.bounding_box()
    left, right = 64, 12  # the chart's margins (trace_chart.js)
    fraction = 0.7
    chart.click(
        position={"x": left + fraction * (box["width"] - left - right), "y": box["height"] / 2}
    )
    times = np.array([o["time_s"] for o in track])
    target = times[0] + fraction * (times[-1] - times[0])
    expected = int(np.argmin(np.abs(times - target)))
    page.wait_for_function(f"() => document.querySelector('.cine').dataset.frame === '{expected}'")
    assert f"Frame {expected + 1} / 60" in info.inner_text()
    page.screenshot(path=str(screenshot_dir / "motion-assessment.png"), full_page=True)


def test_registration_review_modes_and_override_reach_the_history(
    page: Any, demo_server: DemoServer, screenshot_dir: Path
) -> None:
    sign_in(page, demo_server)
    page.goto(f"{demo_server.url}/#/registrations/{demo_server.registration_id}")
    canvas = page.locator("#registration-canvas")
    canvas.wait_for()
    assert page.locator("#repositioning").inner_text() == "Reposition the couch"
    flagged_row = page.locator("#correction-table tr.flagged")
    assert flagged_row.count() == 1
    assert "longitudinal" in flagged_row.inner_text()

    def mode_pixels() -> list[int]:
        size = canvas.bounding_box()
        return _canvas_pixel(page, "#registration-canvas", size["width"] / 2, size["height"] / 3)

    checker = mode_pixels()
    for mode in ("blend", "difference"):
        page.locator(f"#mode-{mode}").check()
        page.wait_for_function(
            f"() => document.querySelector('#registration-canvas').dataset.mode === '{mode}'"
        )
    page.locator("#mode-blend").check()
    blend = mode_pixels()
    assert blend != checker  # colour blend, not grey squares
    assert blend[0] != blend[1]
    page.locator("#stage-before").check()
    page.wait_for_function(
        "() => document.querySelector('#registration-canvas').dataset.stage === 'before'"
    )
    page.locator("#plane-sagittal").check()
    page.locator("#overlay-slider").fill("80")
    page.get_by_text("CBCT weight: 80 %").wait_for()
    # For the picture: the coronal blend before registration shows the 4 mm as colour fringes.
    page.locator("#plane-coronal").check()
    page.locator("#overlay-slider").fill("50")
    page.screenshot(path=str(screenshot_dir / "registration-review.png"), full_page=True)

    # An override needs a reason: without one the page refuses before sending anything.
    page.get_by_label("Decision taken instead").select_option("reposition")
    page.get_by_role("button", name="Override").click()
    page.get_by_text("An override needs a reason.").wait_for()
    page.get_by_label("Edit the couch correction").check()
    page.get_by_label("longitudinal couch correction (mm)").fill("3.5")
    reason = "Therapist matched the dome by eye; applied 3.5 mm longitudinal."
    page.get_by_label("Reason (required)").fill(reason)
    page.get_by_role("button", name="Override").click()
    standing = page.locator("#standing-review")
    standing.filter(has_text="overridden").wait_for()
    assert "3.5" in standing.inner_text()
    assert reason in standing.inner_text()

    page.get_by_role("link", name="Back to the session").click()
    history = page.get_by_role("list", name="Session history")
    history.wait_for()
    assert reason in history.inner_text()
    assert "registration overridden by test therapist (therapist): reposition" in (
        history.inner_text()
    )
    assert "couch correction applied: lat -1.3, long +3.5, vert -0.9 mm" in history.inner_text()
    page.screenshot(path=str(screenshot_dir / "session-history.png"), full_page=True)
    with demo_server.api() as client:
        reviews = client.get(f"/api/v1/registrations/{demo_server.registration_id}/reviews").json()
    assert reviews["data"][-1]["couch_correction_iec_support_mm"][1] == pytest.approx(3.5)


def test_a_console_sign_in_cannot_approve(page: Any, demo_server: DemoServer) -> None:
    sign_in(page, demo_server, RoleValues.CONSOLE)
    page.goto(f"{demo_server.url}/#/assessments/{demo_server.assessment_id}")
    page.get_by_text("Your role may view but not review results.").wait_for()
    assert page.get_by_role("button", name="Approve").is_disabled()
    # The page only hides the button; the service refuses the request itself.
    status = page.evaluate(
        """async (path) => {
            const session = await (await fetch("/api/v1/web-session")).json();
            const response = await fetch(path, {
                method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": session.csrf_token},
                body: JSON.stringify({outcome: "approved"}),
            });
            return response.status;
        }""",
        f"/api/v1/motion-assessments/{demo_server.assessment_id}/reviews",
    )
    assert status == 403


def test_a_forged_change_without_the_csrf_token_is_refused(
    page: Any, demo_server: DemoServer
) -> None:
    sign_in(page, demo_server)
    status = page.evaluate(
        """async (path) => (await fetch(path, {
                method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({outcome: "approved"}),
            })).status""",
        f"/api/v1/motion-assessments/{demo_server.assessment_id}/reviews",
    )
    assert status == 403


def _stream_shifted_breathing(demo_server: DemoServer, done: threading.Event) -> None:
    """The console: stream simulated frames whose baseline steps 5 mm superior at 8 s."""
    from fixtures import breathing
    from fixtures.fluoro import simulate_fluoro
    from fixtures.phantom import make_phantom
    from igrt.geometry import xvi_geometry

    duration_s, fps = 18.0, 4.0
    signal = breathing.BaselineShift(breathing.regular(12.0, 4.0, duration_s, 50.0), 5.0, 8.0)
    sequence = simulate_fluoro(
        make_phantom(),
        signal,
        duration_s=duration_s,
        fps=fps,
        geometry=xvi_geometry(binning=4),
        grid_spacing_mm=(2.5, 2.0),
        seed=3,
    ).sequence
    url = (
        f"ws://127.0.0.1:{demo_server.server.port}/api/v1/sessions/"
        f"{demo_server.simulation_session_id}/stream"
    )
    headers = bearer(demo_server.tokens[RoleValues.CONSOLE])
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send(
            json.dumps(
                {
                    "type": "start",
                    "geometry": {"preset": "xvi", "binning": 4},
                    "reference": {"mode": "initial", "window_s": 6.0},
                }
            )
        )
        assert json.loads(ws.recv(timeout=10))["type"] == "started"
        for index in range(sequence.n_frames):
            frame = sequence.frames[index]
            ws.send(
                json.dumps(
                    {
                        "type": "frame",
                        "time_s": float(sequence.timestamps_s[index]),
                        "rows": frame.shape[0],
                        "columns": frame.shape[1],
                    }
                )
            )
            ws.send(frame.astype("<u2").tobytes())
            ws.recv(timeout=10)
            done.wait(0.02)  # roughly paced, so the page sees the trace grow
        ws.send(json.dumps({"type": "stop"}))
        ws.recv(timeout=10)
    done.set()


def test_the_live_monitor_shows_the_alert_on_a_baseline_shift(
    page: Any, demo_server: DemoServer, screenshot_dir: Path
) -> None:
    sign_in(page, demo_server)
    page.goto(f"{demo_server.url}/#/sessions/{demo_server.simulation_session_id}/monitor")
    page.get_by_text("Waiting for the console to stream").wait_for()
    assert page.locator("#alert-banner").is_hidden()
    done = threading.Event()
    errors: list[BaseException] = []

    def console() -> None:
        try:
            _stream_shifted_breathing(demo_server, done)
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)
            done.set()

    thread = threading.Thread(target=console, daemon=True)
    thread.start()
    banner = page.locator("#alert-banner.active")
    banner.wait_for(timeout=60000)
    assert "ALERT" in banner.inner_text()
    assert "+" in page.locator("#current-offset").inner_text()
    page.screenshot(path=str(screenshot_dir / "live-monitor.png"), full_page=True)
    thread.join(timeout=60)
    assert errors == []
    page.get_by_text("Stream ended").wait_for()
    # The alert is in the session's history too, and the therapist acknowledges it there.
    page.goto(f"{demo_server.url}/#/sessions/{demo_server.simulation_session_id}")
    history = page.get_by_role("list", name="Session history")
    history.filter(has_text="intrafraction alert raised").wait_for()
    page.get_by_role("button", name="Acknowledge the alerts").click()
    page.get_by_text("Say what was done about the alert.").wait_for()
    note = "Beam held; patient coached, baseline back within 3 mm on a repeat stream."
    page.get_by_label("What was done (required)").fill(note)
    page.get_by_role("button", name="Acknowledge the alerts").click()
    history.filter(
        has_text=f"intrafraction alerts acknowledged by test therapist: {note}"
    ).wait_for()
    assert page.get_by_role("button", name="Acknowledge the alerts").count() == 0


def test_keyboard_only_sign_in_and_navigation(
    page: Any, demo_server: DemoServer, screenshot_dir: Path
) -> None:
    page.goto(demo_server.url + "/")
    page.get_by_label("API token").wait_for()
    page.screenshot(path=str(screenshot_dir / "sign-in.png"))
    page.keyboard.type(demo_server.tokens[RoleValues.THERAPIST])  # the field has focus
    page.keyboard.press("Enter")
    page.locator("tr.worklist-row").first.wait_for()
    # Tab through the page to the first patient link and open it.
    for _ in range(20):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => document.activeElement.closest('tr.worklist-row') !== null")
        if focused:
            break
    assert focused, "no worklist row is reachable with Tab"
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Motion assessments").or_(
        page.get_by_role("heading", name="Registrations")
    ).first.wait_for()


def test_after_sign_out_no_frame_comes_from_the_cache(page: Any, demo_server: DemoServer) -> None:
    sign_in(page, demo_server)
    page.goto(f"{demo_server.url}/#/assessments/{demo_server.assessment_id}")
    page.locator(".cine[data-image='shown']").wait_for()
    with demo_server.api() as client:
        upload_id = client.get(f"/api/v1/motion-assessments/{demo_server.assessment_id}").json()[
            "upload_id"
        ]
    frame = f"/api/v1/uploads/{upload_id}/frames/0"
    assert page.evaluate("async (url) => (await fetch(url)).status", frame) == 200
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    assert page.evaluate("async (url) => (await fetch(url)).status", frame) == 401


def test_a_slow_view_never_replaces_a_newer_one(page: Any, demo_server: DemoServer) -> None:
    sign_in(page, demo_server)
    # The registration view loads twelve images; the session view is asked for right after.
    page.evaluate(
        """([registration, session]) => {
            location.hash = `#/registrations/${registration}`;
            setTimeout(() => { location.hash = `#/sessions/${session}`; }, 30);
        }""",
        [demo_server.registration_id, demo_server.fraction_session_id],
    )
    page.get_by_role("heading", name="Registrations").wait_for()
    page.wait_for_timeout(2500)  # long enough for the registration view to have finished
    assert page.get_by_role("heading", name="Registration review").count() == 0
    assert page.get_by_role("heading", name="Registrations").count() == 1


def test_the_assessment_page_links_its_printable_report(page: Any, demo_server: DemoServer) -> None:
    sign_in(page, demo_server)
    page.goto(f"{demo_server.url}/#/assessments/{demo_server.assessment_id}")
    link = page.locator("#report-pdf")
    link.wait_for()
    href = link.get_attribute("href")
    assert href == f"/api/v1/motion-assessments/{demo_server.assessment_id}/report.pdf"
    # The signed-in page's own cookie fetches it (as the link does).
    answer = page.evaluate(
        """async (url) => {
            const response = await fetch(url, { credentials: "same-origin" });
            const bytes = new Uint8Array(await response.arrayBuffer());
            return [response.status, response.headers.get("content-type"),
                    String.fromCharCode(...bytes.slice(0, 4))];
        }""",
        href,
    )
    assert answer == [200, "application/pdf", "%PDF"]
