"""Browser sign-in of the review page: the session cookie, CSRF, sign-out, revocation, expiry.

Cookies are handled explicitly (the client's jar is emptied after each sign-in and the
``Cookie`` header is sent by hand) so that every request says exactly which credentials it
carries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import api.web_sessions as web_sessions
from api.db.base import utc_now as real_now
from api.enums import RoleValues
from api.web_sessions import SESSION_COOKIE
from igrt.cli.main import main as igrt_cli
from tests.api.conftest import InProcessApi, make_settings, start_in_process

WEB_SESSION = "/api/v1/web-session"
ME = "/api/v1/me"
PATIENTS = "/api/v1/patients"


def sign_in(api: InProcessApi, role: RoleValues = RoleValues.THERAPIST) -> tuple[str, Any]:
    """Sign in with the role's token: (the cookie's secret, the response)."""
    response = api.client.post(WEB_SESSION, json={"token": api.tokens[role]})
    assert response.status_code == 201, response.text
    secret = response.cookies[SESSION_COOKIE]
    api.client.cookies.clear()
    return secret, response


def with_cookie(secret: str, csrf: str | None = None) -> dict[str, str]:
    headers = {"Cookie": f"{SESSION_COOKIE}={secret}"}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return headers


def cookie_attributes(set_cookie: str) -> tuple[str, dict[str, str]]:
    """The value and the lower-cased attributes of one ``Set-Cookie`` header."""
    first, *rest = (part.strip() for part in set_cookie.split(";"))
    name, _, value = first.partition("=")
    assert name == SESSION_COOKIE
    attributes = {}
    for part in rest:
        key, _, attribute = part.partition("=")
        attributes[key.lower()] = attribute
    return value, attributes


def audit_actions(api: InProcessApi, token_id: str) -> list[tuple[str, str, str | None]]:
    events = api.client.get(
        "/api/v1/audit-events",
        params={"resource_id": token_id},
        headers=api.headers(RoleValues.PHYSICIST),
    )
    assert events.status_code == 200, events.text
    return [
        (event["action"], event["resource_type"], event["actor_role"])
        for event in events.json()["data"]
    ]


def test_sign_in_sets_a_strict_http_only_cookie_and_names_the_token(api: InProcessApi) -> None:
    before = datetime.now(UTC)
    secret, response = sign_in(api)
    body = response.json()
    me = api.client.get(ME, headers=api.headers(RoleValues.THERAPIST)).json()
    assert set(body) == {"token_id", "name", "role", "csrf_token", "expires_at"}
    assert (body["token_id"], body["name"], body["role"]) == (
        me["token_id"],
        "test therapist",
        "therapist",
    )
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(hours=12) <= expires_at <= datetime.now(UTC) + timedelta(hours=12)
    assert response.headers["cache-control"] == "no-store"

    (set_cookie,) = response.headers.get_list("set-cookie")
    value, attributes = cookie_attributes(set_cookie)
    assert value == secret
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "strict"
    assert attributes["path"] == "/"
    assert attributes["max-age"] == str(12 * 3600)
    assert "secure" not in attributes  # IGRT_COOKIE_SECURE is off by default
    # The cookie holds a fresh secret: neither the API token nor the CSRF token.
    assert len(secret) >= 32
    assert secret != api.tokens[RoleValues.THERAPIST]
    assert secret != body["csrf_token"]
    assert secret not in response.text


def test_secure_cookie_and_session_length_follow_the_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", cookie_secure=True, web_session_hours=0.5)
    for api in start_in_process(settings):
        before = datetime.now(UTC)
        _, response = sign_in(api)
        _, attributes = cookie_attributes(response.headers["set-cookie"])
        assert "secure" in attributes
        assert attributes["max-age"] == "1800"
        expires_at = datetime.fromisoformat(response.json()["expires_at"])
        assert before + timedelta(minutes=30) <= expires_at
        assert expires_at <= datetime.now(UTC) + timedelta(minutes=30)


def test_get_tells_a_signed_in_page_who_it_is(api: InProcessApi) -> None:
    secret, response = sign_in(api, RoleValues.PHYSICIST)
    again = api.client.get(WEB_SESSION, headers=with_cookie(secret))
    assert again.status_code == 200, again.text
    assert again.json() == response.json()
    assert again.headers["cache-control"] == "no-store"
    # Each sign-in is its own session with its own CSRF token.
    other_secret, other = sign_in(api, RoleValues.PHYSICIST)
    assert other_secret != secret
    assert other.json()["csrf_token"] != response.json()["csrf_token"]


NO_LIVE_SESSION = {
    "no cookie": {},
    "unknown secret": {"Cookie": f"{SESSION_COOKIE}=not-a-session"},
    "oversized secret": {"Cookie": f"{SESSION_COOKIE}={'x' * 500}"},
    "another cookie": {"Cookie": "other_cookie=1"},
}


def test_without_a_live_session_everything_is_401(api: InProcessApi) -> None:
    for case, headers in NO_LIVE_SESSION.items():
        for path in (WEB_SESSION, ME, PATIENTS):
            response = api.client.get(path, headers=headers)
            assert response.status_code == 401, (case, path, response.text)
            assert response.json()["code"] == "unauthenticated"
            assert response.headers["www-authenticate"] == "Bearer"
        signed_out = api.client.delete(WEB_SESSION, headers={**headers, "X-CSRF-Token": "x"})
        assert signed_out.status_code == 401, case


REFUSED_SIGN_INS: dict[str, tuple[dict[str, Any], int, str | None]] = {
    "unknown token": ({"json": {"token": "igrt_not-a-real-token"}}, 401, "token"),
    "blank token": ({"json": {"token": "   "}}, 401, "token"),
    "no token": ({"json": {}}, 422, "token"),
    "empty token": ({"json": {"token": ""}}, 422, "token"),
    "too long": ({"json": {"token": "t" * 201}}, 422, "token"),
    "extra field": ({"json": {"token": "x", "role": "physicist"}}, 422, "role"),
    "form": ({"data": {"token": "x"}}, 415, "content-type"),
    "text/plain": (
        {"content": b'{"token": "x"}', "headers": {"Content-Type": "text/plain"}},
        415,
        "content-type",
    ),
    "broken JSON": (
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        422,
        None,
    ),
}


def test_refused_sign_ins_set_no_cookie(api: InProcessApi) -> None:
    for case, (request_kwargs, status, field) in REFUSED_SIGN_INS.items():
        response = api.client.post(WEB_SESSION, **request_kwargs)
        assert response.status_code == status, (case, response.text)
        if field is not None:
            assert response.json()["field"] == field, case
        assert "set-cookie" not in response.headers, case
        assert SESSION_COOKIE not in api.client.cookies, case


def test_a_real_token_in_a_form_is_still_refused(api: InProcessApi) -> None:
    token = api.tokens[RoleValues.THERAPIST]
    response = api.client.post(WEB_SESSION, data={"token": token})
    assert response.status_code == 415
    assert "set-cookie" not in response.headers
    padded = api.client.post(WEB_SESSION, json={"token": f"  {token}\n"})
    assert padded.status_code == 201  # surrounding white space from a paste is forgiven


def test_the_cookie_authenticates_reads_without_csrf(api: InProcessApi) -> None:
    secret, response = sign_in(api, RoleValues.CONSOLE)
    me = api.client.get(ME, headers=with_cookie(secret))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "token_id": response.json()["token_id"],
        "name": "test console",
        "role": "console",
    }
    for path in (PATIENTS, "/api/v1/worklist"):  # with the console's narrow role
        response = api.client.get(path, headers=with_cookie(secret))
        assert response.status_code == 403, (path, response.text)
    therapist, _ = sign_in(api, RoleValues.THERAPIST)
    for path in (PATIENTS, "/api/v1/worklist"):
        response = api.client.get(path, headers=with_cookie(therapist))
        assert response.status_code == 200, (path, response.text)


def test_changes_with_the_cookie_need_the_sessions_csrf_token(api: InProcessApi) -> None:
    secret, response = sign_in(api)
    csrf = response.json()["csrf_token"]
    other_secret, other = sign_in(api)
    other_csrf = other.json()["csrf_token"]

    def create(external_id: str, headers: dict[str, str]) -> Any:
        return api.client.post(PATIENTS, json={"external_id": external_id}, headers=headers)

    refusals = {
        "MRN-NO-CSRF": with_cookie(secret),
        "MRN-EMPTY-CSRF": with_cookie(secret, ""),
        "MRN-WRONG-CSRF": with_cookie(secret, "0" * len(csrf)),
        "MRN-OTHER-SESSION": with_cookie(secret, other_csrf),
        "MRN-SECRET-AS-CSRF": with_cookie(secret, secret),
    }
    for external_id, headers in refusals.items():
        refused = create(external_id, headers)
        assert refused.status_code == 403, (external_id, refused.text)
        assert refused.json()["code"] == "forbidden"
        assert refused.json()["field"] == "x-csrf-token"

    assert create("MRN-CSRF-OK", with_cookie(secret, csrf)).status_code == 201
    assert create("MRN-OTHER-OK", with_cookie(other_secret, other_csrf)).status_code == 201
    listed = api.client.get(PATIENTS, headers=api.headers()).json()
    assert sorted(p["external_id"] for p in listed["data"]) == ["MRN-CSRF-OK", "MRN-OTHER-OK"]


def test_the_cookie_has_its_tokens_role(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    patient = api.create_patient()
    session_id = api.create_session(patient["id"])["id"]
    upload = api.upload(session_id, make_dicom())
    assert upload.status_code == 201, upload.text
    assessment = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        json={"upload_id": upload.json()["id"]},
        headers=api.headers(RoleValues.CONSOLE),
    ).json()
    reviews = f"/api/v1/motion-assessments/{assessment['id']}/reviews"

    console_secret, console = sign_in(api, RoleValues.CONSOLE)
    refused = api.client.post(
        reviews,
        json={"outcome": "approved"},
        headers=with_cookie(console_secret, console.json()["csrf_token"]),
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "forbidden"
    assert refused.json()["field"] is None  # the role, not the CSRF token

    therapist_secret, therapist = sign_in(api, RoleValues.THERAPIST)
    approved = api.client.post(
        reviews,
        json={"outcome": "approved"},
        headers=with_cookie(therapist_secret, therapist.json()["csrf_token"]),
    )
    assert approved.status_code == 201, approved.text
    assert approved.json()["reviewer_role"] == "therapist"
    assert approved.json()["created_by"] == therapist.json()["token_id"]


def test_sign_out_needs_csrf_and_ends_only_that_session(api: InProcessApi) -> None:
    secret, response = sign_in(api)
    csrf = response.json()["csrf_token"]
    other_secret, _ = sign_in(api)

    for headers in (with_cookie(secret), with_cookie(secret, "wrong")):
        refused = api.client.delete(WEB_SESSION, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["field"] == "x-csrf-token"
        assert "set-cookie" not in refused.headers
    assert api.client.get(ME, headers=with_cookie(secret)).status_code == 200

    signed_out = api.client.delete(WEB_SESSION, headers=with_cookie(secret, csrf))
    assert signed_out.status_code == 204, signed_out.text
    value, attributes = cookie_attributes(signed_out.headers["set-cookie"])
    assert value in ("", '""')
    assert attributes["max-age"] == "0"
    assert attributes["path"] == "/"

    # The server ended the session: replaying the old cookie does not work.
    for method, path in (("GET", WEB_SESSION), ("GET", ME)):
        again = api.client.request(method, path, headers=with_cookie(secret))
        assert again.status_code == 401, again.text
    replayed = api.client.post(
        PATIENTS, json={"external_id": "MRN-AFTER"}, headers=with_cookie(secret, csrf)
    )
    assert replayed.status_code == 401
    assert api.client.delete(WEB_SESSION, headers=with_cookie(secret, csrf)).status_code == 401
    # The same token's other browser is still signed in.
    assert api.client.get(ME, headers=with_cookie(other_secret)).status_code == 200


def test_sign_in_and_out_are_audited(api: InProcessApi) -> None:
    secret, response = sign_in(api)
    token_id = response.json()["token_id"]
    assert audit_actions(api, token_id) == [("web_session.create", "api_token", "therapist")]
    api.client.delete(WEB_SESSION, headers=with_cookie(secret, response.json()["csrf_token"]))
    assert audit_actions(api, token_id) == [
        ("web_session.create", "api_token", "therapist"),
        ("web_session.end", "api_token", "therapist"),
    ]
    events = api.client.get(
        "/api/v1/audit-events", params={"limit": 1000}, headers=api.headers(RoleValues.PHYSICIST)
    ).text
    assert secret not in events
    assert response.json()["csrf_token"] not in events
    # A refused sign-in creates no session and no sign-in event.
    api.client.post(WEB_SESSION, json={"token": "igrt_not-a-real-token"})
    assert len(audit_actions(api, token_id)) == 2


@pytest.fixture
def cli_environment(api: InProcessApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``igrt`` CLI pointed at the running app's data directory."""
    for name in ("IGRT_DATABASE_URL", "IGRT_TOKEN_PEPPER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IGRT_DATA_DIR", str(api.settings.data_dir))


