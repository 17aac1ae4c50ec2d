"""Every bad input gets the right 4xx with a JSON problem body, against a real server, and
nothing already stored is lost."""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.core.config import Settings
from api.enums import RoleValues
from tests.api.conftest import MAX_UPLOAD_BYTES, PATIENT_ID, create_token
from tests.api.live_server import LiveServer, service_environment

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@dataclass
class Stack:
    """A live server with one token per role, a patient, a session and one good upload."""

    server: LiveServer
    tokens: dict[RoleValues, str]
    patient_id: str
    session_id: str
    upload_id: str
    upload_sha256: str
    data_dir: Path

    def client(self, role: RoleValues | None = RoleValues.CONSOLE) -> httpx.Client:
        return self.server.client(self.tokens[role] if role else None)

    def upload(
        self,
        content: bytes,
        *,
        content_type: str = "application/dicom",
        role: RoleValues = RoleValues.CONSOLE,
        session_id: str | None = None,
        **form: Any,
    ) -> httpx.Response:
        data = {"format": "dicom", **{k: str(v) for k, v in form.items()}}
        with self.client(role) as client:
            return client.post(
                f"/api/v1/sessions/{session_id or self.session_id}/uploads/fluoroscopy",
                files={"file": ("upload.bin", content, content_type)},
                data=data,
            )


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, make_dicom: Callable[..., bytes]
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("bad-input")
    data_dir = root / "data"
    settings = Settings(data_dir=data_dir, demo_data=False, first_run_token=False)
    tokens = {role: create_token(settings, role) for role in RoleValues}
    env = service_environment(
        data_dir,
        demo_data="false",
        first_run_token="false",
        max_upload_bytes=str(MAX_UPLOAD_BYTES),
        max_frames="50",
    )
    server = LiveServer(env, root / "server.log").start()
    try:
        with server.client(tokens[RoleValues.THERAPIST]) as client:
            patient = client.post("/api/v1/patients", json={"external_id": PATIENT_ID})
            patient_id = patient.json()["id"]
            session_id = client.post(
                f"/api/v1/patients/{patient_id}/sessions", json={"kind": "simulation"}
            ).json()["id"]
            dicom = make_dicom()
            response = client.post(
                f"/api/v1/sessions/{session_id}/uploads/fluoroscopy",
                files={"file": ("f.dcm", dicom, "application/dicom")},
                data={"format": "dicom"},
            )
            assert response.status_code == 201, response.text
        stack = Stack(
            server,
            tokens,
            patient_id,
            session_id,
            response.json()["id"],
            hashlib.sha256(dicom).hexdigest(),
            data_dir,
        )
        yield stack
        _assert_nothing_stored_was_lost(stack)
    finally:
        server.stop()


def _assert_nothing_stored_was_lost(stack: Stack) -> None:
    """Run after every test of the module on this worker: the good upload is intact."""
    with stack.client(RoleValues.PHYSICIST) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        assert client.get("/api/v1/patients").json()["count"] == 1
        uploads = client.get(f"/api/v1/sessions/{stack.session_id}/uploads").json()
        assert [u["id"] for u in uploads["data"]] == [stack.upload_id]
        file = client.get(f"/api/v1/uploads/{stack.upload_id}/file")
        assert hashlib.sha256(file.content).hexdigest() == stack.upload_sha256
        assert 'status="5' not in client.get("/metrics").text, "a request got a 5xx"
    assert list((stack.data_dir / "tmp").iterdir()) == [], "rejected uploads left staging files"
    assert PATIENT_ID not in stack.server.log(), "a patient identifier reached the logs"


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status
    assert body["code"]
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if field is not None:
        assert body["field"] == field, body
    return dict(body)


# --- files ----------------------------------------------------------------------------------


