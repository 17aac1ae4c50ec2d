"""Peak memory of the service while it refuses the corpus's large cases (run in a subprocess).

``python -m tests.api.memory_probe DATA_DIR MAX_DECODED_BYTES CASE_FILE...`` starts the app in
this process (no other test's allocations), warms every upload path up with small files (so that
imports and first-use caches count in the baseline), then posts each case file (a JSON
description next to its bytes) and prints one JSON line: the resident-set high-water mark before
and after, in bytes, and the status of every response.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np

from api.enums import RoleValues
from tests.api import bad_inputs
from tests.api.conftest import make_settings, start_in_process


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _post(client: Any, headers: dict[str, str], session_id: str, route: str, **kw: Any) -> Any:
    path = "uploads/fluoroscopy" if route == "fluoroscopy" else "uploads/volume"
    return client.post(f"/api/v1/sessions/{session_id}/{path}", headers=headers, **kw)


def _warm_up(client: Any, headers: dict[str, str], session_id: str, folder: Path) -> None:
    good_zip = bad_inputs.zip_of([("f1.png", bad_inputs.png(np.zeros((16, 16), np.uint16)))])
    series = bad_inputs.zip_of(
        [(f"s/{p.name}", p.read_bytes()) for p in bad_inputs.ct_series_files(folder)]
    )
    uploads = [
        ("fluoroscopy", bad_inputs.fluoro_dicom(folder), {"format": "dicom"}),
        ("fluoroscopy", bad_inputs.frame_mha(), {"format": "mha", **bad_inputs.EXPLICIT_GEOMETRY}),
        ("fluoroscopy", good_zip, {"format": "zip", **bad_inputs.EXPLICIT_GEOMETRY}),
        ("volume", bad_inputs.volume_mha(), {"format": "mha", "kind": "cbct"}),
        ("volume", series, {"format": "dicom_zip", "kind": "planning_ct"}),
    ]
    for _ in range(2):
        for route, content, form in uploads:
            response = _post(
                client,
                headers,
                session_id,
                route,
                files={"file": ("f", content, "application/octet-stream")},
                data={k: str(v) for k, v in form.items()},
            )
            assert response.status_code == 201, response.text


def main(argv: list[str]) -> None:
    data_dir, max_decoded, case_files = Path(argv[0]), int(argv[1]), [Path(a) for a in argv[2:]]
    settings = make_settings(
        data_dir, max_decoded_bytes=max_decoded, max_volume_voxels=1_000_000, max_frames=50
    )
    statuses: dict[str, int] = {}
    for api in start_in_process(settings):
        headers = api.headers(RoleValues.THERAPIST)
        patient = api.client.post(
            "/api/v1/patients",
            json={"external_id": bad_inputs.PATIENT_ID, "name": bad_inputs.PATIENT_NAME},
            headers=headers,
        ).json()
        session_id = api.create_session(patient["id"])["id"]
        _warm_up(api.client, headers, session_id, case_files[0].parent)
        before = _peak_bytes()
        for case_file in case_files:
            case = json.loads(case_file.read_text())
            response = _post(
                api.client,
                headers,
                session_id,
                case["route"],
                files={"file": ("f", case_file.with_suffix(".bin").read_bytes(), case["type"])},
                data={k: str(v) for k, v in case["form"].items()},
            )
            statuses[case["name"]] = response.status_code
        after = _peak_bytes()
    print(json.dumps({"before": before, "after": after, "statuses": statuses}))


if __name__ == "__main__":
    main(sys.argv[1:])
