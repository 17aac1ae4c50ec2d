"""A CBCT series received from the linac queues its registration to the patient's planning CT
(``IGRT_DICOM_AUTO_REGISTER``, on by default), audited as automatic; off, nothing is queued.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from sqlalchemy import select

from api.db.models import AuditEvent, RegistrationJob, VolumeUpload
from api.dicom.receiver import DicomReceiver, DicomReceiverSettings, Status
from api.service import Service
from tests.api.conftest import DISPLACEMENT_LPS_MM, PATIENT_ID, Volumes
from tests.api.dicom.conftest import ALLOWED, Clinic, send


@pytest.fixture(scope="module")
def series(volumes: Volumes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """The planning CT and the day's CBCT as DICOM CT series (own studies and frames)."""
    from igrt.imageio import read_volume, write_ct_series

    folder = tmp_path_factory.mktemp("auto")
    with zipfile.ZipFile(io.BytesIO(volumes.planning_zip)) as archive:
        archive.extractall(folder / "ct")
    (folder / "cbct.mha").write_bytes(volumes.cbct_mha)
    cbct = read_volume(folder / "cbct.mha")
    ct_files = sorted((folder / "ct").rglob("*.dcm"))
    # The simulated CBCT shares the planning CT's Frame of Reference (the simulator's default);
    # a room-frame CBCT is placed by the plan's isocentre (the last test).
    frame = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).FrameOfReferenceUID)
    write_ct_series(
        cbct.volume,
        folder / "cbct",
        patient_id=PATIENT_ID,
        patient_name="Test^Patient",
        frame_of_reference_uid=frame,
        uid_seed="auto-registration-cbct",
    )
    return {
        "ct": ct_files,
        "cbct": sorted((folder / "cbct").glob("*.dcm")),
    }


def _receive_both(receiver: DicomReceiver, series: dict[str, list[Path]]) -> None:
    assert set(send(receiver.port, series["ct"], calling="CTSIM")) == {Status.SUCCESS}
    assert receiver.processor.wait_idle(120.0)
    assert set(send(receiver.port, series["cbct"], calling="XVI")) == {Status.SUCCESS}
    assert receiver.processor.wait_idle(120.0)


def _start(clinic: Clinic, *, auto: bool) -> DicomReceiver:
    settings = clinic.settings.model_copy(update={"dicom_auto_register": auto})
    receiver = DicomReceiver(
        Service.from_settings(settings),
        DicomReceiverSettings(port=0, allowed_aes=ALLOWED, series_settle_s=0.3),
    )
    receiver.start()
    return receiver


def test_a_received_cbct_is_registered_to_the_planning_ct(
    clinic: Clinic, series: dict[str, list[Path]]
) -> None:
    receiver = _start(clinic, auto=True)
    try:
        _receive_both(receiver, series)
        deadline = time.monotonic() + 180.0
        while True:
            with receiver.service.sessions() as db:
                jobs = list(db.scalars(select(RegistrationJob)))
                if jobs and jobs[0].status in ("completed", "failed"):
                    break
            assert time.monotonic() < deadline, [job.status for job in jobs]
            time.sleep(0.2)
        (job,) = jobs
        with receiver.service.sessions() as db:
            planning = db.get(VolumeUpload, job.planning_ct_upload_id)
            cbct = db.get(VolumeUpload, job.cbct_upload_id)
            assert planning is not None
            assert cbct is not None
            assert (planning.kind, planning.session_id) == ("planning_ct", clinic.fluoro_simulation)
            assert (cbct.kind, cbct.session_id) == ("cbct", clinic.fluoro_fraction)
            events = list(db.scalars(select(AuditEvent).where(AuditEvent.resource_id == job.id)))
            cbct_event = db.scalars(
                select(AuditEvent).where(AuditEvent.resource_id == cbct.id)
            ).one()
        assert job.session_id == clinic.fluoro_fraction
        assert job.status == "completed", job.reason
        correction = np.array(job.result["couch_correction_lps_mm"])  # type: ignore[index]
        np.testing.assert_allclose(correction, -np.array(DISPLACEMENT_LPS_MM), atol=0.5)
        created = next(event for event in events if event.action == "registration.create")
        assert created.actor_token_id is None
        assert created.detail["automatic"] is True
        assert created.detail["source"] == "dicom_receiver"
        assert cbct_event.detail["registration_id"] == job.id
    finally:
        receiver.stop()


