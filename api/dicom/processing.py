"""The work queued after an instance is acknowledged: the same as for an HTTP upload.

* A fluoroscopy (XA/RF multi-frame) instance becomes a fluoroscopy upload through
  :func:`api.ingest.ingest_fluoroscopy` and is assessed with :func:`api.assessment.assess_sequence`
  (the ``POST .../motion-assessments`` default context, free breathing).
* CT instances are collected per series; once no association that sent some of it is still
  open and the series has been quiet for ``settle_s`` seconds (DICOM has no "series complete"
  message), its filed instances are zipped and become a volume upload through
  :func:`api.volumes.ingest_volume`: a planning CT from a planning sender, a
  CBCT from a treatment sender, ready for ``POST .../registrations``. Slices arriving later
  make a new volume upload of the whole series (uploads are immutable).
* RT Image, RT Plan and RT Structure Set instances are kept and filed (status ``stored``).
* When a CBCT volume is made and the patient has a planning CT, a registration of the two is
  queued in the same transaction (``IGRT_DICOM_AUTO_REGISTER``, on by default; audited as
  ``registration.create`` with ``"automatic": true``): the latest planning CT of any of the
  patient's sessions, 6 degrees of freedom, automatic clip box and the CBCT centre, as a
  ``POST .../registrations`` without options would. Without a planning CT nothing is queued
  (the volume's audit event says so). A CBCT in another Frame of Reference than the planning
  CT (a linac's room frame) is placed by the treatment isocentre
  (:mod:`registration.cbct_placement`): the job takes it from the patient's RT Plan when
  exactly one received plan states the planning CT's Frame of Reference (``plan_request``
  with ``"automatic": true``); otherwise the job is queued without one and fails naming the
  missing isocentre (a plan that states no frame of its own, as Eclipse's, is not guessed at).

One worker thread does the work in arrival order. Every outcome is committed on the
instances (``processing_status`` ``done`` with links, or ``failed`` with the reason); an
instance still ``pending`` after a crash is queued again at the next start (:meth:`recover`).
"""

from __future__ import annotations

import functools
import logging
import queue
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import igrt
from api.assessment import assess_sequence
from api.audit import record_audit
from api.db.base import new_id
from api.db.models import (
    DicomInstance,
    MotionAssessment,
    Patient,
    RegistrationJob,
    TreatmentSession,
    Upload,
    VolumeUpload,
)
from api.dicom.objects import ObjectKindValues, ProcessingStatusValues, SourceRoleValues
from api.enums import (
    RegistrationStatusValues,
    UploadFormatValues,
    UploadKindValues,
    VolumeFormatValues,
    VolumeKindValues,
)
from api.ingest import ImageLimits, ingest_fluoroscopy, read_stored_sequence
from api.schemas.uploads import FluoroscopyUploadForm
from api.storage import FileStore
from api.volumes import VolumeLimits, ingest_volume
from igrt.errors import IgrtError
from igrt.frame_of_reference import PatientPositionValues
from igrt.patient_identity import PatientIdentity

__all__ = ["DicomProcessor", "ProcessingContext"]

_LOG = logging.getLogger("api.dicom.processing")
_ASSESSMENT_CONTEXT = "free_breathing"
_DICOM = "application/dicom"


class _Submitter(Protocol):
    def submit(self, job_id: str) -> None: ...


@dataclass(frozen=True)
class ProcessingContext:
    """What the processing needs of the service."""

    store: FileStore
    sessions: sessionmaker[Session]
    limits: ImageLimits
    volume_limits: VolumeLimits
    registrations: _Submitter | None = None
    """Runs queued registration jobs (the service's worker); None: nothing is queued."""
    auto_register: bool = False
    """Queue a registration for each CBCT volume whose patient has a planning CT."""


_SeriesKey = tuple[str, str]  # (session id, Series Instance UID)


