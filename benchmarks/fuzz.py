"""Schema-driven fuzz of the whole HTTP API with every caller: 5xx and schema violations.

Issue 12's target: schemathesis against the service with every role, >= 5,000 generated
requests, 0 responses 5xx and 0 schema violations. The application runs in this process (ASGI,
its lifespan started: migrations, registration worker) on a temporary SQLite data directory
with real records (a patient, a fraction with a fluoroscopy upload, its assessment, a planning
CT and a CBCT, a completed registration and its review, an HTTP stream per caller), so that
half of the path ids are real and requests get past the 404s. Every operation of
``/openapi.json`` is called by every caller: a console, a therapist, a physicist and a
physician token, no credential, and a revoked token, with schema-valid and schema-invalid
requests (schemathesis 4 positive and negative generation, plus the schema's examples).

Each response is checked with schemathesis's ``not_a_server_error``, status code, content type,
headers and response schema conformance. A check that fails is counted (and its first few
listed), never stops the run. When schemathesis refuses a valid OpenAPI 3.1 response schema
itself (``InvalidSchema``: its converter turns a ``prefixItems`` tuple such as
``StreamOpened.detector_shape`` into a Draft 4 ``items`` list, then validates it as Draft
2020-12; schemathesis issues 3842 and 4099), the other checks are run again and the body is
validated here against the documented schema with a Draft 2020-12 validator; such responses
are counted apart (``validated_here``), and a body that fails is a schema violation.
Seeded (``--seed``): the same seed generates the same requests.
``tests/api/test_openapi_fuzz.py`` runs a short slice of the same in CI.

Prints a table (per caller: requests, 5xx, schema violations, seconds) and a final JSON line.
Exit code 0 when there were at least ``--target-requests`` requests and no failure, 1 otherwise.

    .venv/bin/python benchmarks/fuzz.py --seed 12 --target-requests 5000
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

# The project first: run as a script, benchmarks/ would shadow the `registration` package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REGISTRATION_TIMEOUT_S = 120.0
BODY_IDS = ("upload_id",)
"""Body fields sometimes given a real id (registrations are not: each would run seconds)."""


@dataclass
class CallerTally:
    """What one caller's requests gave."""

    requests: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    validated_here: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)


@dataclass
class Run:
    """The started application, its schema and client, the callers and the real ids."""

    schema: Any
    client: Any
    headers: dict[str, dict[str, str]]
    spec: dict[str, Any] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    tallies: dict[str, CallerTally] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _tokens(app_settings: Any) -> dict[str, dict[str, str]]:
    """A header set per caller: every role, no credential, and a revoked therapist token."""
    from api.db.engine import make_engine, make_session_factory
    from api.db.migrate import upgrade
    from api.enums import RoleValues
    from api.security import create_api_token, load_pepper, revoke_api_token

    app_settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(app_settings.database_url)
    headers: dict[str, dict[str, str]] = {}
    try:
        upgrade(engine)
        pepper = load_pepper(app_settings)
        with make_session_factory(engine)() as db:
            for role in RoleValues:
                _, token = create_api_token(db, pepper, name=f"fuzz {role.value}", role=role)
                headers[role.value] = _bearer(token)
            row, token = create_api_token(
                db, pepper, name="fuzz revoked", role=RoleValues.THERAPIST
            )
            db.flush()
            revoke_api_token(db, row.id)
            db.commit()
    finally:
        engine.dispose()
    headers["none"] = {}
    headers["revoked"] = _bearer(token)
    return headers


