"""Plan-aware registration over HTTP (``POST .../registrations`` with ``plan``), as
``igrt register --plan --structures --roi``: the isocentre from a received RT Plan, the clip box
from a received RT Structure Set ROI, checked at once against the planning CT's Frame of
Reference, and the result saying where both came from.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from api.db.models import DicomInstance
from api.enums import RoleValues
from fixtures.rt_objects import write_rt_plan, write_structure_set
from tests.api.conftest import InProcessApi, Volumes
from tests.api.test_registrations import _session, check_result, upload_volume, wait_for

OTHER_FRAME = "1.2.826.0.1.3680043.8.498.99"


def receive(api: InProcessApi, session_id: str, path: Path, kind: str) -> str:
    """File ``path`` to the session as the DICOM receiver would (stored, status ``stored``)."""
    service = api.client.app.state.service  # type: ignore[attr-defined]
    header = pydicom.dcmread(path, stop_before_pixels=True)
    staged = service.store.temp_path(".dcm")
    shutil.copyfile(path, staged)
    stored = service.store.store(staged)
    with service.sessions() as db:
        session = api.client.get(f"/api/v1/sessions/{session_id}", headers=api.headers()).json()
        row = DicomInstance(
            sop_instance_uid=str(header.SOPInstanceUID),
            sop_class_uid=str(header.SOPClassUID),
            transfer_syntax_uid=str(header.file_meta.TransferSyntaxUID),
            kind=kind,
            modality=str(header.Modality),
            patient_id=session["patient_id"],
            session_id=session_id,
            n_frames=1,
            calling_ae="ECLIPSE",
            source_role="planning",
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            stored_path=stored.relative_path,
            processing_status="stored",
        )
        db.add(row)
        db.commit()
        return str(row.id)


@pytest.fixture
def planned(
    api: InProcessApi, volumes: Volumes, tmp_path: Path
) -> tuple[InProcessApi, str, str, str, dict[str, str]]:
    """A fraction with a DICOM planning CT, a CBCT, and received plans and structure sets."""
    session_id = _session(api)
    ct = upload_volume(api, session_id, volumes.planning_zip, kind="planning_ct", fmt="dicom_zip")
    assert ct.status_code == 201, ct.text
    frame = ct.json()["geometry"]["frame_of_reference_uid"]
    assert frame
    cbct = upload_volume(api, session_id, volumes.cbct_mha, kind="cbct", fmt="mha")
    assert cbct.status_code == 201, cbct.text
    iso = list(volumes.isocentre_lps_mm)
    liver = ([iso[0] - 60, iso[1] - 60, iso[2] - 40], [iso[0] + 50, iso[1] + 50, iso[2] + 60])
    elsewhere = ([iso[0] + 90, iso[1] - 20, iso[2] - 20], [iso[0] + 130, iso[1] + 20, iso[2] + 20])
    files = {
        "rs": write_structure_set(
            tmp_path / "rs.dcm", {"Liver": liver, "Kidney": elsewhere}, frame_of_reference_uid=frame
        ),
        "rp": write_rt_plan(tmp_path / "rp.dcm", [("ARC1", iso)], frame_of_reference_uid=frame),
        "rp_other_frame": write_rt_plan(
            tmp_path / "rp_other.dcm", [("ARC1", iso)], frame_of_reference_uid=OTHER_FRAME
        ),
        "rp_two": write_rt_plan(
            tmp_path / "rp_two.dcm",
            [("ARC1", iso), ("ARC2", [iso[0] + 50, iso[1], iso[2]])],
            frame_of_reference_uid=frame,
        ),
        "rp_none": write_rt_plan(
            tmp_path / "rp_none.dcm", [("ARC1", None)], frame_of_reference_uid=frame
        ),
    }
    del files  # SOP UIDs are not needed: the instances are named by id
    ids = {
        "rs": receive(api, session_id, tmp_path / "rs.dcm", "rt_struct"),
        "rp": receive(api, session_id, tmp_path / "rp.dcm", "rt_plan"),
        "rp_other_frame": receive(api, session_id, tmp_path / "rp_other.dcm", "rt_plan"),
        "rp_two": receive(api, session_id, tmp_path / "rp_two.dcm", "rt_plan"),
        "rp_none": receive(api, session_id, tmp_path / "rp_none.dcm", "rt_plan"),
    }
    return api, session_id, ct.json()["id"], cbct.json()["id"], ids


def _post(api: InProcessApi, session_id: str, body: dict[str, Any]) -> Any:
    return api.client.post(
        f"/api/v1/sessions/{session_id}/registrations",
        json=body,
        headers=api.headers(RoleValues.CONSOLE),
    )


def test_the_plan_isocentre_and_the_liver_box_focus_the_registration(
    planned: tuple[InProcessApi, str, str, str, dict[str, str]], volumes: Volumes
) -> None:
    api, session_id, ct_id, cbct_id, ids = planned
    plan = {"rt_plan_instance_id": ids["rp"], "rt_struct_instance_id": ids["rs"], "roi": "Liver"}
    created = _post(
        api, session_id, {"planning_ct_upload_id": ct_id, "cbct_upload_id": cbct_id, "plan": plan}
    )
    assert created.status_code == 202, created.text
    checked = created.json()["plan_request"]["checked_focus"]
    np.testing.assert_allclose(checked["isocentre_lps_mm"], volumes.isocentre_lps_mm)
    assert checked["isocentre_in_clip_box"] is True
    job = wait_for(api.client.get, created.headers["location"], api.headers())
    assert job["status"] == "completed", job
    result = api.client.get(f"{created.headers['location']}/result", headers=api.headers()).json()
    check_result(result)
    document = result["document"]
    assert document["reference_point_source"].startswith("RT Plan ")
    assert "ROI 'Liver'" in document["clip_box_source"]
    focus = document["extra"]["plan_focus"]
    np.testing.assert_allclose(focus["isocentre_lps_mm"], volumes.isocentre_lps_mm)
    assert focus["isocentre_in_clip_box"] is True
    events = api.client.get(
        "/api/v1/audit-events", headers=api.headers(RoleValues.PHYSICIST)
    ).json()["data"]
    created_event = next(e for e in events if e["action"] == "registration.create")
    assert created_event["detail"]["rt_plan_instance_id"] == ids["rp"]


@pytest.mark.parametrize(
    ("plan", "field", "words"),
    [
        ({"rt_plan_instance_id": "rp_other_frame"}, "plan.frame_of_reference_uid", "Frame of"),
        ({"rt_plan_instance_id": "rp_none"}, "plan.", "isocentre"),
        ({"rt_plan_instance_id": "rp_two"}, "plan.", "beam"),
        (
            {"rt_plan_instance_id": "rp", "rt_struct_instance_id": "rs", "roi": "GTV"},
            "plan.",
            "GTV",
        ),
        (
            {"rt_plan_instance_id": "rp", "rt_struct_instance_id": "rs", "roi": "Kidney"},
            "plan.roi",
            "does not contain",
        ),
        ({"rt_plan_instance_id": "rs"}, "plan.rt_plan_instance_id", "rt_struct"),
        (
            {"rt_plan_instance_id": "rp", "rt_struct_instance_id": "rp", "roi": "Liver"},
            "plan.rt_struct_instance_id",
            "rt_plan",
        ),
    ],
)
def test_a_plan_that_cannot_focus_is_refused_at_once(
    planned: tuple[InProcessApi, str, str, str, dict[str, str]],
    plan: dict[str, str],
    field: str,
    words: str,
) -> None:
    api, session_id, ct_id, cbct_id, ids = planned
    named = {
        key: ids.get(value, value) if key.endswith("_id") else value for key, value in plan.items()
    }
    response = _post(
        api, session_id, {"planning_ct_upload_id": ct_id, "cbct_upload_id": cbct_id, "plan": named}
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["field"].startswith(field), problem
    assert words in problem["detail"], problem
    assert str(api.settings.data_dir) not in problem["detail"]
    jobs = api.client.get(f"/api/v1/sessions/{session_id}/registrations", headers=api.headers())
    assert jobs.json()["count"] == 0


def test_plan_requests_are_validated(
    planned: tuple[InProcessApi, str, str, str, dict[str, str]],
) -> None:
    api, session_id, ct_id, cbct_id, ids = planned
    base = {"planning_ct_upload_id": ct_id, "cbct_upload_id": cbct_id}
    plan = {"rt_plan_instance_id": ids["rp"]}
    cases = [
        ({**base, "plan": plan, "isocentre_lps_mm": [0, 0, 0]}, 422),
        ({**base, "plan": {**plan, "roi": "Liver"}}, 422),  # an ROI needs the structure set
        ({**base, "plan": {**plan, "roi_margin_mm": 5}}, 422),  # a margin needs an ROI
        ({**base, "plan": {"rt_plan_instance_id": "nowhere"}}, 404),
    ]
    for body, status in cases:
        response = _post(api, session_id, body)
        assert response.status_code == status, (body, response.text)


def test_another_patients_plan_is_refused(
    planned: tuple[InProcessApi, str, str, str, dict[str, str]], tmp_path: Path
) -> None:
    api, session_id, ct_id, cbct_id, _ = planned
    other_patient = api.create_patient("MRN-OTHER-PLAN")
    other_session = api.create_session(other_patient["id"])["id"]
    write_rt_plan(tmp_path / "foreign.dcm", [("A", [0, 0, 0])], frame_of_reference_uid=OTHER_FRAME)
    foreign = receive(api, other_session, tmp_path / "foreign.dcm", "rt_plan")
    body = {"planning_ct_upload_id": ct_id, "cbct_upload_id": cbct_id}
    response = _post(api, session_id, {**body, "plan": {"rt_plan_instance_id": foreign}})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "plan.rt_plan_instance_id belongs to another patient"


def test_a_room_frame_cbct_is_placed_by_the_plan_isocentre(
    planned: tuple[InProcessApi, str, str, str, dict[str, str]], volumes: Volumes, tmp_path: Path
) -> None:
    from igrt.imageio import read_volume, write_volume_mha
    from igrt.volume import Volume

    api, session_id, ct_id, _, ids = planned
    (tmp_path / "planning_frame.mha").write_bytes(volumes.cbct_mha)
    cbct = read_volume(tmp_path / "planning_frame.mha").volume
    # As a linac writes it: the room's own frame, the machine isocentre at its origin.
    room = Volume(
        cbct.array,
        cbct.spacing_mm,
        cbct.origin_lps_mm - np.asarray(volumes.isocentre_lps_mm),
        cbct.direction,
        frame_of_reference_uid=OTHER_FRAME,
    )
    write_volume_mha(room, tmp_path / "room.mha", patient_position="HFS")
    uploaded = upload_volume(
        api, session_id, (tmp_path / "room.mha").read_bytes(), kind="cbct", fmt="mha"
    )
    assert uploaded.status_code == 201, uploaded.text
    body = {"planning_ct_upload_id": ct_id, "cbct_upload_id": uploaded.json()["id"]}
    refused = _post(api, session_id, body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "isocentre_lps_mm"
    created = _post(api, session_id, {**body, "plan": {"rt_plan_instance_id": ids["rp"]}})
    assert created.status_code == 202, created.text
    job = wait_for(api.client.get, created.headers["location"], api.headers())
    assert job["status"] == "completed", job
    result = api.client.get(f"{created.headers['location']}/result", headers=api.headers()).json()
    check_result(result)
    document = result["document"]
    assert document["reference_point_source"].startswith("RT Plan ")
    frames = document["frames"]
    assert frames["relation"] == "placed by the treatment isocentre"
    assert frames["cbct_frame_of_reference_uid"] == OTHER_FRAME
    np.testing.assert_allclose(frames["planning_isocentre_lps_mm"], volumes.isocentre_lps_mm)
