"""``igrt token create | list | revoke``."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.core.config import Settings
from api.db.engine import make_engine, make_session_factory
from api.security import authenticate_token, load_pepper
from igrt.cli.main import EXIT_BAD_INPUT, main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("IGRT_DATABASE_URL", "IGRT_TOKEN_PEPPER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IGRT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_create_prints_a_working_token_once(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "create", "--role", "therapist", "--name", "Alice"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("igrt_")
    assert "shown only now" in err
    settings = Settings(data_dir=data_dir)
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as db:
        principal = authenticate_token(db, load_pepper(settings), token)
    engine.dispose()
    assert principal is not None
    assert principal.role.value == "therapist"
    assert principal.name == "Alice"

    assert main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "therapist" in listing
    assert "Alice" in listing
    assert token not in listing

    assert main(["token", "revoke", principal.token_id]) == 0
    capsys.readouterr()
    assert main(["token", "list"]) == 0
    assert "revoked" in capsys.readouterr().out


def test_bad_role_name_or_id(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["token", "create", "--role", "nurse", "--name", "x"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert main(["token", "create", "--role", "console", "--name", " "]) == EXIT_BAD_INPUT
    assert main(["token", "revoke", "no-such-token"]) == EXIT_BAD_INPUT


def test_bad_environment_is_bad_input(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IGRT_MAX_UPLOAD_BYTES", "lots")
    assert main(["token", "list"]) == EXIT_BAD_INPUT
    assert "IGRT_MAX_UPLOAD_BYTES" in capsys.readouterr().err


def test_a_token_with_an_expiry_stops_working_then(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import timedelta

    from api.db.base import utc_now
    from api.db.models import ApiToken

    assert (
        main(["token", "create", "--role", "console", "--name", "linac", "--expires-in", "2h"]) == 0
    )
    out, err = capsys.readouterr()
    token = out.strip()
    assert "valid until" in err
    settings = Settings(data_dir=data_dir)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as db:
            principal = authenticate_token(db, load_pepper(settings), token)
            assert principal is not None
            row = db.get(ApiToken, principal.token_id)
            assert row is not None
            assert row.expires_at is not None
            assert timedelta(hours=1.9) < row.expires_at - utc_now() <= timedelta(hours=2)
            row.expires_at = utc_now() - timedelta(seconds=1)
            db.commit()
            assert authenticate_token(db, load_pepper(settings), token) is None
    finally:
        engine.dispose()
    for bad in ("0h", "-5m", "soon", "401d"):
        assert (
            main(["token", "create", "--role", "console", "--name", "x", f"--expires-in={bad}"])
            == EXIT_BAD_INPUT
        )
