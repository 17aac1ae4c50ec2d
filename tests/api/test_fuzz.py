"""Property-based fuzz of the JSON and form inputs: any input gets a 2xx or a 4xx, never 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.enums import RoleValues
from tests.api.conftest import InProcessApi, make_settings, start_in_process

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["nan", "inf", "-1", "0", "1e400", "xvi", "raw", "dicom", "zip", "4"]),
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
)
FORM_FIELDS = [
    "format",
    "geometry_preset",
    "binning",
    "sad_mm",
    "sdd_mm",
    "pixel_pitch_u_mm",
    "pixel_pitch_v_mm",
    "detector_offset_u_mm",
    "gantry_deg",
    "fps",
    "intensity",
    "n_frames",
    "rows",
    "columns",
]
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # deterministic: the same examples on every run
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessApi, str]]:
    data_dir = Path(tmp_path_factory.mktemp("fuzz")) / "data"
    for api in start_in_process(make_settings(data_dir)):
        patient = api.create_patient("MRN-FUZZ")
        session = api.create_session(patient["id"])
        yield api, session["id"]


def _assert_not_5xx(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["code"]


@FUZZ
@given(body=JSON)
def test_patient_bodies(stack: tuple[InProcessApi, str], body: Any) -> None:
    api, _ = stack
    _assert_not_5xx(api.client.post("/api/v1/patients", json=body, headers=api.headers()))


@FUZZ
@given(body=JSON)
def test_session_bodies(stack: tuple[InProcessApi, str], body: Any) -> None:
    api, session_id = stack
    patient_id = api.client.get("/api/v1/patients", headers=api.headers()).json()["data"][0]["id"]
    response = api.client.post(
        f"/api/v1/patients/{patient_id}/sessions", json=body, headers=api.headers()
    )
    _assert_not_5xx(response)
    response = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments", json=body, headers=api.headers()
    )
    _assert_not_5xx(response)


@FUZZ
@given(
    form=st.dictionaries(st.sampled_from(FORM_FIELDS), FIELD_VALUES, max_size=8),
    content=st.binary(max_size=300),
)
def test_upload_forms(
    stack: tuple[InProcessApi, str], form: dict[str, str], content: bytes
) -> None:
    api, session_id = stack
    response = api.client.post(
        f"/api/v1/sessions/{session_id}/uploads/fluoroscopy",
        files={"file": ("x.bin", content, "application/octet-stream")},
        data=form,
        headers=api.headers(RoleValues.CONSOLE),
    )
    _assert_not_5xx(response)


@FUZZ
@given(
    path=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"),
        max_size=80,
    )
)
def test_ids_in_paths(stack: tuple[InProcessApi, str], path: str) -> None:
    api, _ = stack
    for template in ("/api/v1/patients/{}", "/api/v1/uploads/{}/file", "/api/v1/sessions/{}"):
        _assert_not_5xx(api.client.get(template.format(path), headers=api.headers()))


@pytest.mark.parametrize(
    "text",
    [
        b'{"kind": "fraction", "fraction_number": NaN}',
        b'{"kind": "fraction", "fraction_number": Infinity}',
        b'{"kind": "simulation", "protocol_version": 1e999}',
        b"[" * 5000,
        rb'{"kind": "\ud800"}',
    ],
)
def test_raw_json_oddities(stack: tuple[InProcessApi, str], text: bytes) -> None:
    api, _ = stack
    patient_id = api.client.get("/api/v1/patients", headers=api.headers()).json()["data"][0]["id"]
    response = api.client.post(
        f"/api/v1/patients/{patient_id}/sessions",
        content=text,
        headers={**api.headers(), "content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text