def test_truncated_dicom(stack: Stack, make_dicom: Callable[..., bytes]) -> None:
    dicom = make_dicom()
    body = assert_problem(stack.upload(dicom[: len(dicom) // 2]), 422, "file")
    assert "/tmp" not in body["detail"]
    assert "staged-" not in body["detail"]


def test_dicom_cut_inside_its_header(stack: Stack, make_dicom: Callable[..., bytes]) -> None:
    assert_problem(stack.upload(make_dicom()[:200]), 422, "file")


def test_not_a_dicom_file(stack: Stack) -> None:
    assert_problem(stack.upload(b"hello, this is not DICOM" * 10), 422, "file")


def test_empty_file(stack: Stack) -> None:
    assert_problem(stack.upload(b""), 422, "file")


def test_dicom_of_another_patient(stack: Stack, make_dicom: Callable[..., bytes]) -> None:
    body = assert_problem(stack.upload(make_dicom("SOMEONE-ELSE")), 409, "file")
    assert body["code"] == "patient_mismatch"
    # Both identities named for the person who sent it (never in the logs: see the fixture).
    assert "SOMEONE-ELSE" in body["detail"]
    assert PATIENT_ID in body["detail"]


def test_dicom_acquired_in_another_patient_position(
    stack: Stack, make_dicom: Callable[..., bytes]
) -> None:
    assert_problem(stack.upload(make_dicom(patient_position="FFS")), 422, "file")


def test_not_a_zip(stack: Stack) -> None:
    assert_problem(
        stack.upload(
            b"PK-not-really",
            content_type="application/zip",
            format="zip",
            geometry_preset="xvi",
            binning=4,
            fps=5,
        ),
        422,
        "file",
    )


def test_zip_without_frames(stack: Stack) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "no frames here")
    assert_problem(
        stack.upload(
            buffer.getvalue(),
            content_type="application/zip",
            format="zip",
            geometry_preset="xvi",
            binning=4,
            fps=5,
        ),
        422,
        "file",
    )


def test_not_a_metaimage(stack: Stack) -> None:
    assert_problem(
        stack.upload(
            b"ObjectType = Image\nNDims = banana\n",
            content_type="application/octet-stream",
            format="mha",
        ),
        422,
        "file",
    )


# --- raw shape and geometry -----------------------------------------------------------------


def raw_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "format": "raw",
        "n_frames": 10,
        "rows": 256,
        "columns": 256,
        "geometry_preset": "xvi",
        "binning": 4,
        "fps": 5,
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def upload_raw(stack: Stack, raw: bytes, **overrides: Any) -> httpx.Response:
    return stack.upload(raw, content_type="application/octet-stream", **raw_form(**overrides))


def test_raw_with_a_wrong_declared_shape(stack: Stack, raw_bytes: bytes) -> None:
    assert_problem(upload_raw(stack, raw_bytes, rows=255), 422, "file")
    assert_problem(upload_raw(stack, raw_bytes[:-2]), 422, "file")


def test_raw_without_its_shape(stack: Stack, raw_bytes: bytes) -> None:
    assert_problem(upload_raw(stack, raw_bytes, rows=None), 422, "rows")


def test_raw_with_a_non_positive_shape(stack: Stack, raw_bytes: bytes) -> None:
    assert_problem(upload_raw(stack, raw_bytes, n_frames=0), 422, "n_frames")
    assert_problem(upload_raw(stack, raw_bytes, columns="many"), 422, "columns")


def test_raw_beyond_the_frame_limit(stack: Stack) -> None:
    tiny = bytes(51 * 2 * 2 * 2)
    assert_problem(
        upload_raw(
            stack,
            tiny,
            n_frames=51,
            rows=2,
            columns=2,
            geometry_preset=None,
            sad_mm=1000,
            sdd_mm=1500,
            pixel_pitch_u_mm=1,
            pixel_pitch_v_mm=1,
        ),
        422,
        "file",
    )


def test_raw_without_geometry_or_frame_rate(stack: Stack, raw_bytes: bytes) -> None:
    assert_problem(upload_raw(stack, raw_bytes, geometry_preset=None), 422, "geometry_preset")
    assert_problem(upload_raw(stack, raw_bytes, fps=None), 422, "fps")


def test_raw_with_a_preset_of_the_wrong_binning(stack: Stack, raw_bytes: bytes) -> None:
    assert_problem(upload_raw(stack, raw_bytes, binning=2), 422, "binning")


def test_incomplete_explicit_geometry(stack: Stack, raw_bytes: bytes) -> None:
    assert_problem(upload_raw(stack, raw_bytes, geometry_preset=None, sad_mm=1000), 422, "sdd_mm")


def test_preset_and_explicit_geometry_together(stack: Stack, raw_bytes: bytes) -> None:
    assert_problem(upload_raw(stack, raw_bytes, sad_mm=1000), 422, "geometry_preset")


def test_detector_inside_the_source_axis_distance(stack: Stack, raw_bytes: bytes) -> None:
    form = {
        "geometry_preset": None,
        "sad_mm": 1500,
        "sdd_mm": 1000,
        "pixel_pitch_u_mm": 1.6,
        "pixel_pitch_v_mm": 1.6,
    }
    assert_problem(upload_raw(stack, raw_bytes, **form), 422, "sdd_mm")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "-1", "0", "abc"])
@pytest.mark.parametrize("name", ["sad_mm", "pixel_pitch_u_mm", "fps"])
def test_non_finite_or_non_positive_geometry(
    stack: Stack, raw_bytes: bytes, name: str, value: str
) -> None:
    form = {
        "geometry_preset": None,
        "sad_mm": 1000,
        "sdd_mm": 1536,
        "pixel_pitch_u_mm": 1.6,
        "pixel_pitch_v_mm": 1.6,
        name: value,
    }
    assert_problem(upload_raw(stack, raw_bytes, **form), 422, name)


