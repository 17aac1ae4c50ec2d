"""Tokens: format, keyed hashing, pepper handling, roles."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from api.core.config import Settings
from api.db.engine import make_engine, make_session_factory
from api.db.migrate import upgrade
from api.enums import RoleValues
from api.security import (
    TOKEN_PREFIX,
    authenticate_token,
    create_api_token,
    hash_token,
    load_pepper,
    revoke_api_token,
)
from tests.api.conftest import InProcessApi, make_settings


def test_a_generated_pepper_is_private_and_stable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    pepper = load_pepper(settings)
    assert len(pepper) == 32
    assert stat.S_IMODE(settings.pepper_path.stat().st_mode) == 0o600
    assert load_pepper(settings) == pepper


def test_a_configured_pepper_wins_and_must_be_long(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, token_pepper=SecretStr("p" * 32))
    assert load_pepper(settings) == b"p" * 32
    assert not settings.pepper_path.exists()
    with pytest.raises(ValueError, match="16 characters"):
        load_pepper(make_settings(tmp_path, token_pepper=SecretStr("short")))


def test_hash_depends_on_the_pepper() -> None:
    assert hash_token("igrt_x", b"a" * 32) != hash_token("igrt_x", b"b" * 32)
    assert len(hash_token("igrt_x", b"a" * 32)) == 64


def test_create_authenticate_revoke(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    pepper = load_pepper(settings)
    with make_session_factory(engine)() as db:
        row, token = create_api_token(db, pepper, name="linac 3", role=RoleValues.CONSOLE)
        db.commit()
        assert token.startswith(TOKEN_PREFIX)
        assert len(token) > 40
        assert row.token_prefix == token[:11]
        principal = authenticate_token(db, pepper, token)
        assert principal is not None
        assert principal.role is RoleValues.CONSOLE
        assert authenticate_token(db, b"another pepper..", token) is None
        assert authenticate_token(db, pepper, token + "x") is None
        assert authenticate_token(db, pepper, "not-igrt") is None
        revoke_api_token(db, row.id)
        db.commit()
        assert authenticate_token(db, pepper, token) is None
    engine.dispose()


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_token_names_are_bounded(tmp_path: Path, name: str) -> None:
    settings = make_settings(tmp_path)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with make_session_factory(engine)() as db, pytest.raises(ValueError, match="name"):
        create_api_token(db, b"p" * 32, name=name, role=RoleValues.CONSOLE)
    engine.dispose()


_ANY = {"console", "therapist", "physicist", "physician"}
ROLE_MATRIX = [
    # (method, path template, roles allowed)
    ("POST", "/api/v1/patients", {"therapist", "physicist", "physician"}),
    ("GET", "/api/v1/patients", {"therapist", "physicist", "physician"}),
    (
        "POST",
        "/api/v1/patients/{patient}/sessions",
        {"console", "therapist", "physicist", "physician"},
    ),
    ("GET", "/api/v1/audit-events", {"physicist"}),
    ("GET", "/api/v1/me", _ANY),
    ("GET", "/metrics", _ANY),
]


@pytest.mark.parametrize(("method", "path", "allowed"), ROLE_MATRIX)
def test_roles(api: InProcessApi, method: str, path: str, allowed: set[str]) -> None:
    patient = api.create_patient("MRN-ROLES")
    for role in RoleValues:
        body = {"external_id": f"MRN-{role.value}"} if path.endswith("patients") else None
        if "sessions" in path:
            body = {"kind": "simulation"}
        response = api.client.request(
            method,
            path.format(patient=patient["id"]),
            json=body if method == "POST" else None,
            headers=api.headers(role),
        )
        if role.value in allowed:
            assert response.status_code in (200, 201), (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            assert response.json()["code"] == "forbidden"


def test_metrics_can_be_made_public(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app

    settings = make_settings(tmp_path, metrics_public=True)
    with TestClient(create_app(settings)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert "igrt_http_requests_total" in response.text


def test_settings_refuse_bad_values(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, max_upload_bytes=0)
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, demo_binning=3)
