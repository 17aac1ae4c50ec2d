"""The review page's dome hint: a therapist clicks on the dome in the cine, confirms, and the
page shows the new assessment tracked from that point ("hint by <name>"); the old one stays. A
console sign-in cannot give a hint.

Its own server without demo data (the demo patient's worklist and assessments stay as the other
browser tests expect them): a patient, a session and the 10-frame phantom upload, assessed once
automatically by the console.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api.enums import RoleValues
from tests.api.conftest import bearer, create_token, make_settings
from tests.api.live_server import LiveServer, service_environment

pytestmark = pytest.mark.browser

HINT_OFFSET_PX = (5.0, -6.0)
"""Where the therapist clicks relative to the automatically tracked apex of the first frame."""


@dataclass
class HintServer:
    server: LiveServer
    tokens: dict[RoleValues, str]
    session_id: str
    assessment: dict[str, Any]

    def client(self, role: RoleValues = RoleValues.THERAPIST) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.base_url, headers=bearer(self.tokens[role]), timeout=30.0
        )


@pytest.fixture(scope="module")
def hint_server(
    tmp_path_factory: pytest.TempPathFactory,
    chromium_path: str,
    make_dicom: Callable[..., bytes],
) -> Iterator[HintServer]:
    folder = tmp_path_factory.mktemp("review-hint")
    settings = make_settings(folder / "data")
    tokens = {role: create_token(settings, role) for role in RoleValues}
    env = service_environment(folder / "data", demo_data="false", first_run_token="false")
    server = LiveServer(env, folder / "server.log").start()
    try:

        def client(role: RoleValues) -> httpx.Client:
            return httpx.Client(base_url=server.base_url, headers=bearer(tokens[role]), timeout=60)

        with client(RoleValues.THERAPIST) as therapist, client(RoleValues.CONSOLE) as console:
            patient = therapist.post("/api/v1/patients", json={"external_id": "HINT-0001"})
            assert patient.status_code == 201, patient.text
            session = therapist.post(
                f"/api/v1/patients/{patient.json()['id']}/sessions",
                json={"kind": "simulation", "patient_position": "HFS"},
            ).json()
            upload = console.post(
                f"/api/v1/sessions/{session['id']}/uploads/fluoroscopy",
                files={"file": ("fluoro.dcm", make_dicom("HINT-0001"), "application/dicom")},
                data={"format": "dicom"},
            )
            assert upload.status_code == 201, upload.text
            assessment = console.post(
                f"/api/v1/sessions/{session['id']}/motion-assessments",
                json={"upload_id": upload.json()["id"]},
            )
            assert assessment.status_code == 201, assessment.text
        yield HintServer(server, tokens, session["id"], assessment.json())
    finally:
        assert server.stop(), server.log()[-3000:]


def _sign_in(page: Any, server: HintServer, role: RoleValues) -> None:
    page.goto(server.server.base_url + "/")
    page.get_by_label("API token").fill(server.tokens[role])
    page.get_by_role("button", name="Sign in").click()
    page.locator("#user-role").filter(has_text=role.value).wait_for()


def _click_on_frame(page: Any, column: float, row: float, size: tuple[int, int]) -> None:
    """Click the cine canvas on panel pixel (column, row) of a frame of ``size`` (rows, cols)."""
    canvas = page.locator("#cine-canvas")
    box = canvas.bounding_box()
    rows, columns = size
    canvas.click(
        position={
            "x": (column + 0.5) * box["width"] / columns,
            "y": (row + 0.5) * box["height"] / rows,
        }
    )


def test_a_click_on_the_dome_reruns_the_assessment_from_there(
    page: Any, hint_server: HintServer, screenshot_dir: Path
) -> None:
    original = hint_server.assessment
    apex = original["track"][0]
    column = round(apex["apex_column"] + HINT_OFFSET_PX[0])
    row = round(apex["apex_row"] + HINT_OFFSET_PX[1])
    _sign_in(page, hint_server, RoleValues.THERAPIST)
    page.goto(f"{hint_server.server.base_url}/#/assessments/{original['id']}")
    page.locator(".cine[data-image='shown']").wait_for()
    page.get_by_role("button", name="Next frame").click()
    page.locator("#cine-info").filter(has_text="Frame 2 /").wait_for()

    # A click on any frame asks first, showing the point on the first frame; cancel sends nothing.
    requests: list[Any] = []
    page.on(
        "request",
        lambda request: requests.append(request) if request.method == "POST" else None,
    )
    _click_on_frame(page, column, row, (256, 256))
    question = page.locator("#rerun-question")
    question.wait_for()
    assert f"column {column}, row {row} of the first frame" in question.inner_text()
    assert page.locator(".cine").get_attribute("data-frame") == "0"
    page.get_by_role("button", name="Cancel").click()
    question.wait_for(state="hidden")
    assert requests == []

    _click_on_frame(page, column, row, (256, 256))
    page.screenshot(path=str(screenshot_dir / "dome-hint-confirm.png"), full_page=True)
    page.get_by_role("button", name="Re-run from this point").click()
    note = page.locator("#dome-hint")
    note.filter(has_text="hint by test therapist").wait_for()
    page.locator(".cine[data-image='shown']").wait_for()
    page.screenshot(path=str(screenshot_dir / "dome-hint-rerun.png"), full_page=True)

    (post,) = requests
    body = post.post_data_json
    assert body["dome_hint"] == {"column_px": column, "row_px": row}
    assert body["rerun_of"] == original["id"]
    with hint_server.client() as client:
        listed = client.get(f"/api/v1/sessions/{hint_server.session_id}/motion-assessments")
        assessments = listed.json()["data"]
        assert next(a["id"] for a in assessments) == original["id"]
        rerun = assessments[-1]
        assert page.url.endswith(f"#/assessments/{rerun['id']}")
        assert rerun["rerun_of"] == original["id"]
        assert rerun["dome_hint"]["column_px"] == column
        assert rerun["dome_hint"]["row_px"] == row
        assert rerun["dome_hint"]["given_by"] == "test therapist"
        # The tracking started at the dome next to the clicked point.
        started = rerun["track"][0]
        assert np.hypot(started["apex_column"] - column, started["apex_row"] - row) <= 12.0
        assert abs(started["apex_row"] - apex["apex_row"]) <= 2.0
        # The old assessment is still there, unchanged.
        old = client.get(f"/api/v1/motion-assessments/{original['id']}").json()
        assert old == original
    page.get_by_role("link", name="the earlier assessment").click()
    page.locator("#cine-info").wait_for()
    assert page.locator("#dome-hint").count() == 0


def test_a_console_sign_in_cannot_rerun_from_a_hint(page: Any, hint_server: HintServer) -> None:
    _sign_in(page, hint_server, RoleValues.CONSOLE)
    page.goto(f"{hint_server.server.base_url}/#/assessments/{hint_server.assessment['id']}")
    page.locator(".cine[data-image='shown']").wait_for()
    assert page.locator("#rerun-help").count() == 0
    _click_on_frame(page, 100, 100, (256, 256))
    page.wait_for_timeout(300)
    assert page.locator("#rerun-question").is_hidden()
    # The page only leaves the click unhandled; the service refuses a console's hint itself.
    status = page.evaluate(
        """async ([path, body]) => {
            const session = await (await fetch("/api/v1/web-session")).json();
            const response = await fetch(path, {
                method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": session.csrf_token},
                body: JSON.stringify(body),
            });
            return response.status;
        }""",
        [
            f"/api/v1/sessions/{hint_server.session_id}/motion-assessments",
            {
                "upload_id": hint_server.assessment["upload_id"],
                "dome_hint": {"column_px": 100, "row_px": 100},
            },
        ],
    )
    assert status == 403
