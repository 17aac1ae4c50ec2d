"""The role matrix (issue 12, finding 10): every route of the OpenAPI schema and both WebSockets,
called as a console, a therapist, a physicist, with no credential and with a revoked token.
0 unauthorised successes: a caller the table does not admit gets 401 or 403, never anything else;
an admitted one is never refused for its role.

The table is data: a new route must be classified here (the test fails until it is), and a new
role (the physician) is one entry in :data:`api.permissions.ROLE_PERMISSIONS` and in the role
groups below.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from api.enums import RoleValues
from api.security import authenticate_token, load_pepper, revoke_api_token
from tests.api.conftest import InProcessApi, bearer, create_token, make_settings, start_in_process

ANY_ROLE = frozenset(RoleValues)
PEOPLE = frozenset({RoleValues.THERAPIST, RoleValues.PHYSICIST, RoleValues.PHYSICIAN})
PHYSICISTS = frozenset({RoleValues.PHYSICIST})

EXPECTED: dict[str, frozenset[RoleValues]] = {
    "metrics": ANY_ROLE,
    "create_patient": PEOPLE,
    "list_patients": PEOPLE,
    "get_patient": PEOPLE,
    "create_session": ANY_ROLE,
    "list_sessions": ANY_ROLE,
    "get_session": ANY_ROLE,
    "upload_fluoroscopy": ANY_ROLE,
    "list_uploads": ANY_ROLE,
    "get_upload": ANY_ROLE,
    "download_upload": PEOPLE,
    "upload_volume": ANY_ROLE,  # CBCTs; a planning CT needs PEOPLE (tested below)
    "list_volume_uploads": ANY_ROLE,
    "get_volume_upload": ANY_ROLE,
    "download_volume_upload": PEOPLE,
    "create_registration": ANY_ROLE,
    "list_registrations": ANY_ROLE,
    "get_registration": ANY_ROLE,
    "get_registration_result": ANY_ROLE,
    "get_registration_overlay": ANY_ROLE,
    "download_registration_dicom": ANY_ROLE,
    "create_pair_registration": ANY_ROLE,
    "list_pair_registrations": ANY_ROLE,
    "get_pair_registration": ANY_ROLE,
    "create_motion_assessment": ANY_ROLE,
    "list_motion_assessments": ANY_ROLE,
    "get_motion_assessment": ANY_ROLE,
    "download_motion_assessment_report": PEOPLE,  # names the patient on every page
    "create_motion_assessment_review": PEOPLE,
    "list_motion_assessment_reviews": ANY_ROLE,
    "create_registration_review": PEOPLE,
    "list_registration_reviews": ANY_ROLE,
    "get_review": ANY_ROLE,
    "open_stream": ANY_ROLE,
    "track_stream_frame": ANY_ROLE,
    "stop_stream": ANY_ROLE,
    "get_upload_frame": ANY_ROLE,
    "get_worklist": PEOPLE,
    "get_session_history": ANY_ROLE,
    "acknowledge_alerts": PEOPLE,
    "who_am_i": ANY_ROLE,
    "list_audit_events": PHYSICISTS,
    "list_dicom_quarantine": PEOPLE,
    "release_dicom_quarantine": PHYSICISTS,
    "discard_dicom_quarantine": PHYSICISTS,
    "list_session_dicom_instances": ANY_ROLE,
}
"""Roles admitted by each operation that takes an API token."""

PUBLIC = frozenset({"health", "ready"})
COOKIE_ONLY = frozenset({"sign_in", "get_web_session", "sign_out"})
"""The review page's sign-in routes: a token goes in the sign-in body, never a header."""

WEBSOCKETS = {"stream": ANY_ROLE, "monitor": ANY_ROLE}

Caller = tuple[str, dict[str, str], RoleValues | None]


