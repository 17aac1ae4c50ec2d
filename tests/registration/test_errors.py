"""Typed errors: every refusal names its cause with an igrt error type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from igrt.errors import (
    FrameOfReferenceError,
    GeometryError,
    IgrtError,
    InvalidInputError,
    ProcessingError,
)
from igrt.imageio import write_ct_series
from igrt.volume import Volume
from registration import (
    ClipBox,
    ClipBoxError,
    FrameOfReferenceMismatchError,
    NoOverlapError,
    NotConvergedError,
    PlanningReference,
    RegistrationProcessingError,
    prepare_planning_reference,
    register_cbct_to_ct,
    register_cbct_to_ct_files,
)
from registration.errors import foreign_errors_mapped
from tests.fresh_imports import modules_imported_by
from tests.registration.conftest import Simulate


def test_error_families() -> None:
    for error in (NoOverlapError, ClipBoxError, FrameOfReferenceMismatchError):
        assert issubclass(error, InvalidInputError)
        assert issubclass(error, ValueError)
    assert issubclass(FrameOfReferenceMismatchError, FrameOfReferenceError)
    for error in (NotConvergedError, RegistrationProcessingError):
        assert issubclass(error, ProcessingError)
        assert issubclass(error, IgrtError)


def test_volumes_that_do_not_overlap(phantom_ct: Volume, simulate_phantom_cbct: Simulate) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 0.0)).cbct_hu
    far = Volume(cbct.array, cbct.spacing_mm, cbct.origin_lps_mm + np.array([0.0, 0.0, 1000.0]))
    with pytest.raises(NoOverlapError, match="do not overlap"):
        register_cbct_to_ct(phantom_ct, far, patient_position="HFS")


def test_clip_box_outside_the_planning_ct(phantom_ct: Volume) -> None:
    outside = ClipBox((-120.0, -70.0, 200.0), (-20.0, 40.0, 290.0))
    with pytest.raises(ClipBoxError, match="outside the planning CT"):
        prepare_planning_reference(phantom_ct, clip_box=outside)


def test_clip_box_outside_the_cbct(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 0.0)).cbct_hu
    # The CBCT's grid moved 130 mm superior: only 1/9 of the clip box remains inside it.
    moved = Volume(cbct.array, cbct.spacing_mm, cbct.origin_lps_mm + np.array([0.0, 0.0, 130.0]))
    with pytest.raises(ClipBoxError, match="outside the CBCT"):
        register_cbct_to_ct(phantom_reference, moved, patient_position="HFS")


def test_clip_box_fixed_by_a_reference(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 0.0)).cbct_hu
    other = ClipBox((-100.0, -50.0, -20.0), (-30.0, 30.0, 50.0))
    with pytest.raises(ClipBoxError, match="fixed by the PlanningReference"):
        register_cbct_to_ct(phantom_reference, cbct, patient_position="HFS", clip_box=other)


def test_mismatched_frames_of_reference(
    phantom_ct: Volume, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 0.0)).cbct_hu
    ct = Volume(phantom_ct.array, phantom_ct.spacing_mm, phantom_ct.origin_lps_mm,
                frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1")  # fmt: skip
    day = Volume(cbct.array, cbct.spacing_mm, cbct.origin_lps_mm,
                 frame_of_reference_uid="1.2.826.0.1.3680043.8.498.2")  # fmt: skip
    # Another frame and no treatment isocentre to place the CBCT by: refused.
    with pytest.raises(FrameOfReferenceMismatchError, match="Frame of Reference .* isocentre"):
        register_cbct_to_ct(ct, day, patient_position="HFS")
    reference = prepare_planning_reference(ct)
    with pytest.raises(FrameOfReferenceMismatchError):
        register_cbct_to_ct(reference, day, patient_position="HFS")
    # One UID missing: nothing to compare, the registration runs.
    unlabelled = Volume(cbct.array, cbct.spacing_mm, cbct.origin_lps_mm)
    register_cbct_to_ct(reference, unlabelled, patient_position="HFS", overlays=False)


def test_nan_volume_is_refused() -> None:
    values = np.zeros((10, 10, 10), np.float32)
    values[5, 5, 5] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        Volume(values, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))


def test_not_a_volume_is_refused(phantom_ct: Volume) -> None:
    with pytest.raises(InvalidInputError, match="cbct must be"):
        register_cbct_to_ct(phantom_ct, np.zeros((4, 4, 4)), patient_position="HFS")  # type: ignore[arg-type]


def test_patient_position_is_required(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 0.0)).cbct_hu
    with pytest.raises(FrameOfReferenceError, match="patient position"):
        register_cbct_to_ct(phantom_reference, cbct)
    with pytest.raises(FrameOfReferenceError, match="unsupported patient position"):
        register_cbct_to_ct(phantom_reference, cbct, patient_position="LFP")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"degrees_of_freedom": 4}, "degrees_of_freedom"),
        ({"threads": 0}, "threads"),
        ({"isocentre_lps_mm": (0.0, float("nan"), 0.0)}, "isocentre_lps_mm"),
        ({"cbct_padding_value": float("inf")}, "cbct_padding_value"),
    ],
)
def test_invalid_options(
    phantom_reference: PlanningReference,
    simulate_phantom_cbct: Simulate,
    options: dict[str, object],
    field: str,
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 0.0)).cbct_hu
    with pytest.raises(InvalidInputError) as caught:
        register_cbct_to_ct(phantom_reference, cbct, patient_position="HFS", **options)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_missing_orientation_in_the_files(
    tmp_path: Path, phantom_ct: Volume, simulate_phantom_cbct: Simulate
) -> None:
    cbct = simulate_phantom_cbct((0.0, 0.0, 0.0)).cbct_hu
    small = Volume(cbct.array[::8, ::4, ::4], cbct.spacing_mm * [4, 4, 8], cbct.origin_lps_mm)
    written = write_ct_series(
        small, tmp_path / "cbct", patient_id="TEST", patient_name="Test^Patient", uid_seed="t"
    )
    for path in written.paths:
        dataset = pydicom.dcmread(path)
        del dataset.ImageOrientationPatient
        dataset.save_as(path)
    ct_path = tmp_path / "ct.mha"
    import SimpleITK as sitk

    sitk.WriteImage(phantom_ct.to_sitk(), str(ct_path))
    with pytest.raises(GeometryError, match="ImageOrientationPatient"):
        register_cbct_to_ct_files(ct_path, tmp_path / "cbct", patient_position="HFS")


def test_foreign_errors_are_mapped() -> None:
    with pytest.raises(RegistrationProcessingError, match="resampling failed: boom"), \
            foreign_errors_mapped("resampling"):  # fmt: skip
        raise RuntimeError("boom")
    with pytest.raises(ClipBoxError), foreign_errors_mapped("anything"):
        raise ClipBoxError("ours pass through")


def test_opencv_errors_are_mapped_and_entering_loads_no_opencv() -> None:
    import cv2

    with pytest.raises(RegistrationProcessingError, match="warping failed"), \
            foreign_errors_mapped("warping"):  # fmt: skip
        cv2.resize(np.zeros((0, 0), np.uint8), (0, 0))
    loaded = modules_imported_by(
        "from registration.errors import foreign_errors_mapped\n"
        "with foreign_errors_mapped('resampling'):\n    pass"
    )
    assert "cv2" not in loaded
