"""Volume uploads and registration jobs: in-process on SQLite and PostgreSQL.

The planning CT is the parametric phantom on a 3 mm grid written as a zipped DICOM series; the
CBCT is simulated from it with a known anatomy displacement (fast path) and written as MHA.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.enums import RegistrationStatusValues, RoleValues
from tests.api.conftest import (
    DISPLACEMENT_LPS_MM,
    InProcessApi,
    Volumes,
    make_settings,
    start_in_process,
)
from tests.dicom_validation import DicomValidator

POLL_TIMEOUT_S = 60.0


@pytest.fixture
def any_db_api(tmp_path: Path, database_url: str) -> Iterator[InProcessApi]:
    """The app on SQLite or PostgreSQL."""
    yield from start_in_process(make_settings(tmp_path / "data", database_url))


def upload_volume(
    api: InProcessApi,
    session_id: str,
    content: bytes,
    *,
    kind: str,
    fmt: str,
    filename: str = "volume.bin",
    content_type: str = "application/octet-stream",
    role: RoleValues | None = None,
) -> Any:
    """Upload a volume: a planning CT as a therapist, a CBCT as the console (by default)."""
    if role is None:
        role = RoleValues.THERAPIST if kind == "planning_ct" else RoleValues.CONSOLE
    return api.client.post(
        f"/api/v1/sessions/{session_id}/uploads/volume",
        files={"file": (filename, content, content_type)},
        data={"kind": kind, "format": fmt},
        headers=api.headers(role),
    )


def wait_for(get: Any, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """Poll a job until it finishes (bounded)."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        response = get(url, headers=headers)
        assert response.status_code == 200, response.text
        job = dict(response.json())
        if job["status"] in ("completed", "failed"):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}"
        time.sleep(0.1)


def check_result(result: dict[str, Any]) -> None:
    assert result["quality"] in ("good", "questionable")
    correction = np.array(result["couch_correction_lps_mm"])
    np.testing.assert_allclose(correction, -np.array(DISPLACEMENT_LPS_MM), atol=0.5)
    np.testing.assert_allclose(result["anatomy_displacement_lps_mm"], DISPLACEMENT_LPS_MM, atol=0.5)
    assert len(result["couch_correction_iec_support_mm"]) == 3
    assert result["repositioning"]["required"] is True
    assert result["dome_check"]
    assert result["document"]["couch_correction_lps_mm"] == result["couch_correction_lps_mm"]


def _session(api: InProcessApi, **body: Any) -> str:
    patient = api.create_patient()
    return str(api.create_session(patient["id"], kind="fraction", fraction_number=1, **body)["id"])


