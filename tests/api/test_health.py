from pathlib import Path

from fastapi.testclient import TestClient

import igrt
from api.main import create_app
from tests.api.conftest import InProcessApi, make_settings


def test_health_reports_ok_and_version(tmp_path: Path) -> None:
    client = TestClient(create_app(make_settings(tmp_path)))  # no start-up needed
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": igrt.__version__}


def test_openapi_names_the_health_operation(tmp_path: Path) -> None:
    schema = TestClient(create_app(make_settings(tmp_path))).get("/openapi.json").json()
    assert schema["paths"]["/healthz"]["get"]["operationId"] == "health"


def test_ready_when_migrated_and_writable(api: InProcessApi) -> None:
    response = api.client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert {check["name"]: check["ok"] for check in body["checks"]} == {
        "database": True,
        "data_dir": True,
    }


def test_not_ready_when_the_data_dir_is_not_writable(api: InProcessApi) -> None:
    temp_dir = api.settings.temp_dir
    temp_dir.rmdir()
    temp_dir.write_bytes(b"")  # a file where the staging folder should be (fails even as root)
    try:
        response = api.client.get("/readyz")
    finally:
        temp_dir.unlink()
        temp_dir.mkdir()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert {check["name"]: check["ok"] for check in body["checks"]}["data_dir"] is False


def test_not_ready_without_a_database(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite:////nonexistent-dir/igrt.sqlite3")
    client = TestClient(create_app(settings))  # start-up would fail; readiness must not 500
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"][0]["ok"] is False


def test_health_and_readiness_need_no_token_but_everything_else_does(api: InProcessApi) -> None:
    schema = api.client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path in ("/healthz", "/readyz"):
                assert "security" not in operation, path
                continue
            if (method, path) == ("post", "/api/v1/web-session"):
                # Signing in is what needs no session; a wrong token is refused there.
                bad = api.client.post(path, json={"token": "igrt_not-a-token"})
                assert bad.status_code == 401, bad.text
                continue
            response = api.client.request(method.upper(), path.replace("{", "").replace("}", ""))
            assert response.status_code == 401, (method, path, response.status_code)
