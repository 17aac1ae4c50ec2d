"""How fast the review page paints and opens its views, in Debian's Chromium on loopback.

Run ``.venv/bin/python benchmarks/review_page.py [--quick] [--repeats N]`` from the project
root (needs ``chromium`` and the ``dev`` extra's Playwright). It starts ``igrt serve`` with the
demo patient on a free loopback port, waits for the demo registration, and then, for each
repeat, in a fresh browser context (no cache, no cookie):

- ``first paint /``: first contentful paint of the page (the sign-in form);
- ``baseline /healthz``: first contentful paint of the service's ``/healthz`` JSON in the same
  browser: the floor of any page load from this server on this machine, so the page's cost is
  reported as a ratio to it;
- ``sign-in -> worklist``: from pressing Sign in to the worklist's rows on screen;
- ``assessment``: from opening the demo assessment to its first frame drawn on the cine;
- ``registration``: from opening the demo registration to its review image drawn.

Target (issue 7): first paint under 1 s on loopback. Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.service import Server  # noqa: E402

TARGET_FIRST_PAINT_MS = 1000.0
REGISTRATION_TIMEOUT_S = 120.0
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
_FCP = """() => new Promise((resolve) => {
    const seen = performance.getEntriesByName("first-contentful-paint");
    if (seen.length) { resolve(seen[0].startTime); return; }
    new PerformanceObserver((list) => resolve(list.getEntries()[0].startTime))
        .observe({type: "paint", buffered: true});
})"""


def _wait_for_demo(base_url: str, token: str) -> tuple[str, str]:
    """The demo's assessment id and registration id, once the registration has finished."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
        worklist = client.get("/api/v1/worklist").json()["data"]
        simulation = next(i for i in worklist if i["kind"] == "simulation")["session_id"]
        fraction = next(i for i in worklist if i["kind"] == "fraction")["session_id"]
        assessment = client.get(f"/api/v1/sessions/{simulation}/motion-assessments").json()
        deadline = time.monotonic() + REGISTRATION_TIMEOUT_S
        while True:
            job = client.get(f"/api/v1/sessions/{fraction}/registrations").json()["data"][0]
            if job["status"] in ("completed", "failed"):
                return assessment["data"][0]["id"], job["id"]
            if time.monotonic() > deadline:
                raise RuntimeError("the demo registration did not finish")
            time.sleep(0.2)


def _one_visit(browser: Any, base_url: str, token: str, ids: tuple[str, str]) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.goto(f"{base_url}/healthz")
        baseline = float(page.evaluate(_FCP))
        page.goto(f"{base_url}/")
        page.get_by_role("button", name="Sign in").wait_for()
        first_paint = float(page.evaluate(_FCP))
        page.get_by_label("API token").fill(token)
        started = time.perf_counter()
        page.get_by_role("button", name="Sign in").click()
        page.locator("tr.worklist-row").first.wait_for()
        worklist = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        page.goto(f"{base_url}/#/assessments/{ids[0]}")
        page.locator(".cine[data-image='shown']").wait_for()
        assessment = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()
        page.goto(f"{base_url}/#/registrations/{ids[1]}")
        page.locator("#registration-canvas[data-mode]").wait_for()
        registration = (time.perf_counter() - started) * 1000.0
    finally:
        context.close()
    return {
        "first_paint_ms": first_paint,
        "baseline_healthz_ms": baseline,
        "signin_to_worklist_ms": worklist,
        "assessment_ms": assessment,
        "registration_ms": registration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 10")
    parser.add_argument("--repeats", type=int, default=None)
    arguments = parser.parse_args()
    repeats = arguments.repeats or (3 if arguments.quick else 10)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="igrt-bench-ui-") as folder:
        server = Server(Path(folder) / "data")
        server.env.update(IGRT_DEMO_DATA="true")
        token = server.token("therapist")
        server.start()
        try:
            ids = _wait_for_demo(server.base_url, token)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
                try:
                    _one_visit(browser, server.base_url, token, ids)  # warm the server's caches
                    visits = [
                        _one_visit(browser, server.base_url, token, ids) for _ in range(repeats)
                    ]
                finally:
                    browser.close()
        finally:
            server.stop()

    rows = {key: [visit[key] for visit in visits] for key in visits[0]}
    medians = {key: statistics.median(values) for key, values in rows.items()}
    print(f"{'measure':<26}{'median ms':>11}{'max ms':>9}")
    labels = {
        "first_paint_ms": "first paint /",
        "baseline_healthz_ms": "baseline /healthz",
        "signin_to_worklist_ms": "sign-in -> worklist",
        "assessment_ms": "assessment (first frame)",
        "registration_ms": "registration (image)",
    }
    for key, label in labels.items():
        print(f"{label:<26}{medians[key]:>11.1f}{max(rows[key]):>9.1f}")
    ratio = medians["first_paint_ms"] / medians["baseline_healthz_ms"]
    met = max(rows["first_paint_ms"]) < TARGET_FIRST_PAINT_MS
    verdict = "met" if met else "NOT met"
    print(f"first paint / baseline: {ratio:.2f}x; target first paint < 1 s: {verdict}")
    print(
        json.dumps(
            {
                "benchmark": "review_page",
                "repeats": repeats,
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                **{f"median_{key}": round(value, 1) for key, value in medians.items()},
                "max_first_paint_ms": round(max(rows["first_paint_ms"]), 1),
                "first_paint_vs_healthz": round(ratio, 2),
                "target_first_paint_ms": TARGET_FIRST_PAINT_MS,
                "target_met": met,
            }
        )
    )


if __name__ == "__main__":
    main()