def _inputs(folder: Path) -> tuple[bytes, dict[str, bytes], tuple[float, float, float]]:
    """A fluoroscopy DICOM, a planning CT and CBCT (MHA) of the phantom, and the isocentre."""
    from fixtures import breathing
    from fixtures.fluoro import simulate_fluoro
    from fixtures.fraction import simulate_phantom_fraction
    from fixtures.phantom import make_phantom
    from igrt.geometry import xvi_geometry
    from igrt.imageio import write_fluoro_dicom, write_volume_mha

    fluoro = simulate_fluoro(
        make_phantom(),
        breathing.regular(12.0, 4.0, 2.0, 50.0),
        duration_s=2.0,
        fps=5.0,
        geometry=xvi_geometry(binning=4),
        grid_spacing_mm=(2.5, 2.0),
        seed=1,
    )
    write_fluoro_dicom(
        fluoro.sequence,
        folder / "fluoro.dcm",
        patient_id="MRN-FUZZ-0001",
        patient_name="Fuzz^Patient",
        patient_position="HFS",
        uid_seed="igrt-fuzz",
    )
    fraction = simulate_phantom_fraction((3.0, -2.0, 4.0))
    write_volume_mha(fraction.planning_ct, folder / "ct.mha", patient_position="HFS")
    write_volume_mha(fraction.cbct, folder / "cbct.mha", patient_position="HFS")
    iso = fraction.isocentre_lps_mm
    volumes = {
        "planning_ct": (folder / "ct.mha").read_bytes(),
        "cbct": (folder / "cbct.mha").read_bytes(),
    }
    return (
        (folder / "fluoro.dcm").read_bytes(),
        volumes,
        (float(iso[0]), float(iso[1]), float(iso[2])),
    )


def _post(run: Run, url: str, caller: str = "therapist", **kwargs: Any) -> dict[str, Any]:
    response = run.client.post(url, headers=run.headers[caller], **kwargs)
    if response.status_code not in (201, 202):
        raise RuntimeError(f"preparing the records: {url} answered {response.status_code}")
    return dict(response.json())


def _prepare(run: Run, folder: Path) -> None:
    dicom, volumes, isocentre = _inputs(folder)
    patient = _post(run, "/api/v1/patients", json={"external_id": "MRN-FUZZ-0001"})
    session = _post(
        run,
        f"/api/v1/patients/{patient['id']}/sessions",
        json={"kind": "fraction", "fraction_number": 1, "patient_position": "HFS"},
    )
    base = f"/api/v1/sessions/{session['id']}"
    upload = _post(
        run,
        f"{base}/uploads/fluoroscopy",
        "console",
        files={"file": ("fluoro.dcm", dicom, "application/dicom")},
        data={"format": "dicom"},
    )
    assessment = _post(run, f"{base}/motion-assessments", json={"upload_id": upload["id"]})
    volume_ids = {}
    for kind, content in volumes.items():
        volume = _post(
            run,
            f"{base}/uploads/volume",
            files={"file": (f"{kind}.mha", content, "application/octet-stream")},
            data={"kind": kind, "format": "mha"},
        )
        volume_ids[kind] = volume["id"]
    job = _post(
        run,
        f"{base}/registrations",
        json={
            "planning_ct_upload_id": volume_ids["planning_ct"],
            "cbct_upload_id": volume_ids["cbct"],
            "isocentre_lps_mm": list(isocentre),
        },
    )
    deadline = time.monotonic() + REGISTRATION_TIMEOUT_S
    while job["status"] not in ("completed", "failed"):
        if time.monotonic() > deadline:
            raise RuntimeError("the registration did not finish")
        time.sleep(0.1)
        job = run.client.get(
            f"/api/v1/registrations/{job['id']}", headers=run.headers["therapist"]
        ).json()
    if job["status"] != "completed":
        raise RuntimeError(f"the registration failed: {job.get('reason')}")
    review = _post(run, f"/api/v1/registrations/{job['id']}/reviews", json={"outcome": "approved"})
    run.ids.update(
        patient_id=patient["id"],
        session_id=session["id"],
        upload_id=upload["id"],
        assessment_id=assessment["id"],
        volume_id=volume_ids["cbct"],
        registration_id=job["id"],
        review_id=review["id"],
    )


def _is_schema_refused(exc: BaseException) -> bool:
    """Whether schemathesis refused the documented schema itself (not the response)."""
    from schemathesis.core.errors import InvalidSchema

    if isinstance(exc, InvalidSchema):
        return True
    inner = getattr(exc, "exceptions", ())
    return bool(inner) and all(_is_schema_refused(sub) for sub in inner)


