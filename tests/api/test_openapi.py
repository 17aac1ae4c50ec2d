"""The OpenAPI description: stable operation ids, examples on every schema, problem bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.conftest import make_settings

EXPECTED_OPERATIONS = {
    ("get", "/healthz"): "health",
    ("get", "/readyz"): "ready",
    ("get", "/metrics"): "metrics",
    ("post", "/api/v1/patients"): "create_patient",
    ("get", "/api/v1/patients"): "list_patients",
    ("get", "/api/v1/patients/{patient_id}"): "get_patient",
    ("post", "/api/v1/patients/{patient_id}/sessions"): "create_session",
    ("get", "/api/v1/patients/{patient_id}/sessions"): "list_sessions",
    ("get", "/api/v1/sessions/{session_id}"): "get_session",
    ("post", "/api/v1/sessions/{session_id}/uploads/fluoroscopy"): "upload_fluoroscopy",
    ("get", "/api/v1/sessions/{session_id}/uploads"): "list_uploads",
    ("get", "/api/v1/uploads/{upload_id}"): "get_upload",
    ("get", "/api/v1/uploads/{upload_id}/file"): "download_upload",
    ("post", "/api/v1/sessions/{session_id}/motion-assessments"): "create_motion_assessment",
    ("get", "/api/v1/sessions/{session_id}/motion-assessments"): "list_motion_assessments",
    ("get", "/api/v1/motion-assessments/{assessment_id}"): "get_motion_assessment",
    ("post", "/api/v1/motion-assessments/{assessment_id}/reviews"): (
        "create_motion_assessment_review"
    ),
    ("get", "/api/v1/motion-assessments/{assessment_id}/reviews"): (
        "list_motion_assessment_reviews"
    ),
    ("get", "/api/v1/motion-assessments/{assessment_id}/report.pdf"): (
        "download_motion_assessment_report"
    ),
    ("post", "/api/v1/sessions/{session_id}/registrations"): "create_registration",
    ("post", "/api/v1/sessions/{session_id}/pair-registrations"): "create_pair_registration",
    ("get", "/api/v1/sessions/{session_id}/pair-registrations"): "list_pair_registrations",
    ("get", "/api/v1/pair-registrations/{pair_registration_id}"): "get_pair_registration",
    ("post", "/api/v1/dicom-quarantine/{item_id}/release"): "release_dicom_quarantine",
    ("post", "/api/v1/dicom-quarantine/{item_id}/discard"): "discard_dicom_quarantine",
    ("get", "/api/v1/reviews/{review_id}"): "get_review",
    ("get", "/api/v1/me"): "who_am_i",
    ("get", "/api/v1/audit-events"): "list_audit_events",
}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = make_settings(Path(tmp_path_factory.mktemp("openapi")))
    return dict(TestClient(create_app(settings)).get("/openapi.json").json())


def test_operation_ids_are_stable(schema: dict[str, Any]) -> None:
    found = {
        (method, path): operation["operationId"]
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    for key, operation_id in EXPECTED_OPERATIONS.items():
        assert found.get(key) == operation_id, key
    assert len(set(found.values())) == len(found)


def test_every_schema_has_examples(schema: dict[str, Any]) -> None:
    missing = []
    for name, component in schema["components"]["schemas"].items():
        if name.startswith("Body_"):  # FastAPI's multipart wrapper; its parts have examples
            continue
        has_examples = "examples" in component or "example" in component
        if not has_examples:
            missing.append(name)
    assert missing == []


def test_the_plan_request_and_the_pdf_are_documented(schema: dict[str, Any]) -> None:
    create = schema["components"]["schemas"]["RegistrationCreate"]
    assert "plan" in create["properties"]
    plan = schema["components"]["schemas"]["PlanFocusRequest"]
    assert {"rt_plan_instance_id", "rt_struct_instance_id", "roi", "roi_margin_mm", "beam"} <= set(
        plan["properties"]
    )
    report = schema["paths"]["/api/v1/motion-assessments/{assessment_id}/report.pdf"]["get"]
    assert "application/pdf" in report["responses"]["200"]["content"]
    assert {"403", "404", "409"} <= set(report["responses"])


def test_errors_are_documented_as_problems(schema: dict[str, Any]) -> None:
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, operation in operations.items():
            for status in ("401", "403", "422"):
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"]["$ref"].endswith("/Problem"), (method, path, status)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_every_route_but_health_declares_the_bearer_scheme(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["ApiToken"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if path in ("/healthz", "/readyz") or operation["operationId"] == "sign_in":
                assert "security" not in operation
            elif path == "/metrics":  # scrapers: tokens only
                assert operation["security"] == [{"ApiToken": []}], path
            elif path == "/api/v1/web-session":  # the browser's own session: cookie only
                assert operation["security"] == [{"SessionCookie": []}], path
            else:
                assert operation["security"] == [{"ApiToken": []}, {"SessionCookie": []}], path
