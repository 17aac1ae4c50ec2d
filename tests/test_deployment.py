"""``compose.yaml`` and ``deploy/nginx.conf``, checked as files (no Docker engine runs here).

What a ``docker compose config`` would not catch is checked too: every ``IGRT_*`` variable is a
setting the service reads, with a value it accepts; every ``igrt`` command exists; every
dependency waits for a health check that exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from api.core.config import Settings
from igrt.cli.main import build_parser

yaml = pytest.importorskip("yaml", reason="PyYAML (a dependency of the dev extra's dask)")

ROOT = Path(__file__).resolve().parents[1]
_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def _substituted(value: str) -> str:
    """``${VAR:-default}`` as its default, ``${VAR:?message}`` (a required secret) as a stand-in."""

    def replace(match: re.Match[str]) -> str:
        expression = match.group(0)
        if ":-" in expression:
            return expression.split(":-", 1)[1].removesuffix("}")
        return "x" * 32

    return _VARIABLE.sub(replace, value)


def test_the_services_and_their_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"api", "worker", "proxy", "postgres", "redis"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency], dependency
    assert services["api"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["api"]  # replicas are reached through the proxy only
    assert services["proxy"]["ports"] == ["127.0.0.1:8000:8000"]
    declared = set(compose["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in declared, (name, volume)
            if source.startswith("./"):
                assert (ROOT / source).is_file(), volume


def test_every_igrt_variable_is_a_setting_with_an_accepted_value(compose: dict[str, Any]) -> None:
    environment = compose["services"]["api"]["environment"]
    fields = set(Settings.model_fields)
    values = {}
    for key, value in environment.items():
        assert key.startswith("IGRT_"), key
        name = key.removeprefix("IGRT_").lower()
        assert name in fields, f"{key} is not a setting of api/core/config.py"
        values[name] = _substituted(str(value))
    settings = Settings(**values)
    assert settings.database_url.startswith("postgresql://")
    assert "@postgres:5432/" in settings.database_url
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.demo_data is False
    assert settings.first_run_token is False
    assert settings.registration_in_process is False  # the worker service runs the jobs
    assert compose["services"]["worker"]["environment"] == environment
    assert compose["services"]["worker"]["volumes"] == compose["services"]["api"]["volumes"]


def test_every_igrt_command_exists(compose: dict[str, Any]) -> None:
    """No placeholder service: a worker appears only once ``igrt worker`` does."""
    parser = build_parser()
    for name, service in compose["services"].items():
        command = service.get("command")
        if command and command[0] == "igrt":
            with pytest.raises(SystemExit) as shown:
                parser.parse_args([*command[1:], "--help"])
            assert shown.value.code == 0, (name, command)


def test_the_proxy_balances_the_api_replicas_with_websockets() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "set $api http://api:8000;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    # The monitor compares Origin with Host: the Host must keep its port.
    assert "proxy_set_header Host $http_host;" in conf
    assert "listen 8000;" in conf
