"""Vendor kV recordings (XVI, OBI, TrueBeam) uploaded as a zip: geometry from their files."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fixtures.vendor_files import write_his_folder, write_hnd_folder, write_xim_folder
from igrt.imageio import read_fluoro_mha
from igrt.sequence import FluoroSequence
from tests.api.conftest import InProcessApi


@pytest.fixture
def session_id(api: InProcessApi) -> str:
    patient = api.create_patient()
    return str(api.create_session(patient["id"])["id"])


def _zipped(folder: Path, *, subfolder: str = "img_1") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"{subfolder}/{path.name}")
        archive.writestr(f"{subfolder}/Reconstruction/notes.txt", "ignored")
    return buffer.getvalue()


def _upload(api: InProcessApi, session_id: str, data: bytes, **form: object) -> object:
    return api.upload(
        session_id, data, fmt="zip", content_type="application/zip", filename="xvi.zip", **form
    )


@pytest.mark.parametrize(
    ("write", "form"),
    [(write_his_folder, {}), (write_hnd_folder, {"fps": 5}), (write_xim_folder, {})],
)
def test_vendor_zip_is_read_with_the_files_geometry(
    api: InProcessApi,
    session_id: str,
    fluoro_sequence: FluoroSequence,
    tmp_path: Path,
    write: Callable[[FluoroSequence, Path], Path],
    form: dict[str, object],
) -> None:
    data = _zipped(write(fluoro_sequence, tmp_path / "recording"))
    response = _upload(api, session_id, data, **form)
    assert response.status_code == 201, response.text  # type: ignore[attr-defined]
    upload = response.json()  # type: ignore[attr-defined]
    assert upload["geometry_source"] == "file"
    assert upload["geometry"]["sdd_mm"] == fluoro_sequence.geometries[0].sdd_mm
    service = api.client.app.state.service  # type: ignore[attr-defined]
    from api.db.models import Upload

    with service.sessions() as db:
        row = db.get(Upload, upload["id"])
        assert row is not None
        stored = read_fluoro_mha(service.store.path(row.sequence_path))
    np.testing.assert_array_equal(stored.frames, fluoro_sequence.frames)
    np.testing.assert_allclose(stored.timestamps_s, fluoro_sequence.timestamps_s, atol=1e-6)


def test_obi_zip_without_fps_names_the_fps_field(
    api: InProcessApi, session_id: str, fluoro_sequence: FluoroSequence, tmp_path: Path
) -> None:
    data = _zipped(write_hnd_folder(fluoro_sequence, tmp_path / "obi"))
    response = _upload(api, session_id, data)
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert "fps" in response.text  # type: ignore[attr-defined]


def test_truncated_xim_in_a_zip_is_refused_and_nothing_is_stored(
    api: InProcessApi, session_id: str, fluoro_sequence: FluoroSequence, tmp_path: Path
) -> None:
    folder = write_xim_folder(fluoro_sequence, tmp_path / "xim")
    first = sorted(folder.glob("*.xim"))[0]
    first.write_bytes(first.read_bytes()[:5000])
    response = _upload(api, session_id, _zipped(folder))
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert "truncated" in response.text  # type: ignore[attr-defined]
    listed = api.client.get(f"/api/v1/sessions/{session_id}/uploads", headers=api.headers())
    assert listed.status_code == 200
    assert listed.json()["data"] == []


def test_two_recordings_in_one_zip_are_refused(
    api: InProcessApi, session_id: str, fluoro_sequence: FluoroSequence, tmp_path: Path
) -> None:
    folder = write_his_folder(fluoro_sequence, tmp_path / "a")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"one/{path.name}")
            archive.write(path, f"two/{path.name}")
    response = _upload(api, session_id, buffer.getvalue())
    assert response.status_code == 422  # type: ignore[attr-defined]
