"""Registration jobs: a small thread pool that runs queued jobs and persists every transition.

A job is a :class:`~api.db.models.RegistrationJob` row. ``POST .../registrations`` commits it as
``queued`` and hands its id to :meth:`RegistrationWorker.submit`; a worker thread marks it
``running`` (committed), reads both canonical volumes, runs
:func:`registration.register_cbct_to_ct`, stores the overlay PNGs and the DICOM Spatial
Registration in the content-addressed file store, and commits ``completed`` with the result
document (or ``failed`` with the reason) plus an audit event, in one transaction.

Restart policy (:meth:`RegistrationWorker.recover`, run at start-up): a job still ``queued``
was never started, so it is queued again (its inputs are immutable uploads); a job left
``running`` by a crash or a stop is marked ``failed`` with the reason "interrupted", never run
twice behind the client's back: the client submits it again. A graceful stop waits for running
jobs and leaves the queued ones queued. One service process per database is assumed (a second
process would see the first one's running jobs as interrupted).
"""

from __future__ import annotations

import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

import igrt
from api.audit import record_audit
from api.db.base import utc_now
from api.db.models import Patient, RegistrationJob, TreatmentSession, VolumeUpload
from api.enums import RegistrationStatusValues
from api.volumes import read_stored_volume
from igrt.errors import IgrtError

if TYPE_CHECKING:
    from api.service import Service

__all__ = [
    "INTERRUPTED_REASON",
    "OVERLAY_KINDS",
    "OVERLAY_PLANES",
    "OVERLAY_STAGES",
    "RegistrationWorker",
    "overlay_key",
]

_LOG = logging.getLogger("api.registration_jobs")

INTERRUPTED_REASON = "interrupted: the service stopped while this registration ran; submit it again"
OVERLAY_PLANES = ("axial", "coronal", "sagittal")
OVERLAY_KINDS = ("checkerboard", "blend", "ct", "cbct")
OVERLAY_STAGES = ("before", "after")


def overlay_key(stage: str, plane: str, kind: str) -> str:
    """Key of one overlay PNG in a job's ``overlay_paths``."""
    return f"{stage}/{plane}/{kind}"