def test_upload_both_volumes_run_a_job_and_read_everything(
    any_db_api: InProcessApi, volumes: Volumes, dciodvfy: DicomValidator
) -> None:
    api = any_db_api
    session_id = _session(api)
    ct = upload_volume(
        api,
        session_id,
        volumes.planning_zip,
        kind="planning_ct",
        fmt="dicom_zip",
        filename="ct.zip",
        content_type="application/zip",
    )
    assert ct.status_code == 201, ct.text
    assert ct.headers["location"] == f"/api/v1/volumes/{ct.json()['id']}"
    geometry = ct.json()["geometry"]
    assert geometry["spacing_mm"] == pytest.approx([3.0, 3.0, 3.0])
    assert geometry["patient_position"] == "HFS"
    assert geometry["patient_position_source"] == "file"
    assert geometry["modality"] == "CT"
    assert geometry["frame_of_reference_uid"]
    assert geometry["size_ijk"][2] >= 2
    cbct = upload_volume(api, session_id, volumes.cbct_mha, kind="cbct", fmt="mha")
    assert cbct.status_code == 201, cbct.text
    assert cbct.json()["kind"] == "cbct"
    listed = api.client.get(f"/api/v1/sessions/{session_id}/volumes", headers=api.headers())
    assert listed.json()["count"] == 2
    original = api.client.get(f"/api/v1/volumes/{cbct.json()['id']}/file", headers=api.headers())
    assert original.content == volumes.cbct_mha

    created = api.client.post(
        f"/api/v1/sessions/{session_id}/registrations",
        json={
            "planning_ct_upload_id": ct.json()["id"],
            "cbct_upload_id": cbct.json()["id"],
            "degrees_of_freedom": 3,
            "isocentre_lps_mm": list(volumes.isocentre_lps_mm),
        },
        headers=api.headers(RoleValues.CONSOLE),
    )
    assert created.status_code == 202, created.text
    assert created.json()["status"] in ("queued", "running", "completed")
    location = created.headers["location"]
    assert location == f"/api/v1/registrations/{created.json()['id']}"
    job = wait_for(api.client.get, location, api.headers(RoleValues.PHYSICIST))
    assert job["status"] == "completed", job
    assert job["repositioning_required"] is True
    assert job["started_at"]
    assert job["finished_at"]
    assert {"result", "overlays", "dicom_reg"} <= set(job["links"])

    result = api.client.get(f"{location}/result", headers=api.headers(RoleValues.THERAPIST))
    assert result.status_code == 200, result.text
    check_result(result.json())

    for plane in ("axial", "coronal", "sagittal"):
        png = api.client.get(f"{location}/overlays/{plane}", headers=api.headers())
        assert png.status_code == 200, png.text
        assert png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    blend = api.client.get(
        f"{location}/overlays/axial",
        params={"kind": "blend", "stage": "before"},
        headers=api.headers(),
    )
    assert blend.status_code == 200
    assert blend.content.startswith(b"\x89PNG")
    bad_plane = api.client.get(f"{location}/overlays/oblique", headers=api.headers())
    assert bad_plane.status_code == 422
    assert bad_plane.json()["field"] == "plane"

    reg = api.client.get(f"{location}/dicom-reg", headers=api.headers())
    assert reg.status_code == 200, reg.text
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(reg.content))
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.1"
    dciodvfy(reg.content)

    jobs = api.client.get(f"/api/v1/sessions/{session_id}/registrations", headers=api.headers())
    assert jobs.json()["count"] == 1
    audit = api.client.get(
        "/api/v1/audit-events",
        params={"resource_id": job["id"]},
        headers=api.headers(RoleValues.PHYSICIST),
    )
    assert audit.status_code == 200, audit.text
    actions = [event["action"] for event in audit.json()["data"]]
    changes = [action for action in actions if not action.endswith(".read")]
    assert changes == ["registration.create", "registration.complete"]
    assert "registration_result.read" in actions  # reads of results are audited too


@pytest.fixture
def prepared(api: InProcessApi, volumes: Volumes) -> tuple[InProcessApi, str, str, str]:
    """A session with a planning CT (MHA) and a CBCT: (api, session, ct id, cbct id)."""
    session_id = _session(api)
    ct = upload_volume(api, session_id, volumes.planning_mha, kind="planning_ct", fmt="mha")
    assert ct.status_code == 201, ct.text
    assert ct.json()["geometry"]["modality"] is None
    cbct = upload_volume(api, session_id, volumes.cbct_mha, kind="cbct", fmt="mha")
    assert cbct.status_code == 201, cbct.text
    return api, session_id, ct.json()["id"], cbct.json()["id"]