@pytest.mark.usefixtures("cli_environment")
def test_revoking_the_token_signs_its_browsers_out(
    api: InProcessApi, capsys: pytest.CaptureFixture[str]
) -> None:
    first, response = sign_in(api)
    csrf = response.json()["csrf_token"]
    second, _ = sign_in(api)
    physicist, _ = sign_in(api, RoleValues.PHYSICIST)
    assert api.client.get(ME, headers=with_cookie(first)).status_code == 200

    assert igrt_cli(["token", "revoke", response.json()["token_id"]]) == 0
    capsys.readouterr()

    for secret in (first, second):
        assert api.client.get(WEB_SESSION, headers=with_cookie(secret)).status_code == 401
        assert api.client.get(ME, headers=with_cookie(secret)).status_code == 401
    created = api.client.post(
        PATIENTS, json={"external_id": "MRN-REVOKED"}, headers=with_cookie(first, csrf)
    )
    assert created.status_code == 401
    # Nor can the revoked token sign in again.
    again = api.client.post(WEB_SESSION, json={"token": api.tokens[RoleValues.THERAPIST]})
    assert again.status_code == 401
    assert again.json()["field"] == "token"
    assert "set-cookie" not in again.headers
    # Another token's browser session is untouched.
    assert api.client.get(ME, headers=with_cookie(physicist)).json()["role"] == "physicist"


