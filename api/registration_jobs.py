"""Registration jobs: a small thread pool that runs queued jobs and persists every transition.

A job is a :class:`~api.db.models.RegistrationJob` row. ``POST .../registrations`` commits it as
``queued`` and hands its id to :meth:`RegistrationWorker.submit`; a worker thread marks it
``running`` (committed), reads both canonical volumes, runs
:func:`registration.register_cbct_to_ct`, stores the overlay PNGs and the DICOM Spatial
Registration in the content-addressed file store, and commits ``completed`` with the result
document (or ``failed`` with the reason) plus an audit event, in one transaction.

Claims, leases and time limits (:mod:`api.job_leases`): a worker thread runs a job only if its
compare-and-set ``queued -> running`` wins, so exactly one worker of any number of processes on
one database runs it; a heartbeat renews the leases of the jobs this process runs, and a sweep
(same thread) queues again running jobs whose worker died (lease expired, or a dead process of
this host), up to ``IGRT_REGISTRATION_MAX_ATTEMPTS`` runs in all, then fails them with the
reason; it fails jobs past their time limit (``IGRT_REGISTRATION_TIME_LIMIT_S``) at once, without
a retry. A job given up that way is never written over by the run it took from: that run's late
result is discarded (a thread cannot be stopped, so the computation itself runs to its end,
holding its worker thread).

Budget: a job runs only while it holds a slot of the service's heavy-work budget
(:mod:`api.work_budget`); it waits for one queued.

Where jobs run: in the service process by default (``IGRT_REGISTRATION_IN_PROCESS=true``). With
``false`` this process only queues them (``submit`` leaves a job queued) and ``igrt worker``
processes run them: :meth:`RegistrationWorker.serve_queue` polls the database for queued jobs,
offers as many as it has free threads, and the same claim, heartbeat, execution and result
writing as in the service apply. A worker told to stop (:meth:`RegistrationWorker.stop`) waits a
grace period for its running jobs, then queues again those still running (their leases are
released, nothing of them was written) so that another worker runs them.

Restart policy (:meth:`RegistrationWorker.recover`, run at start-up): a job still ``queued``
was never started, so it is queued again (its inputs are immutable uploads); a job left
``running`` by a dead process was interrupted: it is queued again, its interruption recorded
in the job's ``interruptions`` and audited (``registration.retry``), unless that was its last
attempt, when it is ``failed`` with the reason (:func:`~api.job_leases.interrupted_reason`).
Running a job again is safe: nothing of a run is written before its result, in one
transaction, by the lease holder. A graceful stop waits for running jobs and leaves the queued
ones queued.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

import igrt
from api.audit import record_audit
from api.db.models import DicomInstance, Patient, RegistrationJob, TreatmentSession, VolumeUpload
from api.enums import RegistrationStatusValues
from api.job_leases import JobLeases, ReapedJob
from api.plan_registration import PlanSources, plan_focus_from_store
from api.volumes import read_stored_volume
from igrt.errors import IgrtError

if TYPE_CHECKING:
    from api.service import Service

__all__ = [
    "OVERLAY_KINDS",
    "OVERLAY_PLANES",
    "OVERLAY_STAGES",
    "RegistrationWorker",
    "overlay_key",
]

_LOG = logging.getLogger("api.registration_jobs")

OVERLAY_PLANES = ("axial", "coronal", "sagittal")
OVERLAY_KINDS = ("checkerboard", "blend", "ct", "cbct")
OVERLAY_STAGES = ("before", "after")


def overlay_key(stage: str, plane: str, kind: str) -> str:
    """Key of one overlay PNG in a job's ``overlay_paths``."""
    return f"{stage}/{plane}/{kind}"