def test_job_requests_are_validated(
    prepared: tuple[InProcessApi, str, str, str], make_dicom: Any
) -> None:
    api, session_id, ct_id, cbct_id = prepared
    url = f"/api/v1/sessions/{session_id}/registrations"
    fluoro = api.upload(session_id, make_dicom())
    assert fluoro.status_code == 201, fluoro.text

    def post(body: dict[str, Any], **kwargs: Any) -> Any:
        return api.client.post(url, json=body, headers=api.headers(), **kwargs)

    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            {"planning_ct_upload_id": ct_id, "cbct_upload_id": fluoro.json()["id"]},
            422,
            "cbct_upload_id",
        ),
        (
            {"planning_ct_upload_id": cbct_id, "cbct_upload_id": cbct_id},
            422,
            "planning_ct_upload_id",
        ),
        ({"planning_ct_upload_id": ct_id, "cbct_upload_id": ct_id}, 422, "cbct_upload_id"),
        (
            {"planning_ct_upload_id": "nope", "cbct_upload_id": cbct_id},
            404,
            "planning_ct_upload_id",
        ),
        ({"planning_ct_upload_id": ct_id, "cbct_upload_id": "x" * 100}, 422, "cbct_upload_id"),
        (
            {"planning_ct_upload_id": ct_id, "cbct_upload_id": cbct_id, "degrees_of_freedom": 4},
            422,
            "degrees_of_freedom",
        ),
        (
            {
                "planning_ct_upload_id": ct_id,
                "cbct_upload_id": cbct_id,
                "clip_box_lps_mm": {"lower_lps_mm": [0, 0, 0], "upper_lps_mm": [10, -5, 10]},
            },
            422,
            "clip_box_lps_mm",
        ),
        (
            {"planning_ct_upload_id": ct_id, "cbct_upload_id": cbct_id, "isocentre_lps_mm": [1, 2]},
            422,
            "isocentre_lps_mm",
        ),
        ({"planning_ct_upload_id": ct_id, "cbct_upload_id": cbct_id, "extra": 1}, 422, "extra"),
    ]
    for body, status, field in cases:
        response = post(body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["field"].startswith(field), (body, response.json())

    unknown_session = api.client.post(
        "/api/v1/sessions/nope/registrations",
        json={"planning_ct_upload_id": ct_id, "cbct_upload_id": cbct_id},
        headers=api.headers(),
    )
    assert unknown_session.status_code == 404
    assert unknown_session.json()["field"] == "session_id"
    no_token = api.client.post(
        url, json={"planning_ct_upload_id": ct_id, "cbct_upload_id": cbct_id}
    )
    assert no_token.status_code == 401
    form = api.client.post(url, data={"planning_ct_upload_id": ct_id}, headers=api.headers())
    assert form.status_code == 415
    for path in ("", "/result", "/overlays/axial", "/dicom-reg"):
        missing = api.client.get(f"/api/v1/registrations/nope{path}", headers=api.headers())
        assert missing.status_code == 404, path
        assert missing.json()["field"] == "registration_id"
    assert api.client.get("/api/v1/volumes/nope", headers=api.headers()).status_code == 404

    # A CBCT of another session of the same patient is refused; a planning CT is fine.
    other = api.create_session(
        api.client.get(f"/api/v1/sessions/{session_id}", headers=api.headers()).json()[
            "patient_id"
        ],
        kind="fraction",
        fraction_number=2,
    )
    elsewhere = api.client.post(
        f"/api/v1/sessions/{other['id']}/registrations",
        json={"planning_ct_upload_id": ct_id, "cbct_upload_id": cbct_id},
        headers=api.headers(),
    )
    assert elsewhere.status_code == 422
    assert elsewhere.json()["field"] == "cbct_upload_id"


def test_every_role_may_register_and_read(
    prepared: tuple[InProcessApi, str, str, str], volumes: Volumes
) -> None:
    api, session_id, ct_id, cbct_id = prepared
    for role in RoleValues:
        created = api.client.post(
            f"/api/v1/sessions/{session_id}/registrations",
            json={
                "planning_ct_upload_id": ct_id,
                "cbct_upload_id": cbct_id,
                "degrees_of_freedom": 6 if role is RoleValues.PHYSICIST else 3,
                "isocentre_lps_mm": list(volumes.isocentre_lps_mm),
            },
            headers=api.headers(role),
        )
        assert created.status_code == 202, (role, created.text)
        job = wait_for(api.client.get, created.headers["location"], api.headers(role))
        assert job["status"] == "completed", job
        result = api.client.get(f"{created.headers['location']}/result", headers=api.headers(role))
        check_result(result.json())
    bad_token = api.client.get(
        f"/api/v1/sessions/{session_id}/registrations",
        headers={"Authorization": "Bearer igrt_nope"},
    )
    assert bad_token.status_code == 401


def test_restart_retries_interrupted_jobs_up_to_the_bound_and_requeues_queued_ones(
    prepared: tuple[InProcessApi, str, str, str], volumes: Volumes
) -> None:
    from api.db.models import RegistrationJob
    from api.job_leases import interrupted_reason

    api, session_id, ct_id, cbct_id = prepared
    service = api.client.app.state.service  # type: ignore[attr-defined]
    earlier = [
        {"attempt": n, "at": "2026-11-28T09:30:31+00:00", "reason": "earlier"} for n in (1, 2)
    ]
    # A job left running by a dead process (no lease: a service older than leases, as a
    # single process leaves after a kill -9 as far as it can tell), one that was on its last
    # attempt, and one never started.
    states = {
        "interrupted": (RegistrationStatusValues.RUNNING, 1, []),
        "last_attempt": (RegistrationStatusValues.RUNNING, 3, earlier),
        "queued": (RegistrationStatusValues.QUEUED, 0, []),
    }
    ids = {}
    with service.sessions() as db:
        for name, (status, attempts, interruptions) in states.items():
            job = RegistrationJob(
                session_id=session_id,
                planning_ct_upload_id=ct_id,
                cbct_upload_id=cbct_id,
                degrees_of_freedom=3,
                isocentre_lps_mm=list(volumes.isocentre_lps_mm),
                status=status.value,
                attempts=attempts,
                interruptions=interruptions,
                software_version="test",
            )
            db.add(job)
            db.flush()
            ids[name] = job.id
        db.commit()
    assert service.settings.registration_max_attempts == 3
    assert service.registrations.recover() == (1, 2)
    base = "/api/v1/registrations"
    failed = api.client.get(f"{base}/{ids['last_attempt']}", headers=api.headers()).json()
    assert (failed["status"], failed["reason"]) == ("failed", interrupted_reason(3))
    assert [i["attempt"] for i in failed["interruptions"]] == [1, 2, 3]
    result = api.client.get(f"{base}/{ids['last_attempt']}/result", headers=api.headers())
    assert result.status_code == 409
    assert result.json()["field"] == "registration_id"
    retried = wait_for(api.client.get, f"{base}/{ids['interrupted']}", api.headers())
    assert (retried["status"], retried["attempts"]) == ("completed", 2)
    [interruption] = retried["interruptions"]
    assert (interruption["attempt"], interruption["reason"]) == (
        1,
        "its worker process ended while it ran",
    )
    requeued = wait_for(api.client.get, f"{base}/{ids['queued']}", api.headers())
    assert (requeued["status"], requeued["attempts"], requeued["interruptions"]) == (
        "completed",
        1,
        [],
    )


def test_a_failing_registration_is_a_failed_job_not_an_error(
    prepared: tuple[InProcessApi, str, str, str],
) -> None:
    api, session_id, ct_id, cbct_id = prepared
    created = api.client.post(
        f"/api/v1/sessions/{session_id}/registrations",
        json={
            "planning_ct_upload_id": ct_id,
            "cbct_upload_id": cbct_id,
            "clip_box_lps_mm": {
                "lower_lps_mm": [4000, 4000, 4000],
                "upper_lps_mm": [4100, 4100, 4100],
            },
        },
        headers=api.headers(),
    )
    assert created.status_code == 202, created.text
    job = wait_for(api.client.get, created.headers["location"], api.headers())
    assert job["status"] == "failed"
    assert job["reason"]
    assert str(api.settings.data_dir) not in job["reason"]
    overlay = api.client.get(f"{created.headers['location']}/overlays/axial", headers=api.headers())
    assert overlay.status_code == 409


# --- bad volume uploads ---------------------------------------------------------------------


def _mha(array: np.ndarray[Any, Any], folder: Path, name: str = "v.mha") -> bytes:
    import SimpleITK as sitk

    path = folder / name
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path.read_bytes()


def test_bad_volume_uploads_get_a_4xx_naming_the_field(
    api: InProcessApi, volumes: Volumes, tmp_path: Path
) -> None:
    session_id = _session(api)
    nan = np.zeros((4, 5, 6), dtype=np.float32)
    nan[1, 2, 3] = np.nan
    header_only = (
        b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
        b"ElementDataFile = /etc/passwd\n"
    )
    truncated = bytearray(volumes.planning_zip[: len(volumes.planning_zip) // 2])
    cases: list[tuple[bytes, str, str, str, int, str]] = [
        (_mha(nan, tmp_path, "nan.mha"), "cbct", "mha", "application/octet-stream", 422, "file"),
        (
            _mha(np.zeros((5, 6), np.int16), tmp_path, "2d.mha"),
            "cbct",
            "mha",
            "application/octet-stream",
            422,
            "file",
        ),
        (
            _mha(np.zeros((1, 5, 6), np.int16), tmp_path, "flat.mha"),
            "cbct",
            "mha",
            "application/octet-stream",
            422,
            "file",
        ),
        (header_only, "cbct", "mha", "application/octet-stream", 422, "file"),
        (
            b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\ndata file: /etc/passwd\n\n",
            "cbct",
            "nrrd",
            "application/octet-stream",
            422,
            "file",
        ),
        (b"not a zip", "planning_ct", "dicom_zip", "application/zip", 422, "file"),
        (bytes(truncated), "planning_ct", "dicom_zip", "application/zip", 422, "file"),
        (b"\x00" * 400, "cbct", "nifti", "application/octet-stream", 422, "file"),
        (volumes.cbct_mha, "cbct", "mha", "text/plain", 415, "file"),
        (volumes.cbct_mha, "ct", "mha", "application/octet-stream", 422, "kind"),
        (volumes.cbct_mha, "cbct", "dicom", "application/octet-stream", 422, "format"),
        (b"", "cbct", "mha", "application/octet-stream", 422, "file"),
    ]
    for content, kind, fmt, content_type, status, field in cases:
        response = upload_volume(
            api, session_id, content, kind=kind, fmt=fmt, content_type=content_type
        )
        assert response.status_code == status, (kind, fmt, response.text)
        assert response.json()["field"] == field, response.json()
        assert "staged-" not in response.text

    empty_zip = io.BytesIO()
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.txt", "no images")
    response = upload_volume(
        api, session_id, empty_zip.getvalue(), kind="planning_ct", fmt="dicom_zip"
    )
    assert response.status_code == 422
    assert response.json()["field"] == "file"

    patient_id = api.client.get(f"/api/v1/sessions/{session_id}", headers=api.headers()).json()[
        "patient_id"
    ]
    feet_first = api.create_session(patient_id, patient_position="FFS")
    contradicted = upload_volume(api, feet_first["id"], volumes.cbct_mha, kind="cbct", fmt="mha")
    assert contradicted.status_code == 422
    assert contradicted.json()["field"] == "file"
    assert "Patient Position" in contradicted.json()["detail"]
    unknown = upload_volume(api, "nope", volumes.cbct_mha, kind="cbct", fmt="mha")
    assert unknown.status_code == 404


def test_volume_limits(tmp_path: Path, volumes: Volumes) -> None:
    settings = make_settings(tmp_path / "data", max_volume_voxels=1000, max_upload_bytes=800_000)
    for api in start_in_process(settings):
        session_id = _session(api)
        too_many = upload_volume(api, session_id, volumes.cbct_mha, kind="cbct", fmt="mha")
        assert too_many.status_code == 422
        assert too_many.json()["field"] == "file"
        assert "voxels" in too_many.json()["detail"]
        too_big = upload_volume(
            api, session_id, volumes.planning_mha + b"\0" * 800_000, kind="planning_ct", fmt="mha"
        )
        assert too_big.status_code == 413  # refused from Content-Length, before the route
        assert too_big.json()["code"] == "payload_too_large"


def test_volume_uploads_are_immutable(prepared: tuple[InProcessApi, str, str, str]) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from api.db.models import ImmutableRowError, VolumeUpload

    api, _, ct_id, _ = prepared
    service = api.client.app.state.service  # type: ignore[attr-defined]
    with service.sessions() as db:
        upload = db.get(VolumeUpload, ct_id)
        assert upload is not None
        upload.kind = "cbct"
        with pytest.raises(ImmutableRowError):
            db.commit()
    for statement in ("UPDATE volume_uploads SET kind = 'cbct'", "DELETE FROM volume_uploads"):
        with service.engine.connect() as connection, pytest.raises(DBAPIError):
            connection.execute(text(statement))


def test_reviews_of_registrations(
    prepared: tuple[InProcessApi, str, str, str], volumes: Volumes
) -> None:
    api, session_id, ct_id, cbct_id = prepared
    url = f"/api/v1/sessions/{session_id}/registrations"
    created = api.client.post(
        url,
        json={
            "planning_ct_upload_id": ct_id,
            "cbct_upload_id": cbct_id,
            "isocentre_lps_mm": list(volumes.isocentre_lps_mm),
        },
        headers=api.headers(),
    )
    location = created.headers["location"]
    assert wait_for(api.client.get, location, api.headers())["status"] == "completed"
    reviews = f"{location}/reviews"

    def review(role: RoleValues, **body: Any) -> Any:
        return api.client.post(reviews, json=body, headers=api.headers(role))

    assert review(RoleValues.CONSOLE, outcome="approved").status_code == 403
    approved = review(RoleValues.THERAPIST, outcome="approved")
    assert approved.status_code == 201, approved.text
    assert approved.json()["subject_type"] == "registration"
    assert approved.json()["decision"] == "reposition"
    again = review(RoleValues.THERAPIST, outcome="approved")
    assert again.status_code == 409
    assert again.json()["field"] == "supersedes_id"
    same = review(
        RoleValues.PHYSICIST,
        outcome="overridden",
        reason="r",
        decision="reposition",
        supersedes_id=approved.json()["id"],
    )
    assert same.status_code == 422
    assert same.json()["field"] == "decision"
    override = review(
        RoleValues.PHYSICIST,
        outcome="overridden",
        reason="Residual within the PTV margin on review of the overlays.",
        decision="no_repositioning",
        supersedes_id=approved.json()["id"],
    )
    assert override.status_code == 201, override.text
    listed = api.client.get(reviews, headers=api.headers(RoleValues.CONSOLE)).json()
    assert [r["standing"] for r in listed["data"]] == [False, True]
    missing = api.client.get("/api/v1/registrations/nope/reviews", headers=api.headers())
    assert missing.status_code == 404

    failed = api.client.post(
        url,
        json={
            "planning_ct_upload_id": ct_id,
            "cbct_upload_id": cbct_id,
            "clip_box_lps_mm": {"lower_lps_mm": [4000] * 3, "upper_lps_mm": [4100] * 3},
        },
        headers=api.headers(),
    )
    failed_url = failed.headers["location"]
    assert wait_for(api.client.get, failed_url, api.headers())["status"] == "failed"
    nothing = api.client.post(
        f"{failed_url}/reviews", json={"outcome": "approved"}, headers=api.headers()
    )
    assert nothing.status_code == 422
    assert nothing.json()["field"] == "outcome"


def test_a_cbct_in_the_room_frame_is_placed_by_the_isocentre(
    api: InProcessApi, volumes: Volumes, tmp_path: Path, dciodvfy: DicomValidator
) -> None:
    import pydicom

    from fixtures.fraction import simulate_phantom_fraction
    from igrt.imageio import write_volume_mha
    from igrt.volume import Volume

    planning_frame, room_frame = "1.2.826.0.1.3680043.8.498.81", "1.2.826.0.1.3680043.8.498.82"
    simulation = simulate_phantom_fraction(DISPLACEMENT_LPS_MM)
    ct, cbct = simulation.planning_ct, simulation.cbct
    isocentre = np.asarray(volumes.isocentre_lps_mm)
    # As a linac writes it: its own Frame of Reference, the machine isocentre at its origin.
    write_volume_mha(
        Volume(ct.array, ct.spacing_mm, ct.origin_lps_mm, ct.direction, planning_frame),
        tmp_path / "ct.mha",
        patient_position="HFS",
    )
    write_volume_mha(
        Volume(cbct.array, cbct.spacing_mm, cbct.origin_lps_mm - isocentre, cbct.direction,
               room_frame),
        tmp_path / "cbct.mha",
        patient_position="HFS",
    )  # fmt: skip
    session_id = _session(api)
    ids = {}
    for kind, name in (("planning_ct", "ct.mha"), ("cbct", "cbct.mha")):
        uploaded = upload_volume(
            api, session_id, (tmp_path / name).read_bytes(), kind=kind, fmt="mha"
        )
        assert uploaded.status_code == 201, uploaded.text
        ids[kind] = uploaded.json()["id"]
    url = f"/api/v1/sessions/{session_id}/registrations"
    body = {"planning_ct_upload_id": ids["planning_ct"], "cbct_upload_id": ids["cbct"]}
    refused = api.client.post(url, json=body, headers=api.headers(RoleValues.CONSOLE))
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "isocentre_lps_mm"
    assert room_frame in refused.json()["detail"]
    created = api.client.post(
        url,
        json={**body, "isocentre_lps_mm": list(volumes.isocentre_lps_mm)},
        headers=api.headers(RoleValues.CONSOLE),
    )
    assert created.status_code == 202, created.text
    assert created.json()["cbct_isocentre_lps_mm"] is None
    location = created.headers["location"]
    job = wait_for(api.client.get, location, api.headers(RoleValues.PHYSICIST))
    assert job["status"] == "completed", job
    result = api.client.get(f"{location}/result", headers=api.headers(RoleValues.THERAPIST))
    check_result(result.json())
    frames = result.json()["document"]["frames"]
    assert frames["relation"] == "placed by the treatment isocentre"
    assert frames["planning_ct_frame_of_reference_uid"] == planning_frame
    assert frames["cbct_frame_of_reference_uid"] == room_frame
    assert frames["cbct_isocentre_lps_mm"] == [0.0, 0.0, 0.0]
    assert frames["cbct_isocentre_source"].startswith("default")
    reg = api.client.get(f"{location}/dicom-reg", headers=api.headers())
    assert reg.status_code == 200, reg.text
    dciodvfy(reg.content)
    dataset = pydicom.dcmread(io.BytesIO(reg.content))
    assert [item.FrameOfReferenceUID for item in dataset.RegistrationSequence] == [
        planning_frame,
        room_frame,
    ]
    matrix = np.array(
        dataset.RegistrationSequence[1]
        .MatrixRegistrationSequence[0]
        .MatrixSequence[0]
        .FrameOfReferenceTransformationMatrix,
        dtype=np.float64,
    ).reshape(4, 4)
    np.testing.assert_allclose(matrix, result.json()["document"]["ct_from_cbct_frame"], atol=1e-6)
    # The machine isocentre (the CBCT's origin) lands on the isocentre's anatomy in the plan.
    np.testing.assert_allclose(matrix[:3, 3], isocentre - np.asarray(DISPLACEMENT_LPS_MM), atol=0.5)
    # A CBCT isocentre for a CBCT that shares the planning frame is a 422 naming it.
    write_volume_mha(
        Volume(cbct.array, cbct.spacing_mm, cbct.origin_lps_mm, cbct.direction, planning_frame),
        tmp_path / "shared.mha",
        patient_position="HFS",
    )
    shared = upload_volume(
        api, session_id, (tmp_path / "shared.mha").read_bytes(), kind="cbct", fmt="mha"
    )
    assert shared.status_code == 201, shared.text
    mixed = api.client.post(
        url,
        json={
            "planning_ct_upload_id": ids["planning_ct"],
            "cbct_upload_id": shared.json()["id"],
            "isocentre_lps_mm": list(volumes.isocentre_lps_mm),
            "cbct_isocentre_lps_mm": [0.0, 0.0, 0.0],
        },
        headers=api.headers(RoleValues.CONSOLE),
    )
    assert mixed.status_code == 422, mixed.text
    assert mixed.json()["field"] == "cbct_isocentre_lps_mm"
