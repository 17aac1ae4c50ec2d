"""Structured logs with request ids, and no patient identifiers in them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest

from api.core.logging import JsonFormatter
from tests.api.conftest import InProcessApi


def test_json_formatter_writes_one_object_with_fields() -> None:
    record = logging.LogRecord("api", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    record.fields = {"route": "/healthz", "status": 200}
    document = json.loads(JsonFormatter().format(record))
    assert document["message"] == "hello x"
    assert document["route"] == "/healthz"
    assert document["level"] == "INFO"


def test_request_ids_are_echoed_or_made(api: InProcessApi) -> None:
    given = api.client.get("/healthz", headers={"X-Request-ID": "console-42.abc"})
    assert given.headers["x-request-id"] == "console-42.abc"
    made = api.client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] != "bad id with spaces"
    assert len(made.headers["x-request-id"]) == 32


def test_no_patient_identifier_reaches_the_logs(
    api: InProcessApi, make_dicom: Callable[..., bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    patient = api.create_patient("MRN-SECRET-77")
    api.client.post(  # a conflict repeats the id in the request
        "/api/v1/patients", json={"external_id": "MRN-SECRET-77"}, headers=api.headers()
    )
    api.client.get(
        "/api/v1/patients", params={"external_id": "MRN-SECRET-77"}, headers=api.headers()
    )
    session = api.create_session(patient["id"])
    api.upload(session["id"], make_dicom("MRN-SECRET-77"))
    api.upload(session["id"], make_dicom("MRN-SECRET-77")[:1000])  # refused
    api.upload(session["id"], make_dicom("OTHER-PATIENT-9"))  # refused
    server_records = [r for r in caplog.records if not r.name.startswith("httpx")]
    assert server_records
    text = "\n".join(JsonFormatter().format(record) for record in server_records)
    assert "MRN-SECRET-77" not in text
    assert "OTHER-PATIENT-9" not in text
    assert "Test^Patient" not in text
    for token in api.tokens.values():
        assert token not in text
    requests = [r for r in server_records if r.getMessage() == "request"]
    assert all("external_id" not in json.dumps(r.fields) for r in requests)  # type: ignore[attr-defined]
