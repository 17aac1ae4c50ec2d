"""The receiver against pynetdicom's SCU on 127.0.0.1: storage, filing, quarantine, refusals."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import func, select

from api.db.models import DicomInstance, DicomQuarantineItem, MotionAssessment, Upload, VolumeUpload
from api.dicom.receiver import DicomReceiver, Status
from tests.api.conftest import PATIENT_ID
from tests.api.dicom.conftest import Clinic, ct_files, identify, rt_files, send

pytestmark = pytest.mark.shared_data


def _rows(receiver: DicomReceiver, model: Any) -> list[Any]:
    with receiver.service.sessions() as db:
        return list(db.scalars(select(model)))


def _count(receiver: DicomReceiver, model: Any) -> int:
    with receiver.service.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_echo_is_answered(receiver: DicomReceiver) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="XVI")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="IGRT")
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == Status.SUCCESS


def test_the_real_j2k_series_as_it_is_goes_to_the_quarantine(
    receiver: DicomReceiver, shared_data: Path
) -> None:
    files = ct_files(shared_data)
    assert send(receiver.port, files, as_stored=True) == [Status.SUCCESS] * len(files)
    held = _rows(receiver, DicomQuarantineItem)
    assert len(held) == len(files)
    assert {row.reason_code for row in held} == {"unknown_patient"}
    assert {row.transfer_syntax_uid for row in held} == {"1.2.840.10008.1.2.4.90"}
    assert _count(receiver, DicomInstance) == 0
    # Stored byte for byte: the dataset after the file meta is the file's.
    for row in held:
        stored = receiver.store.path(row.stored_path).read_bytes()
        source = next(p for p in files if p.name.endswith(row.sop_instance_uid))
        original = source.read_bytes()
        offset = len(original) - len(pydicom.dcmread(source).PixelData)
        assert stored.endswith(original[offset:])


def test_a_known_patients_ct_series_is_filed_and_becomes_a_planning_ct(
    receiver: DicomReceiver, clinic: Clinic, identified_ct: list[Path]
) -> None:
    assert send(receiver.port, identified_ct) == [Status.SUCCESS] * len(identified_ct)
    rows = _rows(receiver, DicomInstance)
    assert len(rows) == len(identified_ct)
    assert {row.session_id for row in rows} == {clinic.rt_simulation}
    assert receiver.processor.wait_idle(120)
    rows = _rows(receiver, DicomInstance)
    assert {row.processing_status for row in rows} == {"done"}, rows[0].processing_reason
    volumes = _rows(receiver, VolumeUpload)
    assert len(volumes) == 1
    assert volumes[0].kind == "planning_ct"
    assert volumes[0].session_id == clinic.rt_simulation
    assert volumes[0].geometry["size_ijk"] == [512, 512, len(identified_ct)]
    assert {row.volume_upload_id for row in rows} == {volumes[0].id}


def test_the_same_series_from_a_treatment_sender_is_a_cbct_of_the_fraction(
    receiver: DicomReceiver, clinic: Clinic, identified_ct: list[Path]
) -> None:
    assert set(send(receiver.port, identified_ct[:5], calling="XVI")) == {Status.SUCCESS}
    assert receiver.processor.wait_idle(120)
    (volume,) = _rows(receiver, VolumeUpload)
    assert (volume.kind, volume.session_id) == ("cbct", clinic.rt_fraction)


def test_rt_plan_and_structures_follow_to_the_simulation_session(
    receiver: DicomReceiver, clinic: Clinic, shared_data: Path
) -> None:
    files = rt_files(shared_data)
    statuses = send(receiver.port, [files["RP"], files["RS"]])
    assert statuses == [Status.SUCCESS, Status.SUCCESS]
    rows = _rows(receiver, DicomInstance)
    assert sorted(row.kind for row in rows) == ["rt_plan", "rt_struct"]
    assert {row.session_id for row in rows} == {clinic.rt_simulation}
    assert {row.processing_status for row in rows} == {"stored"}


def test_a_resend_is_idempotent_and_a_changed_resend_is_held(
    receiver: DicomReceiver, shared_data: Path, tmp_path: Path
) -> None:
    plan = rt_files(shared_data)["RP"]
    assert send(receiver.port, [plan, plan]) == [Status.SUCCESS] * 2
    assert send(receiver.port, [plan]) == [Status.SUCCESS]
    assert _count(receiver, DicomInstance) == 1
    assert _count(receiver, DicomQuarantineItem) == 0
    changed = pydicom.dcmread(plan)
    changed.RTPlanLabel = "CHANGED"
    changed.save_as(tmp_path / "changed.dcm", enforce_file_format=True)
    assert send(receiver.port, [tmp_path / "changed.dcm"] * 2) == [Status.SUCCESS] * 2
    (held,) = _rows(receiver, DicomQuarantineItem)
    assert held.reason_code == "conflicting_resend"
    (filed,) = _rows(receiver, DicomInstance)
    assert filed.sha256 != held.sha256


def test_wrong_name_and_foreign_study_are_held_as_wrong_patient(
    receiver: DicomReceiver, shared_data: Path, identified_ct: list[Path], tmp_path: Path
) -> None:
    plan = rt_files(shared_data)["RP"]
    wrong_name = identify(plan, tmp_path / "name.dcm", PatientName="OTHER^PERSON")
    assert send(receiver.port, [wrong_name]) == [Status.SUCCESS]
    assert send(receiver.port, identified_ct[:1]) == [Status.SUCCESS]
    # The same study under another (known) patient's ID: a mix-up, not a new study.
    foreign = identify(
        identified_ct[1], tmp_path / "foreign.dcm", PatientID=PATIENT_ID, PatientName="TEST^PATIENT"
    )
    assert send(receiver.port, [foreign]) == [Status.SUCCESS]
    held = _rows(receiver, DicomQuarantineItem)
    assert sorted(row.reason_code for row in held) == ["wrong_patient", "wrong_patient"]
    assert _count(receiver, DicomInstance) == 1


def test_a_treatment_image_without_a_current_fraction_is_held(
    start_receiver: Callable[..., DicomReceiver], shared_data: Path
) -> None:
    receiver = start_receiver(fraction_window_hours=1e-6)
    image = rt_files(shared_data)["RI"]
    assert send(receiver.port, [image], calling="XVI") == [Status.SUCCESS]
    (held,) = _rows(receiver, DicomQuarantineItem)
    assert held.reason_code == "no_session"
    assert held.patient_id is not None


def test_fluoroscopy_becomes_an_upload_with_an_assessment(
    receiver: DicomReceiver, clinic: Clinic, make_dicom: Callable[..., bytes], tmp_path: Path
) -> None:
    path = tmp_path / "fluoro.dcm"
    path.write_bytes(make_dicom())
    assert send(receiver.port, [path]) == [Status.SUCCESS]
    assert receiver.processor.wait_idle(120)
    (row,) = _rows(receiver, DicomInstance)
    assert row.processing_status == "done", row.processing_reason
    assert row.session_id == clinic.fluoro_simulation
    (upload,) = _rows(receiver, Upload)
    (assessment,) = _rows(receiver, MotionAssessment)
    assert (row.upload_id, row.assessment_id) == (upload.id, assessment.id)
    assert upload.n_frames == 10
    assert assessment.upload_id == upload.id


def test_a_non_allowed_calling_ae_is_rejected_at_association(
    receiver: DicomReceiver, shared_data: Path
) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="IGRT")
    assert assoc.is_rejected
    assert assoc.acceptor.primitive.diagnostic == 3  # calling AE title not recognised
    wrong_called = AE(ae_title="XVI")
    wrong_called.add_requested_context(Verification)
    assoc = wrong_called.associate("127.0.0.1", receiver.port, ae_title="SOMEONE")
    assert assoc.is_rejected
    assert send(receiver.port, [rt_files(shared_data)["RP"]], calling="INTRUDER") == [-1]
    assert _count(receiver, DicomInstance) == 0


def test_unknown_sop_classes_and_transfer_syntaxes_are_refused_in_negotiation(
    receiver: DicomReceiver,
) -> None:
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, JPEGBaseline8Bit
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, MRImageStorage

    ae = AE(ae_title="CTSIM")
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(CTImageStorage, JPEGBaseline8Bit)
    ae.add_requested_context(CTImageStorage, ExplicitVRBigEndian)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="IGRT")
    assert assoc.is_established
    accepted = {
        (str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts
    }
    assoc.release()
    assert accepted == {(str(CTImageStorage), str(ExplicitVRLittleEndian))}


def test_an_instance_over_the_size_limit_aborts_the_association_and_stores_nothing(
    start_receiver: Callable[..., DicomReceiver], identified_ct: list[Path]
) -> None:
    receiver = start_receiver(max_instance_bytes=50_000, max_pdu_bytes=16384)
    assert identified_ct[0].stat().st_size > 50_000
    statuses = send(receiver.port, identified_ct[:2])
    assert statuses == [-1, -1]
    assert _count(receiver, DicomInstance) == 0
    assert _count(receiver, DicomQuarantineItem) == 0
    assert not any(receiver.store.root.rglob("*.dcm"))


def test_associations_beyond_the_limit_are_rejected(
    start_receiver: Callable[..., DicomReceiver],
) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    receiver = start_receiver(max_associations=1)
    ae = AE(ae_title="XVI")
    ae.add_requested_context(Verification)
    first = ae.associate("127.0.0.1", receiver.port, ae_title="IGRT")
    assert first.is_established
    try:
        second = ae.associate("127.0.0.1", receiver.port, ae_title="IGRT")
        assert second.is_rejected
        assert second.acceptor.primitive.result == 0x02  # rejected, transient
    finally:
        first.release()
    # The receiver frees the slot when its side of the release completes, a moment after the
    # requestor's: a transient rejection is retried, as a console would.
    deadline = time.monotonic() + 10.0
    third = ae.associate("127.0.0.1", receiver.port, ae_title="IGRT")
    while not third.is_established and time.monotonic() < deadline:
        assert third.is_rejected
        time.sleep(0.1)
        third = ae.associate("127.0.0.1", receiver.port, ae_title="IGRT")
    assert third.is_established
    third.release()


# --- instances whose geometry is missing (issue 14: bad input on each new path) -------------


def _store_files(receiver: DicomReceiver) -> list[Path]:
    return [path for path in receiver.store.root.rglob("*") if path.is_file()]


def test_a_ct_slice_without_its_position_fails_the_series_and_builds_no_volume(
    receiver: DicomReceiver, identified_ct: list[Path], tmp_path: Path
) -> None:
    slices = list(identified_ct[:5])
    dataset = pydicom.dcmread(slices[2])
    del dataset.ImagePositionPatient
    slices[2] = tmp_path / "no_position.dcm"
    dataset.save_as(slices[2], enforce_file_format=True)
    # Acknowledged: each instance itself is whole and stored as received.
    assert send(receiver.port, slices) == [Status.SUCCESS] * len(slices)
    assert receiver.processor.wait_idle(120)
    rows = _rows(receiver, DicomInstance)
    assert len(rows) == len(slices)
    assert {row.processing_status for row in rows} == {"failed"}
    assert all("ImagePositionPatient (0020,0032)" in (row.processing_reason or "") for row in rows)
    assert str(receiver.store.root) not in (rows[0].processing_reason or "")
    # Nothing half-way: no volume row, and the store holds the received instances only.
    assert _count(receiver, VolumeUpload) == 0
    assert len(_store_files(receiver)) == len(slices)
    assert not any(receiver.store.temp_dir.iterdir())


def test_a_fluoroscopy_without_its_geometry_fails_and_builds_no_upload(
    receiver: DicomReceiver, make_dicom: Callable[..., bytes], tmp_path: Path
) -> None:
    from io import BytesIO

    from igrt.imageio.fluoro_dicom import PRIVATE_GROUP

    dataset = pydicom.dcmread(BytesIO(make_dicom()))
    for element in list(dataset):
        if element.tag.group == PRIVATE_GROUP:  # igrt's own copy of the geometry
            del dataset[element.tag]
    del dataset.DistanceSourceToDetector
    path = tmp_path / "no_sdd.dcm"
    dataset.save_as(path, enforce_file_format=True)
    assert send(receiver.port, [path]) == [Status.SUCCESS]
    assert receiver.processor.wait_idle(120)
    (row,) = _rows(receiver, DicomInstance)
    assert row.processing_status == "failed"
    assert "DistanceSourceToDetector (0018,1110)" in (row.processing_reason or "")
    assert (row.upload_id, row.assessment_id) == (None, None)
    assert _count(receiver, Upload) == 0
    assert _count(receiver, MotionAssessment) == 0
    assert len(_store_files(receiver)) == 1
    assert not any(receiver.store.temp_dir.iterdir())
