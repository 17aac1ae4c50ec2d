"""The result object: JSON, overlays, and the files entry point."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from igrt.imageio import write_volume_mha
from igrt.volume import Volume
from registration import (
    OverlayImages,
    PlaneValues,
    PlanningReference,
    QualityValues,
    register_cbct_to_ct,
    register_cbct_to_ct_files,
)
from tests.registration._support import PHANTOM_ISOCENTRE_LPS_MM
from tests.registration.conftest import Simulate


def test_to_dict_is_json_and_complete(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((4.0, -2.0, 6.0), (1.0, -1.0, 0.5)).cbct_hu
    result = register_cbct_to_ct(
        phantom_reference, cbct, patient_position="HFS", degrees_of_freedom=6
    )
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["quality"] == result.quality.value
    for key in (
        "anatomy_displacement_lps_mm",
        "anatomy_displacement_iec_support_mm",
        "couch_correction_lps_mm",
        "couch_correction_iec_support_mm",
        "anatomy_rotation_lps_deg",
        "couch_rotation_correction_iec_support_deg",
        "uncertainty_mm",
        "ncc_before",
        "ncc_after",
        "iterations",
        "stop_condition",
        "repositioning",
        "dome_check",
        "clip_box",
        "cbct_from_ct",
        "ct_from_cbct",
    ):
        assert summary[key] is not None, key
    assert summary["couch_correction_lps_mm"] == pytest.approx(
        [-v for v in summary["anatomy_displacement_lps_mm"]]
    )
    assert [level["name"] for level in summary["levels"]] == [
        "search 4 mm",
        "refine 4 mm",
        "refine 2 mm",
        "refine 1 mm",
    ]
    assert summary["iterations"] == sum(level["iterations"] for level in summary["levels"])
    assert 0.0 < summary["uncertainty_mm"] < 0.5


def test_failed_result_serialises_without_numbers(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 0.0)).cbct_hu
    noise = np.random.default_rng(1).normal(0.0, 300.0, cbct.array.shape).astype(np.float32)
    result = register_cbct_to_ct(phantom_reference, cbct.with_array(noise), patient_position="HFS")
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["quality"] == QualityValues.FAILED.value
    assert summary["anatomy_displacement_lps_mm"] is None
    assert summary["couch_correction_iec_support_mm"] is None
    assert summary["repositioning"] is None
    assert summary["reasons"]


def test_overlays_in_three_planes(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 8.0)).cbct_hu
    result = register_cbct_to_ct(
        phantom_reference, cbct, patient_position="HFS", isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM
    )
    overlays = result.overlays
    assert overlays is not None
    assert [image.plane for image in overlays.after] == list(PlaneValues)
    for plane in PlaneValues:
        for stage in ("before", "after"):
            images = overlays.image(plane, stage=stage)
            assert images.checkerboard.dtype == np.uint8
            assert images.blend.shape == (*images.checkerboard.shape, 3)
            _assert_pngs_hold_the_pixels(images)

    # After registration the CT and the CBCT agree better than before (blend channels).
    def mismatch(stage: str) -> float:
        blend = overlays.image(PlaneValues.CORONAL, stage=stage).blend.astype(float)
        return float(np.mean(np.abs(blend[..., 0] - blend[..., 1])))

    assert mismatch("after") < 0.5 * mismatch("before")
    coronal = overlays.image("coronal")
    assert coronal.row_direction_lps == (0.0, 0.0, -1.0)  # head at the top
    with pytest.raises(ValueError, match="kind must be one of"):
        coronal.png("difference")


def _assert_pngs_hold_the_pixels(images: OverlayImages) -> None:
    """Every kind's PNG decodes (OpenCV) to the image's own pixels."""

    def decoded(kind: str) -> np.ndarray:
        png = images.png(kind)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)

    np.testing.assert_array_equal(decoded("checkerboard"), images.checkerboard)
    np.testing.assert_array_equal(decoded("ct"), images.ct)
    np.testing.assert_array_equal(decoded("blend")[..., ::-1], images.blend)  # OpenCV: BGR
    cbct_bgra = decoded("cbct")
    np.testing.assert_array_equal(cbct_bgra[..., 0], images.cbct)
    np.testing.assert_array_equal(cbct_bgra[..., 3] == 255, images.cbct_field_of_view)


def test_files_entry_point(
    tmp_path: Path, phantom_ct: Volume, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 5.0, 0.0)).cbct_hu
    ct_path = write_volume_mha(phantom_ct, tmp_path / "ct.mha")
    cbct_path = write_volume_mha(cbct, tmp_path / "cbct.mha")
    result = register_cbct_to_ct_files(ct_path, cbct_path, patient_position="HFS", overlays=False)
    assert result.anatomy_displacement is not None
    np.testing.assert_allclose(result.anatomy_displacement.lps_mm, (0.0, 5.0, 0.0), atol=0.25)
