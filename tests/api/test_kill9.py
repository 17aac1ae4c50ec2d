"""kill -9 during uploads: no acknowledged upload lost, no orphan left, nothing left running.

A CI-sized slice of ``benchmarks/kill9.py`` (issue 12: 20 kills of each of three operations):
two kills of a real ``igrt serve`` while a client uploads fluoroscopy DICOMs and CBCTs back to
back, each kill followed by a restart on the same data (see :mod:`tests.api.kill9`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from api.enums import RoleValues
from tests.api.conftest import PATIENT_ID, InProcessApi, Volumes
from tests.api.kill9 import Acknowledged, KillInputs, lost_reason, run_kills, vary_dicom, vary_mha


def _sha256(content: bytes) -> str:
    import hashlib

    return hashlib.sha256(content).hexdigest()


def _inputs(make_dicom: Callable[..., bytes], volumes: Volumes) -> KillInputs:
    return KillInputs(
        patient_id=PATIENT_ID,
        fluoro_dicom=make_dicom(),
        planning_ct_mha=volumes.planning_mha,
        cbct_mha=volumes.cbct_mha,
        isocentre_lps_mm=volumes.isocentre_lps_mm,
    )


@pytest.mark.slow
def test_no_acknowledged_upload_is_lost_when_the_service_is_killed(
    tmp_path: Path, make_dicom: Callable[..., bytes], volumes: Volumes
) -> None:
    inputs = _inputs(make_dicom, volumes)
    tally = run_kills("upload", 2, seed=12, workdir=tmp_path, inputs=inputs)

    assert tally.kills == 2
    assert tally.acknowledged >= 1, "no upload was acknowledged before a kill: nothing checked"
    assert tally.lost == []
    assert tally.rows_without_file == 0
    assert tally.left_after_repair == 0
    assert tally.jobs_left_running == 0


@pytest.mark.slow
def test_a_kill_right_after_a_file_is_stored_leaves_an_orphan_the_repair_collects(
    tmp_path: Path, make_dicom: Callable[..., bytes], volumes: Volumes
) -> None:
    inputs = _inputs(make_dicom, volumes)
    tally = run_kills("upload", 1, seed=12, workdir=tmp_path, inputs=inputs, after_store=True)

    assert tally.kills_at_moment == 1, "no file was stored before the wait ended"
    assert tally.orphans_collected >= 1  # the file whose row was never committed
    assert tally.rows_without_file == 0
    assert tally.left_after_repair == 0
    assert tally.lost == []


def test_a_record_not_served_as_acknowledged_counts_as_lost(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    """The loss check itself: a missing record, another file, another assessment."""
    session_id = api.create_session(api.create_patient()["id"])["id"]
    content = vary_dicom(make_dicom(), 3)
    assert content != make_dicom()
    upload = api.upload(session_id, content)
    assert upload.status_code == 201, upload.text
    upload_id = upload.json()["id"]
    client = api.client
    client.headers.update(api.headers(RoleValues.THERAPIST))

    assert lost_reason(client, Acknowledged("fluoroscopy", upload_id, _sha256(content))) is None
    other_file = Acknowledged("fluoroscopy", upload_id, _sha256(make_dicom()))
    assert "not the uploaded one" in str(lost_reason(client, other_file))
    unknown = Acknowledged("volume", "00000000-0000-4000-8000-000000000000", "0" * 64)
    assert "answered 404" in str(lost_reason(client, unknown))

    assessed = client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments", json={"upload_id": upload_id}
    )
    assert assessed.status_code == 201, assessed.text
    body = assessed.json()
    assert lost_reason(client, Acknowledged("assessment", body["id"], body=body)) is None
    changed = {**body, "status": "failed"}
    assert "served differently" in str(
        lost_reason(client, Acknowledged("assessment", body["id"], body=changed))
    )


def test_varied_volumes_are_new_bytes_of_the_same_image(volumes: Volumes, tmp_path: Path) -> None:
    from igrt.imageio import read_volume

    original = volumes.cbct_mha
    first, second = vary_mha(original, 1), vary_mha(original, 2)
    assert len({first, second, original}) == 3
    images = []
    for name, content in (("original", original), ("first", first), ("second", second)):
        path = tmp_path / f"{name}.mha"
        path.write_bytes(content)
        images.append(read_volume(path))
    difference = images[1].volume.array.astype(float) - images[0].volume.array.astype(float)
    assert np.count_nonzero(difference) == 1  # one voxel, raised by 2
    assert difference.max() == 2.0
    np.testing.assert_array_equal(images[1].volume.spacing_mm, images[0].volume.spacing_mm)


def test_varied_dicoms_differ_in_two_pixels_by_less_than_256(
    make_dicom: Callable[..., bytes],
) -> None:
    original = make_dicom()
    varied = [vary_dicom(original, index) for index in (0, 1, 255, 256, 65534)]
    assert len({original, *varied}) == 6
    for content in varied:
        assert content[:-4] == original[:-4]
        last = np.frombuffer(content[-4:], dtype="<u2").astype(int)
        assert np.abs(last - np.frombuffer(original[-4:], dtype="<u2")).max() < 256
