from fastapi.testclient import TestClient

import igrt
from api.main import create_app


def test_health_reports_ok_and_version() -> None:
    client = TestClient(create_app())
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": igrt.__version__}


def test_openapi_names_the_health_operation() -> None:
    schema = TestClient(create_app()).get("/openapi.json").json()
    assert schema["paths"]["/healthz"]["get"]["operationId"] == "health"
