"""A real server with the demo patient, and Debian's Chromium driven by Playwright.

The browser tests skip when Playwright or Chromium is missing, unless ``IGRT_REQUIRE_BROWSER=1``
(set by ``.ci/run``, which installs Debian's ``chromium``): then they fail instead, so CI cannot
go green without having run them. Screenshots go to ``IGRT_UI_SCREENSHOT_DIR`` when set (the
docs' pictures are made that way), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.enums import RoleValues
from tests.api.conftest import bearer, create_token, make_settings
from tests.api.live_server import LiveServer, service_environment

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
REGISTRATION_TIMEOUT_S = 90.0


def _chromium() -> str | None:
    for candidate in (
        os.environ.get("IGRT_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/bin/chromium",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (the dev extra has it)"
    if _chromium() is None:
        return "Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("IGRT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"IGRT_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    path = _chromium()
    assert path is not None
    return path


@dataclass
class DemoServer:
    """The running service, a token per role, and the demo's ids."""

    server: LiveServer
    tokens: dict[RoleValues, str]
    simulation_session_id: str
    fraction_session_id: str
    assessment_id: str
    registration_id: str

    @property
    def url(self) -> str:
        return self.server.base_url

    def api(self, role: RoleValues = RoleValues.THERAPIST) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=bearer(self.tokens[role]), timeout=30.0)


def _get(client: httpx.Client, path: str) -> Any:
    response = client.get(path)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="session")
def demo_server(
    tmp_path_factory: pytest.TempPathFactory, chromium_path: str
) -> Iterator[DemoServer]:
    folder = tmp_path_factory.mktemp("review-page")
    data_dir = folder / "data"
    settings = make_settings(data_dir)
    tokens = {role: create_token(settings, role) for role in RoleValues}
    env = service_environment(data_dir, demo_data="true", first_run_token="false")
    server = LiveServer(env, folder / "server.log").start()
    try:
        with httpx.Client(
            base_url=server.base_url, headers=bearer(tokens[RoleValues.THERAPIST]), timeout=30.0
        ) as client:
            worklist = _get(client, "/api/v1/worklist")["data"]
            simulation = next(item for item in worklist if item["kind"] == "simulation")
            fraction = next(item for item in worklist if item["kind"] == "fraction")
            assessment = _get(
                client, f"/api/v1/sessions/{simulation['session_id']}/motion-assessments"
            )["data"][0]
            deadline = time.monotonic() + REGISTRATION_TIMEOUT_S
            while True:
                job = _get(client, f"/api/v1/sessions/{fraction['session_id']}/registrations")[
                    "data"
                ][0]
                if job["status"] in ("completed", "failed") or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert job["status"] == "completed", job
        yield DemoServer(
            server,
            tokens,
            simulation["session_id"],
            fraction["session_id"],
            assessment["id"],
            job["id"],
        )
    finally:
        assert server.stop(), server.log()[-3000:]


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("IGRT_UI_SCREENSHOT_DIR")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) with a console-sized window; page errors fail."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(15000)
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors


def sign_in(page: Any, server: DemoServer, role: RoleValues = RoleValues.THERAPIST) -> None:
    """Open the page and sign in with the role's token."""
    page.goto(server.url + "/")
    page.get_by_label("API token").fill(server.tokens[role])
    page.get_by_role("button", name="Sign in").click()
    page.locator("#user-role").filter(has_text=role.value).wait_for()