def _body_problems(run: Run, operation: Any, response: Any) -> list[str]:
    """The response body checked against its documented schema (Draft 2020-12), here."""
    import jsonschema_rs

    responses = run.spec["paths"][operation.path][operation.method.lower()]["responses"]
    documented = responses.get(str(response.status_code)) or responses.get("default") or {}
    value = response.headers.get("content-type", "")
    if isinstance(value, list):  # schemathesis's response: every header as a list
        value = value[0] if value else ""
    content_type = str(value).split(";", 1)[0].strip()
    schema = documented.get("content", {}).get(content_type, {}).get("schema")
    if schema is None:
        return []  # nothing documented to validate (the other checks judged the rest)
    root = {**schema, "components": run.spec.get("components", {})}
    validator = jsonschema_rs.Draft202012Validator(root)
    return [error.message for error in validator.iter_errors(response.json())]


def _stream_id(run: Run, caller: str) -> str:
    """A fresh HTTP stream of the caller's token (a therapist's for callers without one)."""
    owner = caller if caller not in ("none", "revoked") else "therapist"
    opened = _post(
        run,
        f"/api/v1/sessions/{run.ids['session_id']}/streams",
        owner,
        json={"geometry": {"preset": "xvi", "binning": 4}},
    )
    return str(opened["stream_id"])


def _check(
    run: Run,
    operation: Any,
    case: Any,
    response: Any,
    checks: list[Any],
    headers: dict[str, str],
    tally: CallerTally,
) -> str | None:
    """None when the response passes every check, else what failed."""
    from schemathesis.checks import response_schema_conformance

    try:
        case.validate_response(response, checks=checks, headers=headers)
    except Exception as exc:
        if not _is_schema_refused(exc):
            return str(exc) or type(exc).__name__
    else:
        return None
    others = [check for check in checks if check is not response_schema_conformance]
    try:
        case.validate_response(response, checks=others, headers=headers)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    problems = _body_problems(run, operation, response)
    if problems:
        return "response body does not match its schema: " + "; ".join(problems[:3])
    tally.validated_here += 1
    return None


def _fuzz_operation(
    run: Run, operation: Any, caller: str, examples: int, run_seed: int, checks: list[Any]
) -> None:
    from schemathesis.generation import GenerationMode

    ids = dict(run.ids)
    if "{stream_id}" in operation.path:
        ids["stream_id"] = _stream_id(run, caller)
    known = {name: ids[name] for name in ids if f"{{{name}}}" in operation.path}
    strategies = [*operation.get_strategies_from_examples()]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        if known:
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=known))
    headers = run.headers[caller]
    tally = run.tallies.setdefault(caller, CallerTally())
    label = f"{operation.method.upper()} {operation.path}"

    @seed(run_seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(case=st.one_of(strategies), data=st.data())
    def call(case: Any, data: st.DataObject) -> None:
        if isinstance(case.body, dict):
            for name in BODY_IDS:
                if name in case.body and data.draw(st.booleans(), label=f"real {name}"):
                    case.body[name] = ids[name]
        response = case.call(session=run.client, headers=headers)
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        if response.status_code >= 500:
            tally.server_errors += 1
        failure = _check(run, operation, case, response, checks, headers, tally)
        if failure is None:
            return
        if response.status_code < 500:
            tally.schema_violations += 1
        if len(run.failures) < 20:
            run.failures.append(
                {
                    "caller": caller,
                    "operation": label,
                    "status": response.status_code,
                    "failure": failure.strip().splitlines()[0][:300] if failure.strip() else "",
                }
            )

    start = time.perf_counter()
    call()
    tally.seconds += time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--target-requests", type=int, default=5000)
    parser.add_argument(
        "--time-budget-s",
        type=float,
        default=540.0,
        help="stop starting new operations after this long (the run is then reported short)",
    )
    arguments = parser.parse_args(argv)

    import schemathesis
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.config import SchemathesisConfig
    from schemathesis.python import asgi

    from api.core.config import Settings
    from api.http_streams import HttpStreamRegistry
    from api.main import create_app

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="igrt-fuzz-") as scratch:
        folder = Path(scratch)
        app_settings = Settings(
            data_dir=folder / "data",
            demo_data=False,
            first_run_token=False,
            max_upload_bytes=3_000_000,
            log_level="ERROR",
        )
        headers = _tokens(app_settings)
        app = create_app(app_settings)
        # Streams opened by the fuzz must not crowd out the ones stream routes are fuzzed with.
        app.state.http_streams = HttpStreamRegistry(max_streams=100_000, idle_timeout_s=3600.0)
        config = SchemathesisConfig.from_dict({"generation": {"with-security-parameters": False}})
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        client = asgi.get_client(app)
        client.__enter__()
        try:
            spec = app.openapi()
            run = Run(schema=schema, client=client, headers=headers, spec=spec)
            _prepare(run, folder)
            operation_ids = [
                operation["operationId"]
                for path_item in spec["paths"].values()
                for operation in path_item.values()
                if isinstance(operation, dict) and "operationId" in operation
            ]
            callers = list(headers)
            # Hypothesis stops early when an operation's inputs are few: aim 30 % over.
            examples = math.ceil(
                1.3 * arguments.target_requests / (len(operation_ids) * len(callers))
            )
            prepared_s = time.perf_counter() - started
            short = False
            for index, operation_id in enumerate(operation_ids):
                if time.perf_counter() - started > arguments.time_budget_s:
                    short = True
                    break
                operation = schema.find_operation_by_id(operation_id)
                for number, caller in enumerate(callers):
                    run_seed = arguments.seed * 100_003 + index * 101 + number
                    _fuzz_operation(run, operation, caller, examples, run_seed, checks)
        finally:
            client.__exit__(None, None, None)
            asgi.shutdown_lifespans()
    total_s = time.perf_counter() - started
    return _report(run, arguments, operation_ids, examples, prepared_s, total_s, short)