class RegistrationWorker:
    """Runs registration jobs of one service on a bounded thread pool.

    ``runs_jobs`` (``IGRT_REGISTRATION_IN_PROCESS``): whether this process runs jobs at all;
    when it does not, :meth:`submit` leaves them queued for ``igrt worker`` processes.
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        settings = service.settings
        self.runs_jobs = settings.registration_in_process
        self.leases = JobLeases(
            service.sessions,
            lease_s=settings.job_lease_s,
            max_attempts=settings.registration_max_attempts,
        )
        self._pending = 0  # jobs handed to the pool and not yet done (claimed or not)
        self._freed = threading.Event()  # a pool thread came free: a queue poll may offer more
        self._serving_queue = False  # a dedicated worker (serve_queue) polls for every job
        self._executor: ThreadPoolExecutor | None = None
        self._held: set[str] = set()
        self._offered: set[str] = set()  # queued jobs the sweep handed to the pool
        self._held_lock = threading.Lock()
        self._stop = threading.Event()
        # Set first on shutdown: a job still waiting for a heavy-work slot stays queued.
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start(self) -> None:
        """Create the thread pool and the lease sweeper (idempotent)."""
        self._stopping.clear()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.service.settings.registration_workers,
                thread_name_prefix="registration",
            )
        if self._sweeper is None:
            self._stop.clear()
            self._sweeper = threading.Thread(
                target=self._sweep_until_stopped, name="registration-leases", daemon=True
            )
            self._sweeper.start()

    def shutdown(self) -> None:
        """Wait for running jobs; queued ones stay queued in the database for the next start."""
        self._stopping.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._sweeper is not None:
            self._stop.set()
            self._sweeper.join()
            self._sweeper = None

    def submit(self, job_id: str) -> None:
        """Queue a committed job (it runs here only if this process claims it).

        A process that does not run jobs (``IGRT_REGISTRATION_IN_PROCESS=false``) leaves it
        queued in the database, where an ``igrt worker`` finds it.
        """
        if not self.runs_jobs:
            return
        self.start()
        assert self._executor is not None
        with self._held_lock:
            self._pending += 1
        future = self._executor.submit(self._run, job_id)
        future.add_done_callback(self._done)

    def _done(self, _future: Future[None]) -> None:
        with self._held_lock:
            self._pending -= 1
        self._freed.set()

    def recover(self) -> tuple[int, int]:
        """Apply the restart policy; returns (failed running jobs, jobs queued here).

        The queued jobs include the interrupted ones queued again. A process that does not run
        jobs retries or fails the abandoned ones and offers none.
        """
        failed = sum(not job.requeued for job in self.reap_abandoned())
        queued = self.leases.queued() if self.runs_jobs else []
        for job_id in queued:
            self.submit(job_id)
        return failed, len(queued)

    def reap_abandoned(self) -> list[ReapedJob]:
        """Queue again or fail the running jobs no live worker holds (start-up)."""
        return self.leases.reap(then=self._audit_reaped, unleased=True)

    # --- a dedicated worker process (igrt worker) ------------------------------------------

    def offer_queued(self) -> int:
        """Hand the oldest queued jobs to the pool's free threads; how many were offered.

        Only free threads are filled, so a job this worker cannot start at once stays in the
        database for another worker (a job offered to two workers runs on the one whose claim
        wins; the other's thread comes free at once).
        """
        with self._held_lock:
            free = self.service.settings.registration_workers - self._pending
        if free <= 0 or self._stopping.is_set():
            return 0
        offered = self.leases.queued()[:free]
        for job_id in offered:
            self.submit(job_id)
        return len(offered)

    def serve_queue(
        self,
        stop: threading.Event,
        *,
        poll_s: float = 1.0,
        on_poll: Callable[[], None] | None = None,
    ) -> None:
        """Run queued jobs until ``stop`` is set (returns then; see :meth:`stop`).

        Polls every ``poll_s`` and as soon as a thread comes free; the lease sweeper (renewal,
        failing abandoned jobs) runs beside it. ``on_poll`` runs after each poll that did not fail
        (a liveness signal).
        """
        self._serving_queue = True
        self.start()
        while not stop.is_set():
            self._freed.clear()
            try:
                self.offer_queued()
            except Exception:  # the database may be away for a moment; try again next time
                _LOG.exception("registration queue poll failed")
            else:
                if on_poll is not None:
                    on_poll()
            deadline = time.monotonic() + poll_s
            while not stop.is_set() and not self._freed.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # A short wait on the stop event keeps a SIGTERM prompt.
                stop.wait(min(remaining, 0.05))

    def stop(self, grace_s: float, hurry: threading.Event | None = None) -> set[str]:
        """Stop taking jobs, wait up to ``grace_s`` (or until ``hurry``), release the rest.

        Returns the jobs queued again (their computation still runs on a thread that cannot be
        stopped: the caller ends the process without waiting for it). With none, the pool and
        the sweeper are shut down.
        """
        self._stopping.set()
        deadline = time.monotonic() + grace_s
        while True:
            with self._held_lock:
                pending, held = self._pending, set(self._held)
            if pending == 0 or time.monotonic() >= deadline:
                break
            if hurry is not None and hurry.is_set():
                break
            self._freed.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            self._freed.clear()
        if not pending:
            self.shutdown()
            return set()
        released = self.leases.release(held)
        for job_id in sorted(released):
            _LOG.warning("registration job released to the queue at stop", extra={"job_id": job_id})
        self._stop.set()  # no more renewals: the sweeper ends
        return released

    @property
    def idle(self) -> bool:
        """Whether no job of this process is running or about to."""
        with self._held_lock:
            return self._pending == 0

    def sweep(self) -> list[ReapedJob]:
        """Renew leases, retry or fail dead and overdue jobs, run jobs left queued a while.

        Dead and overdue jobs are any process's. A job another process queued (the DICOM
        receiver's automatic registrations) and could not start, because it stopped or died,
        is run here rather than waiting for a restart; the compare-and-set claim keeps it to
        one worker whoever else was offered it.
        """
        with self._held_lock:
            held = set(self._held)
        self.leases.renew(held)
        reaped = self._reap()
        if self._serving_queue:
            return reaped  # serve_queue offers every queued job, as threads come free
        for job_id in self.leases.queued(older_than_s=self.leases.lease_s):
            with self._held_lock:
                offered = job_id in self._offered
                self._offered.add(job_id)
            if not offered:
                self.submit(job_id)
        return reaped

    def _sweep_until_stopped(self) -> None:
        interval_s = self.leases.lease_s / 3.0
        while not self._stop.wait(interval_s):
            try:
                self.sweep()
            except Exception:  # the database may be away for a moment; try again next time
                _LOG.exception("registration lease sweep failed")

    def _reap(self) -> list[ReapedJob]:
        """Retry or fail the jobs no live worker holds; offer the retried ones to this pool.

        A queue-serving worker finds them at its next poll; a service offers them at once
        rather than after the sweep's wait for jobs left queued.
        """
        reaped = self.leases.reap(then=self._audit_reaped)
        if not self._serving_queue:
            for job in reaped:
                if job.requeued:
                    with self._held_lock:
                        self._offered.add(job.job_id)  # the sweep need not offer it again
                    self.submit(job.job_id)
        return reaped

    @staticmethod
    def _audit_reaped(db: Session, job: ReapedJob) -> None:
        action = "registration.retry" if job.requeued else "registration.fail"
        detail = {"reason": job.reason, "attempt": job.attempt}
        record_audit(db, None, action, "registration", job.job_id, detail)

    # --- one job --------------------------------------------------------------------------

    def _run(self, job_id: str) -> None:
        # A job shares the process's heavy-work budget with uploads and assessments; it waits
        # for a slot still queued, so its time limit counts from when it really runs.
        with self.service.heavy_work.slot_when_free(self._stopping) as running:
            if running and not self._stopping.is_set():
                self._run_claimed(job_id)

    def _run_claimed(self, job_id: str) -> None:
        settings = self.service.settings
        # Held before the claim, so a stop that releases leases never misses a job claimed
        # a moment before (renewing or releasing a job this worker lost changes nothing).
        with self._held_lock:
            self._held.add(job_id)
        if not self.leases.claim(job_id, time_limit_s=settings.registration_time_limit_s):
            with self._held_lock:
                self._held.discard(job_id)
            return  # another worker has it, or it is no longer queued
        try:
            outcome = self._execute(job_id)
        except Exception:
            _LOG.exception("registration job crashed", extra={"job_id": job_id})
            outcome = {
                "status": RegistrationStatusValues.FAILED.value,
                "reason": "internal error while registering",
            }
        finally:
            with self._held_lock:
                self._held.discard(job_id)
        self._finish(job_id, outcome)

    def _execute(self, job_id: str) -> dict[str, Any]:
        with self.service.sessions() as db:
            job = db.get(RegistrationJob, job_id)
            if job is None:  # pragma: no cover - claimed a moment ago
                raise RuntimeError("a claimed registration job is missing")
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
                "cbct_isocentre_lps_mm": job.cbct_isocentre_lps_mm,
                "plan": self._plan_sources(db, job.plan_request),
            }
        try:
            return self._register(job_id, request)
        except IgrtError as exc:
            root = str(self.service.store.root)
            return {
                "status": RegistrationStatusValues.FAILED.value,
                "reason": str(exc).replace(root, "<store>")[:2000],
            }

    @staticmethod
    def _plan_sources(db: Session, plan_request: dict[str, Any] | None) -> PlanSources | None:
        """The stored plan (and structures) a job's ``plan_request`` names."""
        if plan_request is None:
            return None
        plan = db.get(DicomInstance, plan_request["rt_plan_instance_id"])
        structures_id = plan_request.get("rt_struct_instance_id")
        structures = None if structures_id is None else db.get(DicomInstance, structures_id)
        if plan is None or (structures_id is not None and structures is None):  # pragma: no cover
            raise RuntimeError("a registration job's plan instances are missing")
        return PlanSources.from_request(
            plan_request, plan.stored_path, None if structures is None else structures.stored_path
        )

    def _register(self, job_id: str, request: dict[str, Any]) -> dict[str, Any]:
        from registration import (
            ClipBox,
            QualityValues,
            prepare_planning_reference,
            register_cbct_to_ct,
        )
        from registration.plan_focus import register_with_plan

        store = self.service.store
        planning = read_stored_volume(store, request["planning_path"])
        day = read_stored_volume(store, request["cbct_path"])
        options: dict[str, Any] = {
            "patient_position": request["patient_position"],
            "degrees_of_freedom": request["degrees_of_freedom"],
            "cbct_isocentre_lps_mm": request["cbct_isocentre_lps_mm"],
            "threads": 1,
        }
        plan: PlanSources | None = request["plan"]
        if plan is not None:
            # As igrt register --plan: the reference is prepared once with the plan's clip box.
            focus = plan_focus_from_store(store, planning, plan)
            reference = prepare_planning_reference(planning, clip_box=focus.clip_box, threads=1)
            result = register_with_plan(reference, day, focus, **options)
        else:
            box = request["clip_box"]
            clip_box = None if box is None else ClipBox(box["lower_lps_mm"], box["upper_lps_mm"])
            result = register_cbct_to_ct(
                planning,
                day,
                clip_box=clip_box,
                isocentre_lps_mm=request["isocentre_lps_mm"],
                **options,
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
        def audit(db: Session) -> None:
            job = db.get(RegistrationJob, job_id)
            assert job is not None
            completed = outcome["status"] == RegistrationStatusValues.COMPLETED.value
            detail: dict[str, Any] = {
                "session_id": job.session_id,
                "status": outcome["status"],
                "quality": outcome.get("quality"),
                "repositioning_required": outcome.get("repositioning_required"),
                "software_version": igrt.__version__,
            }
            action = "registration.complete" if completed else "registration.fail"
            record_audit(db, None, action, "registration", job_id, detail)

        if not self.leases.finish(job_id, outcome, then=audit):
            # Given up meanwhile (time limit, or the lease lapsed): the job's recorded state
            # stands and this result is dropped; fail it now if only the deadline passed.
            _LOG.warning("registration result discarded", extra={"job_id": job_id})
            self._reap()
