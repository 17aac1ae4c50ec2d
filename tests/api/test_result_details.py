"""What the review page draws from results: a registration's grey overlay layers, the tracked
dome curve of a motion assessment, and the assessment's margin suggestion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from api.enums import RoleValues
from igrt.margins import DEFAULT_RANDOM_SETUP_SD_MM, DEFAULT_SYSTEMATIC_SETUP_SD_MM
from igrt.protocol import DEFAULT_PROTOCOL
from igrt.tracking.results import DomeObservation, TrackingStatusValues
from registration.overlays import CHECKER_MM
from tests.api.conftest import InProcessApi, Volumes, make_settings, start_in_process
from tests.api.test_registrations import upload_volume, wait_for

PLANES = ("axial", "coronal", "sagittal")


# --- registration overlay layers ------------------------------------------------------------


def _decode(png: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> npt.NDArray[np.uint8]:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), flags)
    assert image is not None
    assert image.dtype == np.uint8
    return np.asarray(image)


def test_overlay_layers_compose_the_checkerboard_and_the_blend(
    api: InProcessApi, volumes: Volumes
) -> None:
    patient = api.create_patient()
    session_id = api.create_session(patient["id"], kind="fraction", fraction_number=1)["id"]
    ct = upload_volume(api, session_id, volumes.planning_mha, kind="planning_ct", fmt="mha")
    cbct = upload_volume(api, session_id, volumes.cbct_mha, kind="cbct", fmt="mha")
    assert ct.status_code == cbct.status_code == 201, (ct.text, cbct.text)
    created = api.client.post(
        f"/api/v1/sessions/{session_id}/registrations",
        json={
            "planning_ct_upload_id": ct.json()["id"],
            "cbct_upload_id": cbct.json()["id"],
            "isocentre_lps_mm": list(volumes.isocentre_lps_mm),
        },
        headers=api.headers(RoleValues.CONSOLE),
    )
    assert created.status_code == 202, created.text
    location = created.headers["location"]
    assert wait_for(api.client.get, location, api.headers())["status"] == "completed"
    described = api.client.get(f"{location}/result", headers=api.headers()).json()
    planes = {p["plane"]: p for p in described["document"]["overlays"]["planes"]}

    def layer(plane: str, kind: str, stage: str) -> npt.NDArray[np.uint8]:
        response = api.client.get(
            f"{location}/overlays/{plane}",
            params={"kind": kind, "stage": stage},
            headers=api.headers(RoleValues.THERAPIST),
        )
        assert response.status_code == 200, (plane, kind, stage, response.text)
        assert response.headers["content-type"] == "image/png"
        return _decode(response.content)

    for plane in PLANES:
        pixel_mm = planes[plane]["pixel_mm"]
        mismatch = {}
        cbct_layers = {}
        ct_layers = {}
        for stage in ("before", "after"):
            ct_grey = layer(plane, "ct", stage)
            cbct_bgra = layer(plane, "cbct", stage)
            checkerboard = layer(plane, "checkerboard", stage)
            blend_bgr = layer(plane, "blend", stage)
            # The CBCT layer carries its field of view as alpha: opaque where it has data,
            # transparent outside, where its grey is black.
            assert cbct_bgra.shape == (*ct_grey.shape, 4)
            cbct_grey, field_of_view = cbct_bgra[:, :, 0], cbct_bgra[:, :, 3]
            assert set(np.unique(field_of_view)) <= {0, 255}
            assert 0.2 < np.mean(field_of_view == 255) <= 1.0
            assert np.all(cbct_grey[field_of_view == 0] == 0)
            assert ct_grey.ndim == checkerboard.ndim == 2
            assert ct_grey.shape == cbct_grey.shape == checkerboard.shape
            assert list(ct_grey.shape) == planes[plane]["shape"]

            rows, columns = np.mgrid[0 : ct_grey.shape[0], 0 : ct_grey.shape[1]]
            squares = ((rows * pixel_mm // CHECKER_MM) + (columns * pixel_mm // CHECKER_MM)) % 2
            ct_squares = squares == 0
            assert 0.3 < ct_squares.mean() < 0.7
            # The two layers differ enough that a swapped or shifted pattern would show.
            assert np.mean(ct_grey != cbct_grey) > 0.2, (plane, stage)
            np.testing.assert_array_equal(checkerboard[ct_squares], ct_grey[ct_squares])
            np.testing.assert_array_equal(checkerboard[~ct_squares], cbct_grey[~ct_squares])
            # The blend: CT magenta (red and blue), CBCT green.
            assert blend_bgr.shape == (*ct_grey.shape, 3)
            np.testing.assert_array_equal(blend_bgr[:, :, 2], ct_grey)
            np.testing.assert_array_equal(blend_bgr[:, :, 0], ct_grey)
            np.testing.assert_array_equal(blend_bgr[:, :, 1], cbct_grey)

            ct_layers[stage], cbct_layers[stage] = ct_grey, cbct_grey
            mismatch[stage] = np.abs(ct_grey.astype(float) - cbct_grey.astype(float)).mean()
        # The CT stays put; the CBCT is resampled at the result, which aligns the anatomy.
        np.testing.assert_array_equal(ct_layers["before"], ct_layers["after"])
        assert not np.array_equal(cbct_layers["before"], cbct_layers["after"])
        assert mismatch["after"] < 0.7 * mismatch["before"], (plane, mismatch)

    for params, field in (({"kind": "difference"}, "kind"), ({"stage": "during"}, "stage")):
        bad = api.client.get(f"{location}/overlays/axial", params=params, headers=api.headers())
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"] == field


# --- the dome curve -------------------------------------------------------------------------


def _observation(
    columns: npt.ArrayLike,
    rows: npt.ArrayLike,
    status: TrackingStatusValues = TrackingStatusValues.TRACKED,
) -> DomeObservation:
    return DomeObservation(
        frame_index=0,
        time_s=0.0,
        status=status,
        confidence=0.9,
        apex_column=20.0,
        apex_row=10.0,
        apex_u_mm=0.0,
        apex_v_mm=0.0,
        si_isocentre_mm=0.0,
        dome_columns=np.asarray(columns, dtype=np.float64),
        dome_rows=np.asarray(rows, dtype=np.float64),
        gantry_deg=0.0,
    )


def test_dome_curve_is_thinned_to_17_points_with_both_ends() -> None:
    columns = np.arange(41, dtype=np.float64) + 0.04
    rows = 10.0 + 0.01 * (columns - 20.0) ** 2
    curve = _observation(columns, rows).dome_curve_px()
    assert len(curve) == 17
    assert curve[0] == [0.0, 14.0]
    assert curve[-1] == [40.0, 14.0]
    picked = [round(c) for c, _ in curve]
    assert picked == sorted(set(picked))  # distinct points, in order along the curve
    for column, row in curve:
        index = round(column)
        assert column == round(columns[index], 1)
        assert row == round(rows[index], 1)
    assert _observation(columns, rows).to_dict()["dome_curve_px"] == curve
    assert len(_observation(columns, rows).dome_curve_px(max_points=5)) == 5


def test_dome_curve_of_few_gappy_or_lost_points() -> None:
    assert _observation([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).dome_curve_px() == [
        [1.0, 4.0],
        [2.0, 5.0],
        [3.0, 6.0],
    ]
    gappy = _observation([1.0, np.nan, 3.0, 4.0], [4.0, 5.0, np.inf, 7.0]).dome_curve_px()
    assert gappy == [[1.0, 4.0], [4.0, 7.0]]
    assert _observation([], []).dome_curve_px() == []
    assert _observation([np.nan], [np.nan]).dome_curve_px() == []
    lost = _observation([1.0, 2.0], [3.0, 4.0], TrackingStatusValues.LOST)
    assert lost.dome_curve_px() == []
    assert lost.to_dict()["dome_curve_px"] == []


def _assess(api: InProcessApi, dicom: bytes, external_id: str) -> dict[str, Any]:
    patient = api.create_patient(external_id)
    session_id = api.create_session(patient["id"])["id"]
    upload = api.upload(session_id, dicom)
    assert upload.status_code == 201, upload.text
    response = api.client.post(
        f"/api/v1/sessions/{session_id}/motion-assessments",
        json={"upload_id": upload.json()["id"]},
        headers=api.headers(RoleValues.CONSOLE),
    )
    assert response.status_code == 201, response.text
    again = api.client.get(response.headers["location"], headers=api.headers())
    assert again.json() == response.json()  # stored as returned
    return dict(response.json())


def test_a_short_assessment_has_dome_curves_but_no_margins(
    api: InProcessApi, make_dicom: Callable[..., bytes]
) -> None:
    assessment = _assess(api, make_dicom("MRN-CURVE"), "MRN-CURVE")
    track = assessment["track"]
    assert len(track) == 10
    for observation in track:
        assert observation["status"] == "tracked"
        curve = np.array(observation["dome_curve_px"], dtype=np.float64)
        assert curve.ndim == 2
        assert 5 <= len(curve) <= 17
        assert curve.shape[1] == 2
        assert np.all((curve >= 0) & (curve < 256))  # on the 256 x 256 panel
        assert np.all(np.diff(curve[:, 0]) > 0)  # left to right
        assert np.allclose(curve * 10, np.round(curve * 10))  # 0.1 px
        # The dome is convex upwards (rows grow downwards): the apex is the curve's top.
        top = int(np.argmin(curve[:, 1]))
        assert 0 < top < len(curve) - 1
        assert abs(curve[top, 0] - observation["apex_column"]) <= 8.0
        assert abs(curve[top, 1] - observation["apex_row"]) <= 1.0
    # The curve moves with the tracked apex.
    first = np.array(track[0]["dome_curve_px"])
    last = np.array(track[-1]["dome_curve_px"])
    apex_shift = track[-1]["apex_row"] - track[0]["apex_row"]
    assert abs(apex_shift) > 3.0
    assert np.array_equal(first[:, 0], last[:, 0])
    np.testing.assert_allclose(last[:, 1] - first[:, 1], apex_shift, atol=0.5)

    # 2 s of breathing is no trustworthy analysis: no margins, and the reason says why.
    result = assessment["result"]
    assert result["margins"] is None
    assert "not trustworthy" in result["margins_reason"]


@pytest.fixture
def big_api(tmp_path: Path) -> Iterator[InProcessApi]:
    """The app with room for the 60-frame recording."""
    yield from start_in_process(make_settings(tmp_path / "data", max_upload_bytes=50_000_000))


def test_margins_follow_the_van_herk_recipe(
    big_api: InProcessApi, make_breathing_dicom: Callable[..., bytes]
) -> None:
    assessment = _assess(big_api, make_breathing_dicom(), "MRN-TEST-0001")
    assert assessment["recommendation"] == "breath_hold_trial_next"
    result = assessment["result"]
    assert "margins_reason" not in result
    margins = result["margins"]
    protocol = DEFAULT_PROTOCOL
    statistic = protocol.excursion_statistic.value
    excursion = result["analysis"][f"excursion_{statistic}_mm"]
    assert excursion == pytest.approx(12.0, abs=1.5)

    systematic, random = DEFAULT_SYSTEMATIC_SETUP_SD_MM, DEFAULT_RANDOM_SETUP_SD_MM
    a = protocol.van_herk_systematic_coefficient
    b = protocol.van_herk_random_coefficient
    motion_sd = excursion / (2.0 * math.sqrt(2.0))
    total = math.sqrt(random**2 + motion_sd**2)
    penumbra = protocol.van_herk_penumbra_sd_mm

    def full(sd_mm: float) -> float:  # van Herk's full random term
        return 1.64 * (math.hypot(sd_mm, penumbra) - penumbra)

    recipe = a * systematic + full(total)
    assert margins["ptv_margin_linear_recipe_mm"] == pytest.approx(a * systematic + b * total)
    assert margins["direction"] == "SI"
    assert margins["excursion_statistic"] == statistic
    assert margins["excursion_mm"] == pytest.approx(excursion)
    assert margins["systematic_setup_sd_mm"] == systematic
    assert margins["random_setup_sd_mm"] == random
    assert margins["motion_sd_mm"] == pytest.approx(motion_sd)
    assert margins["total_random_sd_mm"] == pytest.approx(total)
    assert margins["setup_margin_mm"] == pytest.approx(a * systematic + full(random))
    assert margins["internal_margin_mm"] == pytest.approx(full(total) - full(random))
    assert margins["ptv_margin_recipe_mm"] == pytest.approx(recipe)
    assert margins["ptv_margin_mm"] == pytest.approx(max(recipe, protocol.min_ptv_margin_mm))
    assert margins["minimum_applied"] is (recipe < protocol.min_ptv_margin_mm)
    assert margins["protocol_version"] == assessment["protocol_version"]
    assert margins["rationale"]
    assert all(isinstance(line, str) and line for line in margins["rationale"])
    # 12 mm of breathing with the default setup model: about 5.7 mm, above the 5 mm floor.
    assert 5.0 < margins["ptv_margin_mm"] < 7.0
