"""The bad-input corpus (:mod:`tests.api.bad_inputs`) posted through the upload routes.

Every case gets its typed 4xx Problem JSON naming what is wrong; nothing is stored (no row, no
file, no staging leftover) and the service stays healthy; and the cases that would make a
careless reader allocate hundreds of MB keep the server's peak memory under twice the
configured decoded-size limit (measured in a subprocess).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.enums import RoleValues
from tests.api import bad_inputs
from tests.api.conftest import InProcessApi, make_settings, start_in_process

MAX_DECODED_BYTES = 16 * 1024 * 1024
"""The decoded-size limit of the corpus's service: small, so that the bombs are cheap to make."""

MAX_VOLUME_VOXELS = 1_000_000
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CASE_NAMES = [c.name for c in bad_inputs.corpus(Path(), max_decoded_bytes=MAX_DECODED_BYTES)]


@dataclass
class CorpusService:
    api: InProcessApi
    session_id: str
    folder: Path

    def post(self, case: bad_inputs.BadInput, content: bytes) -> Any:
        form = dict(case.form)
        if case.extra.get("raw_columns_from_size"):
            content += b"\x00" * (len(content) % 2)
            form["columns"] = len(content) // 2
        path = "uploads/fluoroscopy" if case.route == "fluoroscopy" else "uploads/volume"
        # Consoles send fluoroscopy and CBCTs; a planning CT comes from a person (issue 12).
        role = RoleValues.THERAPIST if form.get("kind") == "planning_ct" else RoleValues.CONSOLE
        return self.api.client.post(
            f"/api/v1/sessions/{self.session_id}/{path}",
            files={"file": ("upload", content, case.content_type)},
            data={k: str(v) for k, v in form.items()},
            headers=self.api.headers(role),
        )

    def stored(self) -> tuple[int, int, list[str]]:
        """Rows of uploads and volumes of the session, and every file of the store."""
        client, headers = self.api.client, self.api.headers(RoleValues.THERAPIST)
        uploads = client.get(f"/api/v1/sessions/{self.session_id}/uploads", headers=headers)
        volumes = client.get(f"/api/v1/sessions/{self.session_id}/volumes", headers=headers)
        store = self.api.settings.store_dir
        files = sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())
        return uploads.json()["count"], volumes.json()["count"], files


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-inputs")


@pytest.fixture(scope="module")
def corpus_service(
    tmp_path_factory: pytest.TempPathFactory, corpus_folder: Path
) -> Iterator[CorpusService]:
    settings = make_settings(
        tmp_path_factory.mktemp("corpus-service") / "data",
        max_decoded_bytes=MAX_DECODED_BYTES,
        max_volume_voxels=MAX_VOLUME_VOXELS,
        max_frames=50,
    )
    for api in start_in_process(settings):
        headers = api.headers(RoleValues.THERAPIST)
        patient = api.client.post(
            "/api/v1/patients",
            json={"external_id": bad_inputs.PATIENT_ID, "name": bad_inputs.PATIENT_NAME},
            headers=headers,
        ).json()
        service = CorpusService(api, api.create_session(patient["id"])["id"], corpus_folder)
        # One good upload per route: what is already stored must survive every bad one.
        good = [
            ("uploads/fluoroscopy", bad_inputs.fluoro_dicom(corpus_folder), {"format": "dicom"}),
            ("uploads/volume", bad_inputs.volume_mha(), {"format": "mha", "kind": "cbct"}),
        ]
        for path, content, form in good:
            response = api.client.post(
                f"/api/v1/sessions/{service.session_id}/{path}",
                files={"file": ("good", content, "application/octet-stream")},
                data=form,
                headers=headers,
            )
            assert response.status_code == 201, response.text
        yield service


def _case(name: str, folder: Path) -> bad_inputs.BadInput:
    cases = {c.name: c for c in bad_inputs.corpus(folder, max_decoded_bytes=MAX_DECODED_BYTES)}
    return cases[name]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_refused_and_nothing_is_stored(
    corpus_service: CorpusService, name: str
) -> None:
    case = _case(name, corpus_service.folder)
    before = corpus_service.stored()
    response = corpus_service.post(case, case.content())
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith("application/json")
    problem = response.json()
    assert problem["status"] == case.status
    assert problem["field"] == "file", problem
    assert problem["request_id"] == response.headers["x-request-id"]
    for word in case.names:
        assert word in problem["detail"], problem
    assert "staged-" not in problem["detail"], problem
    assert "/tmp/" not in problem["detail"], problem
    if case.status == 409:
        assert problem["code"] == "patient_mismatch"
    for secret in bad_inputs.SECRET_FILES:
        assert secret not in str(corpus_service.stored()[2])
    assert corpus_service.stored() == before, "a refused upload stored something"
    temp = corpus_service.api.settings.temp_dir
    assert not temp.exists() or list(temp.iterdir()) == [], "staging files left behind"
    assert corpus_service.api.client.get("/healthz").status_code == 200


def test_every_finding_has_a_case() -> None:
    findings = {c.finding for c in bad_inputs.corpus(Path(), max_decoded_bytes=1)}
    assert {"1", "2", "3", "4", "6", "7"} <= findings


def test_large_cases_keep_peak_memory_under_twice_the_decoded_limit(
    corpus_folder: Path, tmp_path: Path
) -> None:
    cases = [
        c for c in bad_inputs.corpus(corpus_folder, max_decoded_bytes=MAX_DECODED_BYTES) if c.memory
    ]
    case_files = []
    for index, case in enumerate(cases):
        description = tmp_path / f"case{index:02d}.json"
        description.with_suffix(".bin").write_bytes(case.content())
        description.write_text(
            json.dumps(
                {
                    "name": case.name,
                    "route": case.route,
                    "form": case.form,
                    "type": case.content_type,
                }
            )
        )
        case_files.append(str(description))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.api.memory_probe",
            str(tmp_path / "data"),
            str(MAX_DECODED_BYTES),
            *case_files,
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {c.name: c.status for c in cases}
    assert report["statuses"] == expected
    growth = report["after"] - report["before"]
    assert growth < 2 * MAX_DECODED_BYTES, (
        f"peak resident memory grew by {growth / 2**20:.1f} MiB refusing {len(cases)} large "
        f"cases; the limit is 2 x {MAX_DECODED_BYTES / 2**20:.0f} MiB"
    )