class DicomProcessor:
    """One worker thread running the queued work, plus a series-settling clock."""

    def __init__(self, context: ProcessingContext, *, settle_s: float) -> None:
        self.context = context
        self.settle_s = settle_s
        self._tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._series_seen: dict[_SeriesKey, float] = {}
        self._series_senders: dict[_SeriesKey, set[int]] = {}
        self._busy = 0
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="dicom-processing", daemon=True)
        self._clock = threading.Thread(target=self._tick, name="dicom-series", daemon=True)

    # --- life cycle -------------------------------------------------------------------------

    def start(self, *, recover: bool = True) -> None:
        """Start the worker and the clock, then queue what a previous run left pending."""
        self._worker.start()
        self._clock.start()
        if recover:
            self.recover()

    def stop(self) -> None:
        """Finish the task at hand and stop (pending work stays pending for the next start)."""
        self._stop.set()
        self._tasks.put(None)
        self._worker.join(timeout=60)
        self._clock.join(timeout=5)

    def recover(self) -> int:
        """Queue every instance left ``pending``; returns how many."""
        with self.context.sessions() as db:
            rows = list(
                db.execute(
                    select(DicomInstance.id, DicomInstance.kind, DicomInstance.session_id)
                    .add_columns(DicomInstance.series_instance_uid)
                    .where(DicomInstance.processing_status == ProcessingStatusValues.PENDING.value)
                    .order_by(DicomInstance.received_at, DicomInstance.id)
                )
            )
        for row_id, kind, session_id, series_uid in rows:
            self.submit(row_id, ObjectKindValues(kind), session_id, series_uid, settled=True)
        return len(rows)

    def submit(
        self,
        instance_id: str,
        kind: ObjectKindValues,
        session_id: str,
        series_uid: str | None,
        *,
        settled: bool = False,
        association: int | None = None,
    ) -> None:
        """Queue the work for a filed, committed instance (``association``: who sent it)."""
        if kind is ObjectKindValues.FLUOROSCOPY:
            self._put(lambda: self._fluoroscopy(instance_id))
        elif kind is ObjectKindValues.CT and series_uid is not None:
            key = (session_id, series_uid)
            with self._lock:
                self._series_seen[key] = 0.0 if settled else time.monotonic()
                if association is not None:
                    self._series_senders.setdefault(key, set()).add(association)

    def association_ended(self, association: int) -> None:
        """The association has ended: its series may settle."""
        with self._lock:
            for key in [k for k, senders in self._series_senders.items() if association in senders]:
                self._series_senders[key].discard(association)
                if not self._series_senders[key]:
                    del self._series_senders[key]

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued, settling or running (tests, a graceful stop)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                idle = not self._series_seen and self._busy == 0
            if idle and self._tasks.empty():
                return True
            time.sleep(0.05)
        return False

    # --- threads --------------------------------------------------------------------------

    def _put(self, task: Callable[[], None]) -> None:
        with self._lock:
            self._busy += 1
        self._tasks.put(task)

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                task()
            except Exception:
                _LOG.exception("dicom processing task crashed")
            finally:
                with self._lock:
                    self._busy -= 1

    def _tick(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            with self._lock:
                ready = [
                    key
                    for key, seen in self._series_seen.items()
                    if now - seen >= self.settle_s and key not in self._series_senders
                ]
                for key in ready:
                    del self._series_seen[key]
                # Counted busy before leaving the lock, so wait_idle never sees a gap.
                self._busy += len(ready)
            for session_id, series_uid in ready:
                self._tasks.put(functools.partial(self._series, session_id, series_uid))

    # --- the work -------------------------------------------------------------------------

    def _finish(
        self,
        instance_ids: list[str],
        status: ProcessingStatusValues,
        reason: str | None,
        **links: Any,
    ) -> None:
        with self.context.sessions() as db:
            for instance_id in instance_ids:
                row = db.get(DicomInstance, instance_id)
                if row is None:  # pragma: no cover - instances are never deleted
                    continue
                row.processing_status = status.value
                row.processing_reason = reason[:2000] if reason else None
                for name, value in links.items():
                    setattr(row, name, value)
            db.commit()

    def _fluoroscopy(self, instance_id: str) -> None:
        store = self.context.store
        with self.context.sessions() as db:
            row = db.get(DicomInstance, instance_id)
            if row is None or row.processing_status != ProcessingStatusValues.PENDING.value:
                return
            session = db.get(TreatmentSession, row.session_id)
            patient = db.get(Patient, row.patient_id)
            assert session is not None
            assert patient is not None
            stored_path, sha256 = row.stored_path, row.sha256
            position = PatientPositionValues(session.patient_position)
            protocol_version, session_id = session.protocol_version, session.id
            identity = PatientIdentity(patient.external_id, patient.name or "")
        try:
            with store.staging(".dcm") as staged:
                shutil.copyfile(store.path(stored_path), staged)
                ingested = ingest_fluoroscopy(
                    store,
                    self.context.limits,
                    staged,
                    FluoroscopyUploadForm(format=UploadFormatValues.DICOM),
                    patient_position=position,
                    patient=identity,
                )
            upload_id = new_id()
            outcome = assess_sequence(
                read_stored_sequence(store, ingested.sequence_file.relative_path),
                patient_position=position,
                context=_ASSESSMENT_CONTEXT,
                protocol_version=protocol_version,
                source=f"upload {upload_id}",
            )
        except IgrtError as exc:
            self._finish([instance_id], ProcessingStatusValues.FAILED, str(exc))
            return
        with self.context.sessions() as db:
            upload = Upload(
                id=upload_id,
                session_id=session_id,
                kind=UploadKindValues.FLUOROSCOPY.value,
                format=UploadFormatValues.DICOM.value,
                content_type=_DICOM,
                filename=f"dicom-{sha256[:16]}.dcm",
                **ingested.upload_columns(),
            )
            assessment = MotionAssessment(
                session_id=session_id,
                upload_id=upload_id,
                status=outcome.status.value,
                reason=outcome.reason[:2000] if outcome.reason else None,
                context=_ASSESSMENT_CONTEXT,
                protocol_version=protocol_version,
                tracked_fraction=outcome.tracked_fraction,
                track=outcome.track,
                recommendation=outcome.recommendation,
                result=outcome.result,
                software_version=outcome.software_version,
            )
            db.add(upload)
            db.flush()
            db.add(assessment)
            db.flush()
            detail = {"session_id": session_id, "source": "dicom_receiver"}
            record_audit(db, None, "upload.create", "upload", upload.id, detail)
            record_audit(
                db,
                None,
                "motion_assessment.create",
                "motion_assessment",
                assessment.id,
                {**detail, "status": assessment.status},
            )
            row = db.get(DicomInstance, instance_id)
            assert row is not None
            row.processing_status = ProcessingStatusValues.DONE.value
            row.upload_id = upload.id
            row.assessment_id = assessment.id
            db.commit()

    def _series(self, session_id: str, series_uid: str) -> None:
        store = self.context.store
        with self.context.sessions() as db:
            rows = list(
                db.scalars(
                    select(DicomInstance)
                    .where(
                        DicomInstance.session_id == session_id,
                        DicomInstance.series_instance_uid == series_uid,
                        DicomInstance.kind == ObjectKindValues.CT.value,
                    )
                    .order_by(DicomInstance.received_at, DicomInstance.id)
                )
            )
            pending = [
                r.id for r in rows if r.processing_status == ProcessingStatusValues.PENDING.value
            ]
            session = db.get(TreatmentSession, session_id)
            if not pending or session is None:
                return
            paths = [r.stored_path for r in rows]
            planning = rows[-1].source_role == SourceRoleValues.PLANNING.value
            position = PatientPositionValues(session.patient_position)
            patient = db.get(Patient, session.patient_id)
            assert patient is not None
            identity = PatientIdentity(patient.external_id, patient.name or "")
        kind = VolumeKindValues.PLANNING_CT if planning else VolumeKindValues.CBCT
        try:
            with store.staging(".zip") as staged:
                with zipfile.ZipFile(staged, "x", zipfile.ZIP_STORED) as archive:
                    for index, path in enumerate(paths):
                        archive.write(store.path(path), f"{index:05d}.dcm")
                ingested = ingest_volume(
                    store,
                    self.context.volume_limits,
                    staged,
                    VolumeFormatValues.DICOM_ZIP,
                    session_position=position,
                    patient=identity,
                )
        except IgrtError as exc:
            self._finish(pending, ProcessingStatusValues.FAILED, str(exc))
            return
        with self.context.sessions() as db:
            volume = VolumeUpload(
                session_id=session_id,
                kind=kind.value,
                format=VolumeFormatValues.DICOM_ZIP.value,
                content_type="application/zip",
                filename=f"dicom-series-{len(paths)}-instances.zip",
                size_bytes=ingested.original.size_bytes,
                sha256=ingested.original.sha256,
                stored_path=ingested.original.relative_path,
                volume_sha256=ingested.volume_file.sha256,
                volume_path=ingested.volume_file.relative_path,
                geometry=ingested.geometry,
            )
            db.add(volume)
            db.flush()
            job = self._queue_registration(db, volume) if kind is VolumeKindValues.CBCT else None
            detail: dict[str, Any] = {
                "session_id": session_id,
                "kind": volume.kind,
                "source": "dicom_receiver",
            }
            if kind is VolumeKindValues.CBCT:
                detail["registration_id"] = None if job is None else job.id
            record_audit(db, None, "volume.create", "volume_upload", volume.id, detail)
            for instance_id in pending:
                row = db.get(DicomInstance, instance_id)
                assert row is not None
                row.processing_status = ProcessingStatusValues.DONE.value
                row.volume_upload_id = volume.id
            db.commit()
            job_id = None if job is None else job.id
        if job_id is not None and self.context.registrations is not None:
            self.context.registrations.submit(job_id)

    def _queue_registration(self, db: Session, cbct: VolumeUpload) -> RegistrationJob | None:
        """A queued job registering ``cbct`` to its patient's latest planning CT (or None)."""
        if not self.context.auto_register or self.context.registrations is None:
            return None
        session = db.get(TreatmentSession, cbct.session_id)
        assert session is not None
        planning = db.scalars(
            select(VolumeUpload)
            .join(TreatmentSession, TreatmentSession.id == VolumeUpload.session_id)
            .where(
                TreatmentSession.patient_id == session.patient_id,
                VolumeUpload.kind == VolumeKindValues.PLANNING_CT.value,
            )
            .order_by(VolumeUpload.created_at.desc(), VolumeUpload.id)
        ).first()
        if planning is None:
            return None
        plan_request = _automatic_plan(db, planning, cbct, session.patient_id)
        job = RegistrationJob(
            session_id=session.id,
            planning_ct_upload_id=planning.id,
            cbct_upload_id=cbct.id,
            plan_request=plan_request,
            degrees_of_freedom=6,
            status=RegistrationStatusValues.QUEUED.value,
            software_version=igrt.__version__,
        )
        db.add(job)
        db.flush()
        record_audit(
            db,
            None,
            "registration.create",
            "registration",
            job.id,
            {
                "session_id": session.id,
                "planning_ct_upload_id": planning.id,
                "cbct_upload_id": cbct.id,
                "degrees_of_freedom": job.degrees_of_freedom,
                "rt_plan_instance_id": None
                if plan_request is None
                else plan_request["rt_plan_instance_id"],
                "source": "dicom_receiver",
                "automatic": True,
            },
        )
        return job


def _automatic_plan(
    db: Session, planning: VolumeUpload, cbct: VolumeUpload, patient_id: str
) -> dict[str, Any] | None:
    """The plan request placing a room-frame CBCT: the one received plan in the CT's frame.

    ``None`` when the CBCT shares the planning CT's frame (nothing to place), or when no or
    several received RT Plans state the planning CT's Frame of Reference (no guess: the job
    then fails naming the missing isocentre).
    """
    ct_uid = (planning.geometry or {}).get("frame_of_reference_uid") or None
    cbct_uid = (cbct.geometry or {}).get("frame_of_reference_uid") or None
    if ct_uid is None or cbct_uid is None or ct_uid == cbct_uid:
        return None
    plans = list(
        db.scalars(
            select(DicomInstance.id).where(
                DicomInstance.patient_id == patient_id,
                DicomInstance.kind == ObjectKindValues.RT_PLAN.value,
                DicomInstance.frame_of_reference_uid == ct_uid,
            )
        )
    )
    if len(plans) != 1:
        return None
    return {
        "rt_plan_instance_id": plans[0],
        "rt_struct_instance_id": None,
        "roi": None,
        "roi_margin_mm": 0.0,
        "beam": None,
        "automatic": True,
    }
