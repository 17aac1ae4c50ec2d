"""Property-based fuzz of every operation of the OpenAPI schema with schemathesis.

Every operation of ``/openapi.json`` (the WebSockets are not in it) is called in-process with a
bounded number of generated requests, schema-valid and schema-invalid, once per role's token.
Half of the path ids (and the assessment body's ``upload_id``) are real: a patient, a fraction
session with a fluoroscopy upload, its motion assessment, a planning CT and CBCT, a completed
registration, a review and an HTTP stream, so the requests reach past the 404s. Each response
must not be a server error and must conform to the schema: documented status code, content
type, headers and body. Deterministic (derandomised Hypothesis, no example database).

:mod:`tests.api.test_fuzz` fuzzes the JSON and form inputs with hand-written strategies; this
module takes its strategies from the schema, so a new route is fuzzed as soon as it exists.
Needs schemathesis 4.32 or later 4.x (the ``dev`` extra); skipped with the reason otherwise.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.enums import RoleValues
from api.http_streams import HttpStreamRegistry
from api.main import create_app
from tests.api.conftest import Volumes, bearer, create_token, make_settings

schemathesis = pytest.importorskip(
    "schemathesis",
    minversion="4.32",
    reason="schemathesis is not installed (pip install 'schemathesis>=4.32,<5', the dev extra)",
)

# Past the skip: schemathesis is there.
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.python import asgi  # noqa: E402

EXAMPLES_PER_ROLE = 12
"""Generated requests per operation and role (about 40 operations, 3 roles)."""

ROLES = (RoleValues.CONSOLE, RoleValues.THERAPIST, RoleValues.PHYSICIST)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=EXAMPLES_PER_ROLE,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
# Registrations are not created with real ids: each would run a registration (seconds of CPU).
BODY_IDS = ("upload_id",)
REGISTRATION_TIMEOUT_S = 60.0


def _operation_ids() -> list[str]:
    """The operations of the schema, read at collection from an application never started."""
    with tempfile.TemporaryDirectory() as folder:
        spec = create_app(make_settings(Path(folder) / "never-created")).openapi()
    return [
        operation["operationId"]
        for path_item in spec["paths"].values()
        for operation in path_item.values()
        if isinstance(operation, dict) and "operationId" in operation
    ]


@dataclass
class Stack:
    """The started application, its schema, a client, one token per role and real ids."""

    schema: Any
    client: Any
    tokens: dict[RoleValues, str]
    ids: dict[str, str] = field(default_factory=dict)

    def post(self, url: str, role: RoleValues = RoleValues.THERAPIST, **kwargs: Any) -> Any:
        response = self.client.post(url, headers=bearer(self.tokens[role]), **kwargs)
        assert response.status_code in (201, 202), response.text
        return response.json()


def _prepare(stack: Stack, dicom: bytes, volumes: Volumes) -> None:
    patient = stack.post("/api/v1/patients", json={"external_id": "MRN-TEST-0001"})
    session = stack.post(
        f"/api/v1/patients/{patient['id']}/sessions",
        json={"kind": "fraction", "fraction_number": 1, "patient_position": "HFS"},
    )
    sessions = f"/api/v1/sessions/{session['id']}"
    upload = stack.post(
        f"{sessions}/uploads/fluoroscopy",
        RoleValues.CONSOLE,
        files={"file": ("fluoro.dcm", dicom, "application/dicom")},
        data={"format": "dicom"},
    )
    assessment = stack.post(f"{sessions}/motion-assessments", json={"upload_id": upload["id"]})
    volume_ids = {}
    for kind, content in (("planning_ct", volumes.planning_mha), ("cbct", volumes.cbct_mha)):
        volume = stack.post(
            f"{sessions}/uploads/volume",
            RoleValues.THERAPIST if kind == "planning_ct" else RoleValues.CONSOLE,
            files={"file": (f"{kind}.mha", content, "application/octet-stream")},
            data={"kind": kind, "format": "mha"},
        )
        volume_ids[kind] = volume["id"]
    job = stack.post(
        f"{sessions}/registrations",
        json={
            "planning_ct_upload_id": volume_ids["planning_ct"],
            "cbct_upload_id": volume_ids["cbct"],
            "isocentre_lps_mm": list(volumes.isocentre_lps_mm),
        },
    )
    headers = bearer(stack.tokens[RoleValues.THERAPIST])
    deadline = time.monotonic() + REGISTRATION_TIMEOUT_S
    while job["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = stack.client.get(f"/api/v1/registrations/{job['id']}", headers=headers).json()
    assert job["status"] == "completed", job
    review = stack.post(f"/api/v1/registrations/{job['id']}/reviews", json={"outcome": "approved"})
    stack.ids.update(
        patient_id=patient["id"],
        session_id=session["id"],
        upload_id=upload["id"],
        assessment_id=assessment["id"],
        volume_id=volume_ids["cbct"],
        registration_id=job["id"],
        review_id=review["id"],
    )


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    make_dicom: Callable[..., bytes],
    volumes: Volumes,
) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("openapi-fuzz") / "data"
    app_settings = make_settings(data_dir, log_level="WARNING")
    tokens = {role: create_token(app_settings, role) for role in RoleValues}
    app = create_app(app_settings)
    # Streams opened by the fuzz must not crowd out the ones the stream routes are fuzzed with.
    app.state.http_streams = HttpStreamRegistry(max_streams=1000, idle_timeout_s=3600.0)
    # The tokens are sent by the test; the schema's own security parameters are not generated.
    config = SchemathesisConfig.from_dict({"generation": {"with-security-parameters": False}})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    client = asgi.get_client(app)
    client.__enter__()  # starts the application's lifespan (migrations, worker)
    try:
        stack = Stack(schema=schema, client=client, tokens=tokens)
        _prepare(stack, make_dicom(), volumes)
        yield stack
    finally:
        client.__exit__(None, None, None)
        asgi.shutdown_lifespans()  # the registration worker stops with the application


def _stream_id(stack: Stack, role: RoleValues) -> str:
    """A stream of ``role``'s token (streams are per token); a new one each time."""
    opened = stack.post(
        f"/api/v1/sessions/{stack.ids['session_id']}/streams",
        role,
        json={"geometry": {"preset": "xvi", "binning": 4}},
    )
    return str(opened["stream_id"])


@pytest.mark.parametrize("role", ROLES, ids=[role.value for role in ROLES])
@pytest.mark.parametrize("operation_id", _operation_ids())
def test_operation(stack: Stack, operation_id: str, role: RoleValues) -> None:
    operation = stack.schema.find_operation_by_id(operation_id)
    ids = dict(stack.ids)
    if "{stream_id}" in operation.path:
        ids["stream_id"] = _stream_id(stack, role)
    known = {name: ids[name] for name in ids if f"{{{name}}}" in operation.path}
    strategies = [*operation.get_strategies_from_examples()]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        if known:
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=known))
    headers = bearer(stack.tokens[role])

    @FUZZ
    @given(case=st.one_of(strategies), data=st.data())
    def call(case: Any, data: st.DataObject) -> None:
        if isinstance(case.body, dict):
            for name in BODY_IDS:
                if name in case.body and data.draw(st.booleans(), label=f"real {name}"):
                    case.body[name] = ids[name]
        response = case.call(session=stack.client, headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    call()
