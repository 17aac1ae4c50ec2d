"""DICOM Spatial Registration export: matrix direction, references, round trip."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest

from igrt.errors import ImageReadError, InvalidInputError
from igrt.imageio import read_volume, write_ct_series
from igrt.volume import Volume
from registration import (
    SPATIAL_REGISTRATION_SOP_CLASS_UID,
    PlanningReference,
    read_spatial_registration,
    register_cbct_to_ct,
    write_spatial_registration,
)
from registration.result import RigidRegistrationResult
from tests.dicom_validation import DicomValidator
from tests.registration._support import PHANTOM_ISOCENTRE_LPS_MM
from tests.registration.conftest import Simulate

SHIFT_LPS_MM = (2.0, -3.0, 5.0)
WHEN = datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def shifted(
    phantom_reference: PlanningReference, simulate_phantom_cbct: Simulate
) -> tuple[RigidRegistrationResult, Volume]:
    cbct = simulate_phantom_cbct(SHIFT_LPS_MM).cbct_hu
    result = register_cbct_to_ct(
        phantom_reference,
        cbct,
        patient_position="HFS",
        isocentre_lps_mm=PHANTOM_ISOCENTRE_LPS_MM,
        overlays=False,
        degrees_of_freedom=6,
    )
    return result, cbct


def test_matrix_maps_cbct_points_into_the_planning_frame(
    tmp_path: Path,
    phantom_ct: Volume,
    shifted: tuple[RigidRegistrationResult, Volume],
    dciodvfy: DicomValidator,
) -> None:
    result, cbct = shifted
    written = write_spatial_registration(
        result,
        tmp_path / "reg.dcm",
        planning_ct=phantom_ct,
        cbct=cbct,
        uid_seed="t1",
        content_datetime=WHEN,
    )
    read = read_spatial_registration(written.paths[0])
    assert read.sop_instance_uid == written.sop_instance_uids[0]
    assert len(read.items) == 2
    np.testing.assert_allclose(read.items[0].reference_from_item, np.eye(4), atol=0)
    np.testing.assert_allclose(read.ct_from_cbct, result.ct_from_cbct, atol=1e-9)
    np.testing.assert_allclose(read.cbct_from_ct, result.cbct_from_ct, atol=1e-9)
    # A planning-CT point, moved to where the CBCT shows it, maps back through the DICOM matrix.
    ct_point = np.append(PHANTOM_ISOCENTRE_LPS_MM + np.array([10.0, -20.0, 15.0]), 1.0)
    cbct_point = result.cbct_from_ct @ ct_point
    np.testing.assert_allclose(read.items[1].reference_from_item @ cbct_point, ct_point, atol=1e-6)
    # Sign: the anatomy moved by +SHIFT, so a CBCT point sits SHIFT beyond its CT point.
    np.testing.assert_allclose(cbct_point[:3] - ct_point[:3], SHIFT_LPS_MM, atol=0.6)
    assert read.items[1].matrix_type == "RIGID"
    dataset = pydicom.dcmread(written.paths[0])
    assert dataset.SOPClassUID == SPATIAL_REGISTRATION_SOP_CLASS_UID
    assert dataset.Modality == "REG"
    # No Frame of Reference UID on either phantom volume: generated, and said so.
    assert "FoR UID generated for CT" in dataset.ContentDescription
    dciodvfy(written.paths[0])


def test_references_both_dicom_series(
    tmp_path: Path,
    phantom_ct: Volume,
    shifted: tuple[RigidRegistrationResult, Volume],
    dciodvfy: DicomValidator,
) -> None:
    result, cbct = shifted
    ct_written = write_ct_series(
        phantom_ct,
        tmp_path / "ct",
        patient_id="P1",
        patient_name="Doe^Jane",
        uid_seed="ct",
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1",
    )
    cbct_written = write_ct_series(
        cbct,
        tmp_path / "cbct",
        patient_id="P1",
        patient_name="Doe^Jane",
        uid_seed="cbct",
        frame_of_reference_uid="1.2.826.0.1.3680043.8.498.2",
    )
    ct_loaded = read_volume(tmp_path / "ct")
    cbct_loaded = read_volume(tmp_path / "cbct")
    written = write_spatial_registration(
        result,
        tmp_path / "reg" / "reg.dcm",
        planning_ct=ct_loaded,
        cbct=cbct_loaded,
        uid_seed="t2",
        content_datetime=WHEN,
    )
    read = read_spatial_registration(written.paths[0])
    assert read.frame_of_reference_uid == ct_written.frame_of_reference_uid
    assert read.items[0].frame_of_reference_uid == ct_written.frame_of_reference_uid
    assert read.items[1].frame_of_reference_uid == cbct_written.frame_of_reference_uid
    assert set(read.items[0].referenced_sop_instance_uids) == set(ct_written.sop_instance_uids)
    assert set(read.items[1].referenced_sop_instance_uids) == set(cbct_written.sop_instance_uids)
    assert set(read.referenced_series_instance_uids) == {
        ct_written.series_instance_uid,
        cbct_written.series_instance_uid,
    }
    dataset = pydicom.dcmread(written.paths[0])
    assert dataset.StudyInstanceUID == ct_written.study_instance_uid
    # The CBCT is from another study: listed under Studies Containing Other Referenced Instances.
    other = dataset.StudiesContainingOtherReferencedInstancesSequence
    assert other[0].StudyInstanceUID == cbct_written.study_instance_uid
    np.testing.assert_allclose(read.ct_from_cbct, result.ct_from_cbct, atol=1e-9)
    # The patient's identity and the CT study's attributes come from the input series.
    ct_header = pydicom.dcmread(ct_written.paths[0], stop_before_pixels=True)
    assert (dataset.PatientID, str(dataset.PatientName)) == ("P1", "Doe^Jane")
    assert (dataset.StudyDate, dataset.StudyTime) == (ct_header.StudyDate, ct_header.StudyTime)
    assert warnings_about_identity(dciodvfy(written.paths[0])) == []


def warnings_about_identity(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "Patient ID" in w or "Patient's Name" in w]


def test_images_of_two_patients_or_another_caller_patient_are_refused(
    tmp_path: Path, phantom_ct: Volume, shifted: tuple[RigidRegistrationResult, Volume]
) -> None:
    result, cbct = shifted
    write_ct_series(phantom_ct, tmp_path / "ct", patient_id="P1", patient_name="A^B", uid_seed="a")
    write_ct_series(cbct, tmp_path / "cbct", patient_id="P2", patient_name="A^B", uid_seed="b")
    ct, other = read_volume(tmp_path / "ct"), read_volume(tmp_path / "cbct")
    with pytest.raises(InvalidInputError, match="different patients"):
        write_spatial_registration(result, tmp_path / "r1.dcm", planning_ct=ct, cbct=other)
    with pytest.raises(InvalidInputError, match="differs from the images"):
        write_spatial_registration(
            result, tmp_path / "r2.dcm", planning_ct=ct, cbct=cbct, patient_id="P9"
        )
    assert not (tmp_path / "r1.dcm").exists()
    assert not (tmp_path / "r2.dcm").exists()


def test_existing_file_and_wrong_files_are_refused(
    tmp_path: Path, phantom_ct: Volume, shifted: tuple[RigidRegistrationResult, Volume]
) -> None:
    result, cbct = shifted
    target = tmp_path / "reg.dcm"
    write_spatial_registration(result, target, planning_ct=phantom_ct, cbct=cbct)
    with pytest.raises(InvalidInputError):
        write_spatial_registration(result, target, planning_ct=phantom_ct, cbct=cbct)
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    with pytest.raises(ImageReadError):
        read_spatial_registration(tmp_path / "junk.dcm")