@pytest.fixture(scope="module")
def matrix_api(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[InProcessApi, list[Caller]]]:
    settings = make_settings(Path(tmp_path_factory.mktemp("matrix")) / "data")
    revoked = create_token(settings, RoleValues.THERAPIST, "revoked")
    for api in start_in_process(settings):
        service = api.client.app.state.service  # type: ignore[attr-defined]
        with service.sessions() as db:
            principal = authenticate_token(db, load_pepper(settings), revoked)
            assert principal is not None
            revoke_api_token(db, principal.token_id)
            db.commit()
        callers: list[Caller] = [
            (role.value, bearer(api.tokens[role]), role) for role in RoleValues
        ]
        callers += [("none", {}, None), ("revoked", bearer(revoked), None)]
        yield api, callers


def _operations(api: InProcessApi) -> list[tuple[str, str, str, dict[str, Any]]]:
    schema = api.client.get("/openapi.json").json()
    return [
        (operation["operationId"], method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def _request_kwargs(operation: dict[str, Any]) -> dict[str, Any]:
    content = (operation.get("requestBody") or {}).get("content", {})
    if "application/json" in content:
        return {"json": {}}
    if "multipart/form-data" in content:
        return {"files": {"file": ("f.bin", b"x", "application/octet-stream")}}
    if "application/octet-stream" in content:
        return {"content": b"", "headers": {"content-type": "application/octet-stream"}}
    return {}


def test_every_operation_is_classified(matrix_api: tuple[InProcessApi, list[Caller]]) -> None:
    api, _ = matrix_api
    ids = {operation_id for operation_id, *_ in _operations(api)}
    assert ids == set(EXPECTED) | PUBLIC | COOKIE_ONLY


def test_no_caller_outside_the_table_succeeds_and_none_inside_is_refused_for_its_role(
    matrix_api: tuple[InProcessApi, list[Caller]],
) -> None:
    api, callers = matrix_api
    wrong: list[str] = []
    checked = 0
    for operation_id, method, path, operation in _operations(api):
        if operation_id in PUBLIC | COOKIE_ONLY:
            continue
        admitted = EXPECTED.get(operation_id, frozenset())
        url = path.replace("{plane}", "axial").replace("{frame_index}", "0")
        url = url.replace("{", "").replace("}", "")  # other ids: a name that exists nowhere
        kwargs = _request_kwargs(operation)
        for name, headers, role in callers:
            response = api.client.request(
                method, url, **{**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}
            )
            checked += 1
            allowed = role is not None and role in admitted
            refused = response.status_code in (401, 403)
            if allowed == refused or (role is None and response.status_code != 401):
                wrong.append(f"{name} {method} {path}: {response.status_code}")
    assert wrong == []
    assert checked >= 5 * len(EXPECTED)


def test_a_console_cannot_upload_a_planning_ct(
    matrix_api: tuple[InProcessApi, list[Caller]],
) -> None:
    api, _ = matrix_api
    for role, expected in ((RoleValues.CONSOLE, 403), (RoleValues.THERAPIST, 404)):
        response = api.client.post(
            "/api/v1/sessions/nowhere/uploads/volume",
            files={"file": ("ct.mha", b"x", "application/octet-stream")},
            data={"kind": "planning_ct", "format": "mha"},
            headers=api.headers(role),
        )
        assert response.status_code == expected, (role, response.text)


@pytest.mark.parametrize("route", sorted(WEBSOCKETS))
def test_websockets_admit_exactly_the_table(
    matrix_api: tuple[InProcessApi, list[Caller]], route: str
) -> None:
    api, callers = matrix_api
    patient = api.create_patient(f"MRN-MATRIX-{route}")
    session_id = api.create_session(patient["id"])["id"]
    for name, headers, role in callers:
        with api.client.websocket_connect(
            f"/api/v1/sessions/{session_id}/{route}", headers=headers
        ) as websocket:
            if route == "stream" and not headers:
                websocket.send_text(json.dumps({"type": "auth", "token": "igrt_none"}))
            first = json.loads(websocket.receive_text())
            if role is not None and role in WEBSOCKETS[route]:
                assert first["type"] == "ready", (name, first)
            else:
                assert first["code"] == "unauthenticated", (name, first)
                with pytest.raises(WebSocketDisconnect) as closed:
                    websocket.receive_text()
                assert closed.value.code == 1008, name