class RegistrationWorker:
    """Runs registration jobs of one service on a bounded thread pool."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Create the thread pool (idempotent)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.service.settings.registration_workers,
                thread_name_prefix="registration",
            )

    def shutdown(self) -> None:
        """Wait for running jobs; queued ones stay queued in the database for the next start."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def submit(self, job_id: str) -> None:
        """Queue a committed job."""
        self.start()
        assert self._executor is not None
        self._executor.submit(self._run, job_id)

    def recover(self) -> tuple[int, int]:
        """Apply the restart policy; returns (failed running jobs, re-queued jobs)."""
        with self.service.sessions() as db:
            running = list(
                db.scalars(
                    select(RegistrationJob).where(
                        RegistrationJob.status == RegistrationStatusValues.RUNNING.value
                    )
                )
            )
            for job in running:
                job.status = RegistrationStatusValues.FAILED.value
                job.reason = INTERRUPTED_REASON
                job.finished_at = utc_now()
                record_audit(
                    db, None, "registration.fail", "registration", job.id, {"reason": job.reason}
                )
            queued = list(
                db.scalars(
                    select(RegistrationJob.id)
                    .where(RegistrationJob.status == RegistrationStatusValues.QUEUED.value)
                    .order_by(RegistrationJob.created_at, RegistrationJob.id)
                )
            )
            db.commit()
        for job_id in queued:
            self.submit(job_id)
        return len(running), len(queued)

    # --- one job --------------------------------------------------------------------------

    def _run(self, job_id: str) -> None:
        try:
            self._execute(job_id)
        except Exception:
            _LOG.exception("registration job crashed", extra={"job_id": job_id})
            self._finish(
                job_id,
                {
                    "status": RegistrationStatusValues.FAILED.value,
                    "reason": "internal error while registering",
                },
            )

    def _execute(self, job_id: str) -> None:
        with self.service.sessions() as db:
            job = db.get(RegistrationJob, job_id)
            if job is None or job.status != RegistrationStatusValues.QUEUED.value:
                return
            job.status = RegistrationStatusValues.RUNNING.value
            job.started_at = utc_now()
            db.commit()
            planning = db.get(VolumeUpload, job.planning_ct_upload_id)
            cbct = db.get(VolumeUpload, job.cbct_upload_id)
            session = db.get(TreatmentSession, job.session_id)
            if planning is None or cbct is None or session is None:  # pragma: no cover
                raise RuntimeError("a registration job's rows are missing")
            patient = db.get(Patient, session.patient_id)
            request = {
                "planning_path": planning.volume_path,
                "cbct_path": cbct.volume_path,
                "patient_position": session.patient_position,
                "patient_external_id": patient.external_id if patient else "",
                "degrees_of_freedom": job.degrees_of_freedom,
                "clip_box": job.clip_box_lps_mm,
                "isocentre_lps_mm": job.isocentre_lps_mm,
            }
        try:
            outcome = self._register(job_id, request)
        except IgrtError as exc:
            root = str(self.service.store.root)
            outcome = {
                "status": RegistrationStatusValues.FAILED.value,
                "reason": str(exc).replace(root, "<store>")[:2000],
            }
        self._finish(job_id, outcome)

    def _register(self, job_id: str, request: dict[str, Any]) -> dict[str, Any]:
        from registration import ClipBox, QualityValues, register_cbct_to_ct

        store = self.service.store
        planning = read_stored_volume(store, request["planning_path"])
        day = read_stored_volume(store, request["cbct_path"])
        box = request["clip_box"]
        clip_box = None if box is None else ClipBox(box["lower_lps_mm"], box["upper_lps_mm"])
        result = register_cbct_to_ct(
            planning,
            day,
            patient_position=request["patient_position"],
            clip_box=clip_box,
            degrees_of_freedom=request["degrees_of_freedom"],
            isocentre_lps_mm=request["isocentre_lps_mm"],
            threads=1,
        )
        overlay_paths: dict[str, str] = {}
        with tempfile.TemporaryDirectory(dir=store.temp_dir, prefix="staged-") as scratch:
            folder = Path(scratch)
            if result.overlays is not None:
                for stage, images in (
                    ("before", result.overlays.before),
                    ("after", result.overlays.after),
                ):
                    for image in images:
                        for kind in OVERLAY_KINDS:
                            staged = store.temp_path(".png")
                            staged.write_bytes(image.png(kind))
                            stored = store.store(staged)
                            overlay_paths[overlay_key(stage, image.plane.value, kind)] = (
                                stored.relative_path
                            )
            dicom_reg_path = None
            notes: list[str] = []
            if result.quality is not QualityValues.FAILED:
                dicom_reg_path = self._write_reg(result, planning, day, request, folder, notes)
        document = result.to_dict()
        if notes:
            document["service_notes"] = notes
        repositioning = result.repositioning
        return {
            "status": RegistrationStatusValues.COMPLETED.value,
            "reason": "; ".join(result.reasons)[:2000] or None,
            "quality": result.quality.value,
            "repositioning_required": None if repositioning is None else repositioning.required,
            "result": document,
            "overlay_paths": overlay_paths,
            "dicom_reg_path": dicom_reg_path,
        }

    def _write_reg(
        self,
        result: Any,
        planning: Any,
        day: Any,
        request: dict[str, Any],
        folder: Path,
        notes: list[str],
    ) -> str | None:
        try:
            from registration.dicom_reg import write_spatial_registration
        except ImportError:  # pragma: no cover - the exporter ships with the engine
            notes.append("DICOM Spatial Registration export unavailable")
            return None
        target = folder / "reg.dcm"
        try:
            write_spatial_registration(
                result,
                target,
                planning_ct=planning,
                cbct=day,
                patient_id=request["patient_external_id"],
            )
        except IgrtError as exc:
            notes.append(f"no DICOM Spatial Registration: {exc}")
            return None
        staged = self.service.store.temp_path(".dcm")
        target.replace(staged)
        return self.service.store.store(staged).relative_path

    def _finish(self, job_id: str, outcome: dict[str, Any]) -> None:
        with self.service.sessions() as db:
            job = db.get(RegistrationJob, job_id)
            if job is None:
                return
            for name, value in outcome.items():
                setattr(job, name, value)
            job.finished_at = utc_now()
            action = (
                "registration.complete"
                if job.status == RegistrationStatusValues.COMPLETED.value
                else "registration.fail"
            )
            detail: dict[str, Any] = {
                "session_id": job.session_id,
                "status": job.status,
                "quality": job.quality,
                "repositioning_required": job.repositioning_required,
                "software_version": igrt.__version__,
            }
            record_audit(db, None, action, "registration", job.id, detail)
            db.commit()