def test_an_expired_session_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path / "data", web_session_hours=1.0, web_session_idle_minutes=120)
    for api_ in start_in_process(settings):
        secret, response = sign_in(api_)
        csrf = response.json()["csrf_token"]
        monkeypatch.setattr(web_sessions, "utc_now", lambda: real_now() + timedelta(minutes=59))
        assert api_.client.get(ME, headers=with_cookie(secret)).status_code == 200

        monkeypatch.setattr(web_sessions, "utc_now", lambda: real_now() + timedelta(minutes=61))
        assert api_.client.get(WEB_SESSION, headers=with_cookie(secret)).status_code == 401
        assert api_.client.get(ME, headers=with_cookie(secret)).status_code == 401
        created = api_.client.post(
            PATIENTS, json={"external_id": "MRN-LATE"}, headers=with_cookie(secret, csrf)
        )
        assert created.status_code == 401
        # The API token itself does not expire with the browser session.
        assert api_.client.get(ME, headers=api_.headers()).status_code == 200


def test_a_bearer_token_wins_over_the_cookie(api: InProcessApi) -> None:
    console_secret, _ = sign_in(api, RoleValues.CONSOLE)
    both = {**with_cookie(console_secret), **api.headers(RoleValues.PHYSICIST)}
    assert api.client.get(ME, headers=both).json()["role"] == "physicist"
    # With a bearer token there is no CSRF check (no browser sends one by itself) ...
    created = api.client.post(PATIENTS, json={"external_id": "MRN-BEARER"}, headers=both)
    assert created.status_code == 201, created.text
    # ... and a bad bearer token is refused, not replaced by the cookie.
    bad = {**with_cookie(console_secret), "Authorization": "Bearer igrt_not-a-real-token"}
    refused = api.client.get(ME, headers=bad)
    assert refused.status_code == 401, refused.text
    assert refused.json()["detail"] == "unknown or revoked token"


