"""The demo data's treatment fraction: a displaced CBCT whose registration runs at start-up.

One real in-process start with ``demo_data`` (the simulation takes seconds): the demo patient
gets a simulation day with its motion assessment and fraction 1 with a planning CT, a CBCT of
the anatomy displaced by LPS (1.5, -1.0, -4.0) mm and a registration job queued at seeding,
which the worker runs once the service is up. 4 mm inferior is beyond the 3 mm threshold on
the longitudinal axis only, so the result must flag repositioning for that axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from api.demo import DEMO_EXTERNAL_ID
from api.enums import RoleValues
from tests.api.conftest import make_settings, start_in_process
from tests.api.test_registrations import wait_for

DEMO_DISPLACEMENT_LPS_MM = (1.5, -1.0, -4.0)


def test_the_demo_fraction_is_registered_at_start_up_and_flagged(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data",
        demo_data=True,
        demo_binning=4,
        demo_duration_s=30.0,
        demo_fps=2.0,
        max_upload_bytes=50_000_000,
    )
    assert settings.demo_registration is True  # the default
    for api in start_in_process(settings):
        client, headers = api.client, api.headers(RoleValues.THERAPIST)
        patients = client.get(
            "/api/v1/patients", params={"external_id": DEMO_EXTERNAL_ID}, headers=headers
        ).json()["data"]
        assert len(patients) == 1
        assert patients[0]["is_demo"] is True
        sessions = client.get(
            f"/api/v1/patients/{patients[0]['id']}/sessions", headers=headers
        ).json()["data"]
        by_kind = {session["kind"]: session for session in sessions}
        assert sorted(by_kind) == ["fraction", "simulation"]
        fraction = by_kind["fraction"]
        assert fraction["fraction_number"] == 1
        assert fraction["patient_position"] == "HFS"

        volumes = client.get(f"/api/v1/sessions/{fraction['id']}/volumes", headers=headers).json()[
            "data"
        ]
        assert sorted(volume["kind"] for volume in volumes) == ["cbct", "planning_ct"]
        jobs = client.get(
            f"/api/v1/sessions/{fraction['id']}/registrations", headers=headers
        ).json()["data"]
        assert len(jobs) == 1
        assert jobs[0]["planning_ct_upload_id"] in {v["id"] for v in volumes}
        assert jobs[0]["cbct_upload_id"] in {v["id"] for v in volumes}

        location = f"/api/v1/registrations/{jobs[0]['id']}"
        job = wait_for(client.get, location, headers)
        assert job["status"] == "completed", job
        assert job["repositioning_required"] is True
        result = client.get(f"{location}/result", headers=headers).json()
        assert result["quality"] in ("good", "questionable")
        np.testing.assert_allclose(
            result["anatomy_displacement_lps_mm"], DEMO_DISPLACEMENT_LPS_MM, atol=0.5
        )
        np.testing.assert_allclose(
            result["couch_correction_lps_mm"], -np.array(DEMO_DISPLACEMENT_LPS_MM), atol=0.5
        )
        assert result["repositioning"]["required"] is True
        assert result["repositioning"]["exceeding_axes"] == ["longitudinal"]
        longitudinal = result["couch_correction_iec_support_mm"][1]
        assert abs(longitudinal) > result["repositioning"]["threshold_mm"] == 3.0

        # The worklist shows the fraction flagged and the simulation day awaiting review.
        worklist = client.get(
            "/api/v1/worklist", params={"patient": DEMO_EXTERNAL_ID}, headers=headers
        ).json()["data"]
        statuses = {item["kind"]: item["status"] for item in worklist}
        assert statuses == {
            "fraction": "flagged_for_repositioning",
            "simulation": "awaiting_review",
        }

        audit = client.get(
            "/api/v1/audit-events",
            params={"resource_id": job["id"]},
            headers=api.headers(RoleValues.PHYSICIST),
        ).json()["data"]
        changes = [event["action"] for event in audit if not event["action"].endswith(".read")]
        assert changes == ["registration.create", "registration.complete"]
        assert "registration_result.read" in {event["action"] for event in audit}
        assert audit[0]["actor_token_id"] is None  # made by the service itself
        assert audit[0]["detail"] == {"demo": True}
