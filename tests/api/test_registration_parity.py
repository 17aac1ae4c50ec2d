"""Offline parity: ``igrt register CT CBCT`` gives the same result document as the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from api.enums import RoleValues
from igrt.cli.main import main
from tests.api.conftest import InProcessApi, Volumes, make_settings, start_in_process
from tests.api.test_registrations import upload_volume, wait_for

_COMPARED_KEYS = (
    "anatomy_displacement_lps_mm",
    "couch_correction_lps_mm",
    "couch_correction_iec_support_mm",
    "uncertainty_mm",
)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[InProcessApi]:
    yield from start_in_process(make_settings(tmp_path / "data", ""))


def test_cli_and_api_registrations_agree(
    api: InProcessApi, volumes: Volumes, tmp_path: Path
) -> None:
    patient = api.create_patient()
    session_id = str(api.create_session(patient["id"], kind="fraction", fraction_number=1)["id"])
    ct = upload_volume(api, session_id, volumes.planning_mha, kind="planning_ct", fmt="mha")
    cbct = upload_volume(api, session_id, volumes.cbct_mha, kind="cbct", fmt="mha")
    assert ct.status_code == cbct.status_code == 201, (ct.text, cbct.text)
    isocentre = list(volumes.isocentre_lps_mm)
    created = api.client.post(
        f"/api/v1/sessions/{session_id}/registrations",
        json={
            "planning_ct_upload_id": ct.json()["id"],
            "cbct_upload_id": cbct.json()["id"],
            "degrees_of_freedom": 6,
            "isocentre_lps_mm": isocentre,
        },
        headers=api.headers(RoleValues.CONSOLE),
    )
    assert created.status_code == 202, created.text
    location = created.headers["location"]
    assert wait_for(api.client.get, location, api.headers())["status"] == "completed"
    from_api = api.client.get(f"{location}/result", headers=api.headers()).json()["document"]

    (tmp_path / "ct.mha").write_bytes(volumes.planning_mha)
    (tmp_path / "cbct.mha").write_bytes(volumes.cbct_mha)
    code = main(
        [
            "register",
            str(tmp_path / "ct.mha"),
            str(tmp_path / "cbct.mha"),
            "--out",
            str(tmp_path / "cli"),
            "--dof",
            "6",
            "--isocentre=" + ",".join(str(v) for v in isocentre),
        ]
    )
    assert code == 0
    from_cli = json.loads((tmp_path / "cli" / "result.json").read_text())
    for key in _COMPARED_KEYS:
        np.testing.assert_allclose(from_cli[key], from_api[key], atol=1e-6, err_msg=key)
    assert from_cli["quality"] == from_api["quality"]
    assert from_cli["repositioning"] == from_api["repositioning"]