def _report(
    run: Run,
    arguments: argparse.Namespace,
    operation_ids: list[str],
    examples: int,
    prepared_s: float,
    total_s: float,
    short: bool,
) -> int:
    print(
        f"schemathesis fuzz: {len(operation_ids)} operations x {len(run.tallies)} callers, "
        f"up to {examples} generated requests each, seed {arguments.seed}"
    )
    print(
        f"{'caller':<10} {'requests':>9} {'5xx':>5} {'schema violations':>18} "
        f"{'validated here':>15} {'s':>7}"
    )
    for caller, tally in run.tallies.items():
        print(
            f"{caller:<10} {tally.requests:>9} {tally.server_errors:>5} "
            f"{tally.schema_violations:>18} {tally.validated_here:>15} {tally.seconds:>7.1f}"
        )
    requests = sum(t.requests for t in run.tallies.values())
    server_errors = sum(t.server_errors for t in run.tallies.values())
    violations = sum(t.schema_violations for t in run.tallies.values())
    here = sum(t.validated_here for t in run.tallies.values())
    print(
        f"{'total':<10} {requests:>9} {server_errors:>5} {violations:>18} {here:>15} "
        f"{total_s:>7.1f}"
    )
    for failure in run.failures:
        print(f"  failure: {failure}")
    statuses: Counter[int] = Counter()
    for tally in run.tallies.values():
        statuses.update(tally.statuses)
    passed = requests >= arguments.target_requests and server_errors == 0 and violations == 0
    summary = {
        "benchmark": "fuzz",
        "seed": arguments.seed,
        "operations": len(operation_ids),
        "callers": list(run.tallies),
        "requests": requests,
        "target_requests": arguments.target_requests,
        "server_errors": server_errors,
        "schema_violations": violations,
        "validated_here": here,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "per_caller": {
            caller: {
                "requests": t.requests,
                "server_errors": t.server_errors,
                "schema_violations": t.schema_violations,
                "validated_here": t.validated_here,
            }
            for caller, t in run.tallies.items()
        },
        "stopped_at_time_budget": short,
        "prepare_s": round(prepared_s, 1),
        "total_s": round(total_s, 1),
        "python": platform.python_version(),
        "passed": passed,
    }
    print(json.dumps(summary, sort_keys=True))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