def test_a_session_left_idle_ends_and_use_keeps_it_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "data", web_session_idle_minutes=30)
    for api_ in start_in_process(settings):
        active, _ = sign_in(api_)
        idle, _ = sign_in(api_)
        # Used every 20 minutes for an hour: still signed in.
        for minutes in (20, 40, 60):
            monkeypatch.setattr(
                web_sessions, "utc_now", lambda m=minutes: real_now() + timedelta(minutes=m)
            )
            assert api_.client.get(ME, headers=with_cookie(active)).status_code == 200
        # Not used since signing in an hour ago: ended.
        assert api_.client.get(ME, headers=with_cookie(idle)).status_code == 401
        # A page's own periodic refresh is not use: it does not keep a session alive.
        for minutes in (70, 80):
            monkeypatch.setattr(
                web_sessions, "utc_now", lambda m=minutes: real_now() + timedelta(minutes=m)
            )
            background = {**with_cookie(active), "X-Igrt-Background": "1"}
            assert api_.client.get(ME, headers=background).status_code == 200
        # And 31 minutes after its last use the active one ends too.
        monkeypatch.setattr(web_sessions, "utc_now", lambda: real_now() + timedelta(minutes=91))
        assert api_.client.get(ME, headers=with_cookie(active)).status_code == 401


