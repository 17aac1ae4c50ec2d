"""kV/MV pair registration over HTTP (``POST /sessions/{id}/pair-registrations``), as
``igrt register-pair``: a received RT Image and a fluoroscopy upload's frame registered to DRRs
of the planning CT, the result stored and audited.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.enums import RoleValues
from fixtures.motion import BreathingMotionModel
from fixtures.phantom import make_phantom
from igrt.geometry import xvi_geometry
from igrt.imageio import write_fluoro_dicom, write_volume_mha
from igrt.sequence import FluoroSequence, IntensityValues
from tests.api.conftest import PATIENT_ID, InProcessApi, make_settings, start_in_process
from tests.api.test_registrations import upload_volume
from tests.api.test_registrations_plan import receive
from tests.igrt.imageio.builders import write_rt_image
from tests.registration._support import PHANTOM_ISOCENTRE_LPS_MM, simulate_kv_view

SHIFT_LPS_MM = (0.0, 0.0, 5.0)  # 5 mm superior
ISOCENTRE = [float(v) for v in PHANTOM_ISOCENTRE_LPS_MM]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The phantom CT, a kV frame at gantry 0 (fluoroscopy DICOM) and one at 90 (RT Image)."""
    folder = tmp_path_factory.mktemp("pair_http")
    model = BreathingMotionModel.from_anatomy(make_phantom())
    write_volume_mha(model.anatomy.ct_hu, folder / "ct.mha", patient_position="HFS")
    front, side = (
        simulate_kv_view(model, xvi_geometry(binning=4, gantry_deg=g), PHANTOM_ISOCENTRE_LPS_MM,
                         SHIFT_LPS_MM)
        for g in (0.0, 90.0)
    )  # fmt: skip
    sequence = FluoroSequence(
        np.round(front.image)[np.newaxis].astype(np.uint16), [0.0], (front.geometry,),
        IntensityValues.RAW,
    )  # fmt: skip
    write_fluoro_dicom(
        sequence, folder / "front.dcm", patient_id=PATIENT_ID, patient_name="Test^Patient"
    )
    geometry = side.geometry
    first_u_mm, first_v_mm = geometry.detector_mm_from_pixel(0, 0)
    write_rt_image(
        folder / "side.dcm",
        np.round(side.image).astype(np.uint16),
        sid_mm=geometry.sdd_mm,
        sad_mm=geometry.sad_mm,
        spacing_row_col_mm=(geometry.pixel_pitch_mm[1], geometry.pixel_pitch_mm[0]),
        position_mm=(float(first_u_mm), -float(first_v_mm)),
        gantry_deg=0.0,  # the treatment beam's; the kV source was at 90
    )
    return {"ct": folder / "ct.mha", "front": folder / "front.dcm", "side": folder / "side.dcm"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[InProcessApi]:
    """The app with room for the phantom CT (14 MB)."""
    yield from start_in_process(make_settings(tmp_path / "data", max_upload_bytes=50_000_000))


@pytest.fixture
def pair(api: InProcessApi, files: dict[str, Path]) -> tuple[InProcessApi, str, dict[str, Any]]:
    """A fraction with the planning CT, the front frame uploaded and the side RT Image received."""
    patient = api.create_patient()
    session_id = str(api.create_session(patient["id"], kind="fraction", fraction_number=1)["id"])
    ct = upload_volume(api, session_id, files["ct"].read_bytes(), kind="planning_ct", fmt="mha")
    assert ct.status_code == 201, ct.text
    front = api.upload(session_id, files["front"].read_bytes())
    assert front.status_code == 201, front.text
    side = receive(api, session_id, files["side"], "rt_image")
    body = {
        "planning_ct_upload_id": ct.json()["id"],
        "views": [
            {"upload_id": front.json()["id"], "modality": "kv"},
            {"rt_image_instance_id": side, "modality": "kv", "kv_source_deg": 90.0},
        ],
        "isocentre_lps_mm": ISOCENTRE,
    }
    return api, session_id, body


def _post(api: InProcessApi, session_id: str, body: dict[str, Any]) -> Any:
    return api.client.post(
        f"/api/v1/sessions/{session_id}/pair-registrations",
        json=body,
        headers=api.headers(RoleValues.CONSOLE),
    )


def test_a_pair_is_registered_to_drrs_and_the_result_kept(
    pair: tuple[InProcessApi, str, dict[str, Any]],
) -> None:
    api, session_id, body = pair
    response = _post(api, session_id, body)
    assert response.status_code == 201, response.text
    created = response.json()
    document = created["result"]
    assert document["kind"] == "pair_2d"
    assert document["isocentre_source"] == "given"
    assert created["quality"] == document["quality"] != "failed"
    # 5 mm superior anatomy: the couch moves 5 mm towards the foot (IEC Y -5).
    np.testing.assert_allclose(document["couch_correction_iec_support_mm"], (0, -5, 0), atol=1.0)
    assert created["repositioning_required"] is True
    assert len(document["views"]) == 2
    location = response.headers["location"]
    assert location == f"/api/v1/pair-registrations/{created['id']}"
    assert api.client.get(location, headers=api.headers()).json() == created
    listed = api.client.get(
        f"/api/v1/sessions/{session_id}/pair-registrations", headers=api.headers()
    ).json()
    assert [row["id"] for row in listed["data"]] == [created["id"]]
    events = api.client.get(
        "/api/v1/audit-events",
        params={"resource_id": created["id"]},
        headers=api.headers(RoleValues.PHYSICIST),
    ).json()["data"]
    actions = [event["action"] for event in events]
    assert "pair_registration.create" in actions
    assert "pair_registration.read" in actions


def test_bad_pair_requests_name_the_field(
    pair: tuple[InProcessApi, str, dict[str, Any]],
) -> None:
    api, session_id, body = pair
    front, side = body["views"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**body, "views": [front]}, 422, "views"),
        ({**body, "isocentre_lps_mm": None}, 422, ""),  # neither isocentre nor plan
        ({**body, "views": [{**front, "kv_source_deg": 90.0}, side]}, 422, "views.0"),
        ({**body, "views": [{**front, "frame_index": 3}, side]}, 422, "views.0.frame_index"),
        ({**body, "views": [front, {**side, "rt_image_instance_id": "x"}]}, 404, "views.1"),
        ({**body, "views": [front, {**side, "kv_source_deg": 0.0}]}, 422, ""),  # parallel beams
        ({**body, "plan": {"rt_plan_instance_id": "x"}}, 422, ""),  # isocentre and plan
    ]
    for case, status, field in cases:
        response = _post(api, session_id, case)
        assert response.status_code == status, (case, response.text)
        assert response.json().get("field", "").startswith(field), response.json()
    listed = api.client.get(
        f"/api/v1/sessions/{session_id}/pair-registrations", headers=api.headers()
    ).json()
    assert listed["count"] == 0