@pytest.mark.parametrize("name", ["gantry_deg", "detector_offset_u_mm"])
def test_nan_angles_and_offsets(stack: Stack, raw_bytes: bytes, name: str) -> None:
    assert_problem(upload_raw(stack, raw_bytes, **{name: math.nan}), 422, name)


def test_unknown_format_and_intensity(stack: Stack, raw_bytes: bytes) -> None:
    assert_problem(upload_raw(stack, raw_bytes, format="jpeg"), 422, "format")
    assert_problem(upload_raw(stack, raw_bytes, intensity="bright"), 422, "intensity")


def test_missing_file_part(stack: Stack) -> None:
    with stack.client() as client:
        response = client.post(
            f"/api/v1/sessions/{stack.session_id}/uploads/fluoroscopy",
            data={"format": "dicom"},
            files={"other": ("x", b"x", "application/dicom")},
        )
    assert_problem(response, 422, "file")


# --- content types and sizes ----------------------------------------------------------------


def test_file_part_of_the_wrong_content_type(
    stack: Stack, make_dicom: Callable[..., bytes]
) -> None:
    assert_problem(stack.upload(make_dicom(), content_type="image/jpeg"), 415, "file")
    assert_problem(stack.upload(make_dicom(), content_type="text/plain"), 415, "file")


def test_upload_that_is_not_multipart(stack: Stack) -> None:
    with stack.client() as client:
        response = client.post(
            f"/api/v1/sessions/{stack.session_id}/uploads/fluoroscopy", json={"format": "dicom"}
        )
    assert_problem(response, 415, "content-type")


def test_json_route_given_another_content_type(stack: Stack) -> None:
    with stack.client(RoleValues.THERAPIST) as client:
        response = client.post(
            "/api/v1/patients",
            content=b"external_id=X",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert_problem(response, 415, "content-type")


def test_malformed_json(stack: Stack) -> None:
    with stack.client(RoleValues.THERAPIST) as client:
        response = client.post(
            "/api/v1/patients",
            content=b'{"external_id": ',
            headers={"content-type": "application/json"},
        )
    assert_problem(response, 422)


def test_json_that_is_not_utf8(stack: Stack) -> None:
    with stack.client(RoleValues.THERAPIST) as client:
        response = client.post(
            "/api/v1/patients",
            content=b'{"external_id": "\xff\xfe"}',
            headers={"content-type": "application/json"},
        )
    assert_problem(response, 422, "body")


def test_upload_over_the_limit_by_content_length(stack: Stack) -> None:
    body = assert_problem(stack.upload(bytes(MAX_UPLOAD_BYTES + 400_000)), 413)
    assert body["code"] == "payload_too_large"


def test_file_over_the_limit_within_the_multipart_allowance(stack: Stack) -> None:
    assert_problem(stack.upload(bytes(MAX_UPLOAD_BYTES + 1000)), 413, "file")


def test_chunked_upload_over_the_limit(stack: Stack) -> None:
    boundary = "igrtboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="format"\r\n\r\ndicom\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.dcm"\r\n'
        "Content-Type: application/dicom\r\n\r\n"
    ).encode()

    def stream() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield head
        for _ in range(MAX_UPLOAD_BYTES // 65536 + 10):
            yield bytes(65536)
        yield f"\r\n--{boundary}--\r\n".encode()

    with stack.client() as client:
        response = client.post(
            f"/api/v1/sessions/{stack.session_id}/uploads/fluoroscopy",
            content=stream(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
    assert_problem(response, 413)


# --- authentication and roles ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/patients", f"/api/v1/patients/{UNKNOWN}", "/api/v1/me", "/metrics"]
)
def test_missing_token(stack: Stack, path: str) -> None:
    with stack.client(None) as client:
        response = client.get(path)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization", ["Bearer igrt_not-a-real-token", "Bearer", "Basic dXNlcjpwYXNz", "igrt_x"]
)
def test_wrong_token(stack: Stack, authorization: str) -> None:
    with stack.client(None) as client:
        response = client.get("/api/v1/patients", headers={"Authorization": authorization})
    assert_problem(response, 401)


def test_revoked_token(stack: Stack) -> None:
    from api.db.engine import make_engine, make_session_factory
    from api.security import authenticate_token, load_pepper, revoke_api_token

    settings = Settings(data_dir=stack.data_dir)
    token = create_token(settings, RoleValues.CONSOLE, "to be revoked")
    with stack.server.client(token) as client:
        assert client.get("/api/v1/me").status_code == 200
        engine = make_engine(settings.database_url)
        with make_session_factory(engine)() as db:
            principal = authenticate_token(db, load_pepper(settings), token)
            assert principal is not None
            revoke_api_token(db, principal.token_id)
            db.commit()
        engine.dispose()
        assert_problem(client.get("/api/v1/me"), 401)


def test_upload_without_a_token(stack: Stack, make_dicom: Callable[..., bytes]) -> None:
    with stack.client(None) as client:
        response = client.post(
            f"/api/v1/sessions/{stack.session_id}/uploads/fluoroscopy",
            files={"file": ("f.dcm", make_dicom(), "application/dicom")},
            data={"format": "dicom"},
        )
    assert_problem(response, 401)


def test_console_may_not_create_patients(stack: Stack) -> None:
    with stack.client(RoleValues.CONSOLE) as client:
        response = client.post("/api/v1/patients", json={"external_id": "MRN-NEW"})
    assert_problem(response, 403)


@pytest.mark.parametrize("role", [RoleValues.CONSOLE, RoleValues.THERAPIST])
def test_only_physicists_read_the_audit_trail(stack: Stack, role: RoleValues) -> None:
    with stack.client(role) as client:
        assert_problem(client.get("/api/v1/audit-events"), 403)
    with stack.client(RoleValues.PHYSICIST) as client:
        assert client.get("/api/v1/audit-events").status_code == 200


# --- unknown ids and bodies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", f"/api/v1/patients/{UNKNOWN}", "patient_id"),
        ("GET", "/api/v1/patients/not-even-a-uuid", "patient_id"),
        ("GET", "/api/v1/patients/" + "x" * 300, "patient_id"),
        ("GET", f"/api/v1/patients/{UNKNOWN}/sessions", "patient_id"),
        ("GET", f"/api/v1/sessions/{UNKNOWN}", "session_id"),
        ("GET", f"/api/v1/sessions/{UNKNOWN}/uploads", "session_id"),
        ("GET", f"/api/v1/uploads/{UNKNOWN}", "upload_id"),
        ("GET", f"/api/v1/uploads/{UNKNOWN}/file", "upload_id"),
        ("GET", "/api/v1/no-such-thing", None),
    ],
)
def test_unknown_ids(stack: Stack, method: str, path: str, field: str | None) -> None:
    with stack.client(RoleValues.THERAPIST) as client:  # consoles may not read patients
        assert_problem(client.request(method, path), 404, field)