def test_parallel_reads_of_a_page_all_refresh_the_same_session(
    api: InProcessApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A page opens with four parallel reads; once the last refresh is over a minute old, each of
    # them wants to refresh the session row. All read the row before any writes: on SQLite,
    # writing from those snapshots refused all but one ("database is busy", 503 on a GET).
    secret, _ = sign_in(api)
    service = api.client.app.state.service  # type: ignore[attr-defined]
    monkeypatch.setattr(web_sessions, "utc_now", lambda: real_now() + timedelta(minutes=5))
    readers = 4
    all_have_read = threading.Barrier(readers, timeout=10)
    original_check = web_sessions.token_is_active

    def check_after_everyone_has_read(*args: Any, **kwargs: Any) -> Any:
        all_have_read.wait()
        return original_check(*args, **kwargs)

    monkeypatch.setattr(web_sessions, "token_is_active", check_after_everyone_has_read)
    outcomes: list[object] = []

    def read() -> None:
        try:
            with service.sessions() as db:
                signed_in = web_sessions.authenticate_web_session(
                    db, service.pepper, secret, idle_minutes=30
                )
                db.commit()
            outcomes.append(signed_in is not None)
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == [True] * readers
    monkeypatch.setattr(web_sessions, "token_is_active", original_check)
    # Refreshed: 29 minutes after that it is still alive (idle limit 30 minutes).
    monkeypatch.setattr(web_sessions, "utc_now", lambda: real_now() + timedelta(minutes=34))
    assert api.client.get(ME, headers=with_cookie(secret)).status_code == 200