def test_without_auto_registration_nothing_is_queued(
    clinic: Clinic, series: dict[str, list[Path]]
) -> None:
    receiver = _start(clinic, auto=False)
    try:
        _receive_both(receiver, series)
        with receiver.service.sessions() as db:
            kinds = sorted(volume.kind for volume in db.scalars(select(VolumeUpload)))
            assert kinds == ["cbct", "planning_ct"]
            assert list(db.scalars(select(RegistrationJob))) == []
    finally:
        receiver.stop()


def test_a_room_frame_cbct_is_placed_by_the_received_plan(
    clinic: Clinic,
    series: dict[str, list[Path]],
    volumes: Volumes,
    tmp_path: Path,
) -> None:
    from fixtures.rt_objects import write_rt_plan
    from igrt.imageio import read_volume, write_ct_series
    from igrt.volume import Volume

    frame = str(pydicom.dcmread(series["ct"][0], stop_before_pixels=True).FrameOfReferenceUID)
    isocentre = list(volumes.isocentre_lps_mm)
    write_rt_plan(tmp_path / "rp.dcm", [("ARC1", isocentre)], frame_of_reference_uid=frame,
                  patient_id=PATIENT_ID)  # fmt: skip
    plan = pydicom.dcmread(tmp_path / "rp.dcm")
    plan.PatientName = "Test^Patient"
    plan.save_as(tmp_path / "rp.dcm")
    (tmp_path / "cbct.mha").write_bytes(volumes.cbct_mha)
    cbct = read_volume(tmp_path / "cbct.mha").volume
    # As the linac sends it: the room's own Frame of Reference, the isocentre at its origin.
    room = Volume(cbct.array, cbct.spacing_mm, cbct.origin_lps_mm - np.asarray(isocentre),
                  cbct.direction)  # fmt: skip
    written = write_ct_series(
        room,
        tmp_path / "room",
        patient_id=PATIENT_ID,
        patient_name="Test^Patient",
        uid_seed="auto-registration-room-cbct",
    )
    assert written.frame_of_reference_uid != frame
    receiver = _start(clinic, auto=True)
    try:
        assert set(send(receiver.port, series["ct"], calling="CTSIM")) == {Status.SUCCESS}
        assert set(send(receiver.port, [tmp_path / "rp.dcm"], calling="CTSIM")) == {Status.SUCCESS}
        assert receiver.processor.wait_idle(120.0)
        assert set(send(receiver.port, list(written.paths), calling="XVI")) == {Status.SUCCESS}
        assert receiver.processor.wait_idle(120.0)
        deadline = time.monotonic() + 180.0
        while True:
            with receiver.service.sessions() as db:
                jobs = list(db.scalars(select(RegistrationJob)))
                if jobs and jobs[0].status in ("completed", "failed"):
                    break
            assert time.monotonic() < deadline, [job.status for job in jobs]
            time.sleep(0.2)
        (job,) = jobs
        assert job.status == "completed", job.reason
        assert job.plan_request is not None
        assert job.plan_request["automatic"] is True
        document = job.result
        assert document is not None
        assert document["reference_point_source"].startswith("RT Plan ")
        frames = document["frames"]
        assert frames["relation"] == "placed by the treatment isocentre"
        assert frames["cbct_frame_of_reference_uid"] == written.frame_of_reference_uid
        np.testing.assert_allclose(
            document["couch_correction_lps_mm"], -np.array(DISPLACEMENT_LPS_MM), atol=0.5
        )
    finally:
        receiver.stop()