def test_session_for_an_unknown_patient(stack: Stack) -> None:
    with stack.client() as client:
        response = client.post(f"/api/v1/patients/{UNKNOWN}/sessions", json={"kind": "simulation"})
    assert_problem(response, 404, "patient_id")


def test_upload_to_an_unknown_session(stack: Stack, make_dicom: Callable[..., bytes]) -> None:
    assert_problem(stack.upload(make_dicom(), session_id=UNKNOWN), 404, "session_id")


def test_wrong_method(stack: Stack) -> None:
    with stack.client() as client:
        assert_problem(client.delete(f"/api/v1/uploads/{stack.upload_id}"), 405)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "fraction"}, "fraction_number"),
        ({"kind": "simulation", "fraction_number": 2}, "fraction_number"),
        ({"kind": "fraction", "fraction_number": 0}, "fraction_number"),
        ({"kind": "holiday"}, "kind"),
        ({"kind": "simulation", "patient_position": "SITTING"}, "patient_position"),
        ({"kind": "simulation", "protocol_version": "has spaces"}, "protocol_version"),
        ({"kind": "simulation", "surprise": 1}, "surprise"),
        ({}, "kind"),
    ],
)
def test_invalid_session_bodies(stack: Stack, body: dict[str, Any], field: str) -> None:
    with stack.client() as client:
        response = client.post(f"/api/v1/patients/{stack.patient_id}/sessions", json=body)
    assert_problem(response, 422, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"external_id": ""}, "external_id"),
        ({"external_id": "a b"}, "external_id"),
        ({"external_id": "x" * 65}, "external_id"),
        ({"name": "no id"}, "external_id"),
        ({"external_id": PATIENT_ID}, "external_id"),
    ],
)
def test_invalid_or_duplicate_patients(stack: Stack, body: dict[str, Any], field: str) -> None:
    with stack.client(RoleValues.THERAPIST) as client:
        response = client.post("/api/v1/patients", json=body)
    status = 409 if body.get("external_id") == PATIENT_ID else 422
    assert_problem(response, status, field)


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=100000", "offset=-1", "limit=ten", f"offset={10**27}"]
)
def test_invalid_paging(stack: Stack, query: str) -> None:
    with stack.client(RoleValues.THERAPIST) as client:  # consoles may not list patients
        assert_problem(client.get(f"/api/v1/patients?{query}"), 422)
