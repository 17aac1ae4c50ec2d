"""The review page's DICOM quarantine panel, fed by a real receiver on the demo server's data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.dicom.receiver import DicomReceiver, DicomReceiverSettings, Status
from api.enums import RoleValues
from tests.api.conftest import create_token, make_settings
from tests.api.dicom.conftest import identify, rt_files, send
from tests.api.live_server import LiveServer, service_environment
from tests.api.web.conftest import DemoServer, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.shared_data]

STRANGER = "MRN-NOT-HERE"


def test_the_worklist_shows_the_quarantine_to_clinical_staff_only(
    page: Any,
    demo_server: DemoServer,
    shared_data: Path,
    tmp_path: Path,
    screenshot_dir: Path,
) -> None:
    from api.service import Service

    settings = make_settings(Path(demo_server.server.env["IGRT_DATA_DIR"]))
    receiver = DicomReceiver(
        Service.from_settings(settings),
        DicomReceiverSettings(port=0, allowed_aes="CTSIM=planning"),
    )
    receiver.start()
    try:
        stranger = identify(
            rt_files(shared_data)["RP"],
            tmp_path / "stranger.dcm",
            PatientID=STRANGER,
            SOPInstanceUID="1.2.826.0.1.3680043.8.498.70004",
        )
        assert send(receiver.port, [stranger]) == [Status.SUCCESS]
    finally:
        receiver.stop()
    sign_in(page, demo_server)
    row = page.locator("tr.quarantine-row", has_text=STRANGER)
    row.wait_for()
    assert "unknown patient" in row.inner_text()
    assert "CTSIM" in row.inner_text()
    page.locator("section.quarantine").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir / "dicom-quarantine.png"), full_page=True)
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, demo_server, RoleValues.CONSOLE)
    # A console may not read the worklist since issue 12: the page says so, and shows no
    # quarantine either.
    page.locator("div.error-card, p.hint.error").first.wait_for()
    assert page.locator("section.quarantine").count() == 0


@pytest.fixture
def plain_server(tmp_path: Path, chromium_path: str) -> Iterator[DemoServer]:
    """A server of its own without the demo patient (the release adds a worklist session,
    which the demo server's worklist tests must not see)."""
    data_dir = tmp_path / "server" / "data"
    settings = make_settings(data_dir)
    tokens = {role: create_token(settings, role) for role in RoleValues}
    env = service_environment(data_dir, demo_data="false", first_run_token="false")
    server = LiveServer(env, tmp_path / "server.log").start()
    try:
        yield DemoServer(server, tokens, "", "", "", "")
    finally:
        assert server.stop(), server.log()[-3000:]


def test_a_physicist_releases_a_held_series_from_the_worklist(
    page: Any, plain_server: DemoServer, shared_data: Path, tmp_path: Path
) -> None:
    from api.service import Service

    late = "MRN-RELEASE-ME"
    settings = make_settings(Path(plain_server.server.env["IGRT_DATA_DIR"]))
    receiver = DicomReceiver(
        Service.from_settings(settings),
        DicomReceiverSettings(port=0, allowed_aes="CTSIM=planning"),
    )
    receiver.start()
    try:
        held = identify(
            rt_files(shared_data)["RP"],
            tmp_path / "late.dcm",
            PatientID=late,
            SOPInstanceUID="1.2.826.0.1.3680043.8.498.70005",
        )
        assert send(receiver.port, [held]) == [Status.SUCCESS]
    finally:
        receiver.stop()
    with plain_server.api() as client:
        patient = client.post("/api/v1/patients", json={"external_id": late}).json()
        session = client.post(
            f"/api/v1/patients/{patient['id']}/sessions",
            json={"kind": "simulation", "patient_position": "HFS"},
        ).json()
    sign_in(page, plain_server, RoleValues.THERAPIST)
    row = page.locator("tr.quarantine-row", has_text=late)
    row.wait_for()
    assert row.locator("button.release").count() == 0  # a therapist sees, a physicist decides
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, plain_server, RoleValues.PHYSICIST)
    row = page.locator("tr.quarantine-row", has_text=late)
    row.locator("button.release").click()
    row.get_by_label("Session id").fill(session["id"])
    row.get_by_label("Reason").fill("patient registered after the plan arrived")
    row.get_by_role("button", name="Release the series").click()
    page.locator("tr.quarantine-row", has_text=late).locator(
        ".badge.resolution-released"
    ).wait_for()
    with plain_server.api() as client:
        filed = client.get(f"/api/v1/sessions/{session['id']}/dicom-instances").json()
    assert [row["kind"] for row in filed["data"]] == ["rt_plan"]
