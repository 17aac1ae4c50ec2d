"""Deployment defaults (issue 12, finding 11): security headers on every response, HSTS when
asked for, and a first-run token file that does not outlive its first use or its lifetime."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.conftest import InProcessApi, bearer, make_settings, start_in_process


def test_every_response_carries_the_security_headers(api: InProcessApi) -> None:
    for response in (
        api.client.get("/healthz"),
        api.client.get("/api/v1/me"),  # 401 problem
        api.client.get("/api/v1/me", headers=api.headers()),
        api.client.get("/openapi.json"),
    ):
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "strict-transport-security" not in headers  # plain HTTP, IGRT_HSTS off
    page = api.client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]  # its own policy kept


def test_hsts_when_configured(tmp_path: Path) -> None:
    for api in start_in_process(make_settings(tmp_path / "data", hsts=True)):
        assert (
            api.client.get("/healthz").headers["strict-transport-security"].startswith("max-age=")
        )


def test_the_first_run_token_file_is_deleted_on_first_use(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", first_run_token=True)
    with TestClient(create_app(settings)) as client:
        path = settings.first_run_token_path
        token = path.read_text().split()[-1]
        assert client.get("/healthz").status_code == 200
        assert path.exists()
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
        assert not path.exists()
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200  # still valid


def test_a_stale_first_run_token_file_is_deleted_at_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", first_run_token=True, first_run_token_ttl_s=60)
    with TestClient(create_app(settings)):
        pass
    path = settings.first_run_token_path
    assert path.exists()
    old = time.time() - 120
    os.utime(path, (old, old))
    with TestClient(create_app(settings)):
        assert not path.exists()
