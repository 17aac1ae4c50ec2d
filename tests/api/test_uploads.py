"""Fluoroscopy uploads in every format, in process: what is stored and what is reported."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pytest

from api.enums import RoleValues
from igrt.imageio import read_fluoro_mha
from igrt.sequence import FluoroSequence
from tests.api.conftest import InProcessApi

PRESET = {"geometry_preset": "xvi", "binning": 4, "fps": 5}


@pytest.fixture
def session_id(api: InProcessApi) -> str:
    patient = api.create_patient()
    return str(api.create_session(patient["id"])["id"])


def _stored_sequence(api: InProcessApi, upload_id: str) -> FluoroSequence:
    from api.db.models import Upload

    service = api.client.app.state.service  # type: ignore[attr-defined]
    with service.sessions() as db:
        row = db.get(Upload, upload_id)
        assert row is not None
        return read_fluoro_mha(service.store.path(row.sequence_path))


def test_dicom_keeps_its_own_geometry_and_times(
    api: InProcessApi,
    session_id: str,
    make_dicom: Callable[..., bytes],
    fluoro_sequence: FluoroSequence,
) -> None:
    dicom = make_dicom()
    response = api.upload(session_id, dicom)
    assert response.status_code == 201, response.text
    upload = response.json()
    assert upload["format"] == "dicom"
    assert upload["geometry_source"] == "file"
    assert (upload["n_frames"], upload["rows"], upload["columns"]) == (10, 256, 256)
    assert upload["dtype"] == "uint16"
    assert upload["intensity"] == "raw"
    assert upload["sha256"] == hashlib.sha256(dicom).hexdigest()
    assert upload["size_bytes"] == len(dicom)
    geometry = upload["geometry"]
    assert geometry["sad_mm"] == 1000.0
    assert geometry["sdd_mm"] == 1536.0
    assert geometry["pixel_pitch_mm"] == [1.6, 1.6]
    assert geometry["pixel_at_isocentre_mm"][0] == pytest.approx(1.6 * 1000 / 1536)
    assert geometry["timestamps_s"] == pytest.approx(fluoro_sequence.timestamps_s.tolist())
    stored = _stored_sequence(api, upload["id"])
    np.testing.assert_array_equal(stored.frames, fluoro_sequence.frames)
    assert stored.geometries == fluoro_sequence.geometries


def test_mha_keeps_its_own_geometry(
    api: InProcessApi, session_id: str, mha_bytes: bytes, fluoro_sequence: FluoroSequence
) -> None:
    response = api.upload(
        session_id,
        mha_bytes,
        fmt="mha",
        content_type="application/octet-stream",
        filename="fluoro.mha",
    )
    assert response.status_code == 201, response.text
    assert response.json()["geometry_source"] == "file"
    stored = _stored_sequence(api, response.json()["id"])
    np.testing.assert_array_equal(stored.frames, fluoro_sequence.frames)


def test_raw_takes_the_geometry_from_the_form(
    api: InProcessApi, session_id: str, raw_bytes: bytes, fluoro_sequence: FluoroSequence
) -> None:
    response = api.upload(
        session_id,
        raw_bytes,
        fmt="raw",
        content_type="application/octet-stream",
        filename="fluoro.raw",
        n_frames=10,
        rows=256,
        columns=256,
        gantry_deg=90,
        **PRESET,
    )
    assert response.status_code == 201, response.text
    upload = response.json()
    assert upload["geometry_source"] == "request"
    assert upload["geometry"]["gantry_deg"] == [90.0] * 10
    assert upload["geometry"]["timestamps_s"] == pytest.approx([i / 5 for i in range(10)])
    stored = _stored_sequence(api, upload["id"])
    np.testing.assert_array_equal(stored.frames, fluoro_sequence.frames)
    assert stored.geometries[0].gantry_deg == 90.0


def test_zip_of_png_frames_in_natural_order(
    api: InProcessApi, session_id: str, zip_bytes: bytes, fluoro_sequence: FluoroSequence
) -> None:
    response = api.upload(
        session_id,
        zip_bytes,
        fmt="zip",
        content_type="application/zip",
        filename="frames.zip",
        sad_mm=1000,
        sdd_mm=1536,
        pixel_pitch_u_mm=1.6,
        pixel_pitch_v_mm=1.6,
        fps=5,
    )
    assert response.status_code == 201, response.text
    stored = _stored_sequence(api, response.json()["id"])
    np.testing.assert_array_equal(stored.frames, fluoro_sequence.frames)  # f10 after f9


def test_dicom_without_geometry_uses_the_form(
    api: InProcessApi, session_id: str, make_dicom: Callable[..., bytes], tmp_path: object
) -> None:
    import io

    from pydicom import dcmread

    dataset = dcmread(io.BytesIO(make_dicom()))
    del dataset[0x0018, 0x1110]  # Distance Source to Detector
    for element in list(dataset):
        if element.tag.group == 0x0077:
            del dataset[element.tag]
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    stripped = buffer.getvalue()
    refused = api.upload(session_id, stripped)
    assert refused.status_code == 422
    assert refused.json()["field"] == "file"
    accepted = api.upload(session_id, stripped, **PRESET)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["geometry_source"] == "request"


def test_the_same_file_twice_is_two_uploads_of_one_stored_file(
    api: InProcessApi, session_id: str, make_dicom: Callable[..., bytes]
) -> None:
    first = api.upload(session_id, make_dicom()).json()
    second = api.upload(session_id, make_dicom()).json()
    assert first["id"] != second["id"]
    assert first["sha256"] == second["sha256"]
    files = [p for p in api.settings.store_dir.rglob("*") if p.is_file()]
    assert len(files) == 2  # the DICOM and its canonical MetaImage, once each
    listed = api.client.get(f"/api/v1/sessions/{session_id}/uploads", headers=api.headers())
    assert [u["id"] for u in listed.json()["data"]] == [first["id"], second["id"]]


def test_download_returns_the_bytes_sent(
    api: InProcessApi, session_id: str, make_dicom: Callable[..., bytes]
) -> None:
    upload = api.upload(session_id, make_dicom()).json()
    url = f"/api/v1/uploads/{upload['id']}/file"
    # Originals carry the patient's identity: people download them, consoles do not.
    assert api.client.get(url, headers=api.headers(RoleValues.CONSOLE)).status_code == 403
    response = api.client.get(url, headers=api.headers(RoleValues.THERAPIST))
    assert response.status_code == 200
    assert response.content == make_dicom()
    assert response.headers["content-type"] == "application/dicom"


def test_uploads_are_audited_and_counted(
    api: InProcessApi, session_id: str, make_dicom: Callable[..., bytes]
) -> None:
    upload = api.upload(session_id, make_dicom()).json()
    audit = api.client.get(
        "/api/v1/audit-events",
        params={"resource_id": upload["id"]},
        headers=api.headers(RoleValues.PHYSICIST),
    ).json()
    assert audit["count"] == 1
    event = audit["data"][0]
    assert event["action"] == "upload.create"
    assert event["actor_role"] == "console"
    assert event["detail"]["session_id"] == session_id
    metrics = api.client.get("/metrics", headers=api.headers()).text
    assert 'igrt_uploads_total{format="dicom",kind="fluoroscopy"} 1.0' in metrics
