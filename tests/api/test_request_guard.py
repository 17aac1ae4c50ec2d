"""Nothing is read before authentication, and each route reads at most its own body limit
(issue 12, finding 5): the body of an unauthenticated request is never consumed, a JSON route
refuses a body over ``IGRT_MAX_JSON_BYTES``, and the upload routes keep the upload limit.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from api.enums import RoleValues
from api.request_guard import MULTIPART_OVERHEAD_BYTES, body_limit_for
from tests.api.conftest import InProcessApi

_CHUNK = b"x" * 65536


def _call(api: InProcessApi, path: str, headers: dict[str, str], declared: int) -> tuple[int, int]:
    """POST ``declared`` bytes straight into the ASGI app; (status, body bytes it pulled)."""
    app = api.client.app
    pulled = 0
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= declared:
            return {"type": "http.disconnect"}
        pulled += len(_CHUNK)
        return {"type": "http.request", "body": _CHUNK, "more_body": pulled < declared}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [*raw, (b"content-length", str(declared).encode()), (b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    anyio.run(app, scope, receive, send)
    return status[0], pulled


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer igrt_not-a-token"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"cookie": "igrt_session=forged"},
    ],
    ids=["none", "unknown token", "basic", "forged cookie"],
)
def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(
    api: InProcessApi, headers: dict[str, str]
) -> None:
    content_type = {"content-type": "multipart/form-data; boundary=x"}
    status, pulled = _call(
        api, "/api/v1/sessions/any/uploads/volume", {**headers, **content_type}, 2_000_000
    )
    assert (status, pulled) == (401, 0)


def test_an_unauthenticated_json_body_is_not_read(api: InProcessApi) -> None:
    status, pulled = _call(api, "/api/v1/patients", {"content-type": "application/json"}, 60_000)
    assert (status, pulled) == (401, 0)


def test_a_json_body_over_its_limit_is_413_even_with_a_token(api: InProcessApi) -> None:
    body = json.dumps({"external_id": "MRN-X", "name": "y" * (api.settings.max_json_bytes)})
    response = api.client.post(
        "/api/v1/patients",
        content=body,
        headers={**api.headers(), "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_the_sign_in_is_the_one_body_read_without_a_credential(api: InProcessApi) -> None:
    response = api.client.post("/api/v1/web-session", json={"token": "igrt_wrong"})
    assert response.status_code == 401  # refused by the route, having read a small body


def test_each_route_has_its_own_limit(api: InProcessApi) -> None:
    settings = api.settings
    upload = settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    assert body_limit_for("/api/v1/sessions/s/uploads/fluoroscopy", settings) == upload
    assert body_limit_for("/api/v1/sessions/s/uploads/volume", settings) == upload
    frames = "/api/v1/sessions/s/streams/x/frames"
    assert body_limit_for(frames, settings) == settings.stream_max_frame_bytes
    for path in ("/api/v1/patients", "/api/v1/sessions/s/streams", "/api/v1/web-session"):
        assert body_limit_for(path, settings) == settings.max_json_bytes
    # A valid token still sends a legal upload through (the limit is the upload limit).
    patient = api.create_patient()
    session = api.create_session(patient["id"])
    response = api.client.post(
        f"/api/v1/sessions/{session['id']}/uploads/fluoroscopy",
        files={"file": ("f.raw", b"\0" * 200_000, "application/octet-stream")},
        data={"format": "raw"},
        headers=api.headers(RoleValues.CONSOLE),
    )
    assert response.status_code != 413, response.text
