"""First start: a therapist token a newcomer can use, and a demo patient with real results.

The demo is a simulation day of the phantom: a 30 s simulated fluoroscopy upload (12 mm
breathing, 4 s period) and its motion assessment, so the motion decision is there at once;
and (``IGRT_DEMO_REGISTRATION``) a first treatment fraction whose simulated CBCT is displaced
from the planning CT by a known shift beyond the 3 mm threshold, with its registration job
queued, so the review page has a registration to show within seconds of start-up.

Both happen only on an empty database and each can be switched off (``IGRT_FIRST_RUN_TOKEN``,
``IGRT_DEMO_DATA``). The demo fluoroscopy is made by the simulator (:mod:`fixtures`) from the
digital phantom and goes through the same ingestion as an upload.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import igrt
from api.assessment import assess_sequence
from api.audit import record_audit
from api.core.logging import log_event
from api.db.models import (
    ApiToken,
    MotionAssessment,
    Patient,
    RegistrationJob,
    TreatmentSession,
    Upload,
    VolumeUpload,
)
from api.enums import (
    RegistrationStatusValues,
    RoleValues,
    SessionKindValues,
    UploadFormatValues,
    UploadKindValues,
    VolumeFormatValues,
    VolumeKindValues,
)
from api.ingest import SUFFIXES, ingest_fluoroscopy
from api.schemas.sessions import DEFAULT_PROTOCOL_VERSION
from api.schemas.uploads import FluoroscopyUploadForm
from api.security import authenticate_token, create_api_token
from api.service import Service
from api.volumes import ingest_volume
from igrt.frame_of_reference import PatientPositionValues
from igrt.patient_identity import PatientIdentity

__all__ = ["DEMO_EXTERNAL_ID", "seed_first_run", "write_secret_file"]

DEMO_EXTERNAL_ID = "DEMO-0001"
"""The demo patient's external id (also its simulated DICOM Patient ID)."""

DEMO_NAME = "Demo^Phantom"
_DEMO_AMPLITUDE_MM = 12.0
_DEMO_PERIOD_S = 4.0
# Anatomy displaced 4 mm inferior (and a little lateral) on the fraction's CBCT: the
# registration must find it and raise the 3 mm repositioning flag.
_DEMO_DISPLACEMENT_LPS_MM = (1.5, -1.0, -4.0)


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600), atomically."""
    staged = path.with_name(f".{path.name}.tmp")
    staged.unlink(missing_ok=True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staged, path)


def _watch_existing_first_run_file(service: Service, db: Session) -> None:
    """A file left by an earlier start: find its token so that its use or age removes it."""
    path = service.settings.first_run_token_path
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        return
    principal = authenticate_token(db, service.pepper, lines[-1]) if lines else None
    if principal is None:
        path.unlink(missing_ok=True)  # revoked or foreign: nothing worth keeping
        return
    service.first_run.watch(principal.token_id)


def _first_run_token(service: Service, db: Session) -> None:
    if db.scalar(select(func.count()).select_from(ApiToken)):
        _watch_existing_first_run_file(service, db)
        return
    row, token = create_api_token(
        db, service.pepper, name="first-run therapist", role=RoleValues.THERAPIST
    )
    path = service.settings.first_run_token_path
    write_secret_file(
        path,
        "# igrt first-run therapist token: use it as 'Authorization: Bearer <token>'.\n"
        "# Make your own with 'igrt token create --role therapist --name NAME', then delete\n"
        "# this file.\n"
        f"{token}\n",
    )
    record_audit(db, None, "token.create", "api_token", row.id, {"role": row.role})
    db.commit()
    service.first_run.watch(row.id)
    log_event("first-run therapist token written", path=str(path), token_id=row.id)


def _create_demo(service: Service, db: Session) -> None:
    try:
        from fixtures import breathing
        from fixtures.fluoro import simulate_fluoro
        from fixtures.phantom import make_phantom
    except ImportError as exc:  # a deployment without the simulator
        log_event(
            "demo data skipped: simulator not installed",
            level=logging.WARNING,
            error=type(exc).__name__,
        )
        return
    from igrt.geometry import xvi_geometry
    from igrt.imageio import write_fluoro_dicom

    settings = service.settings
    log_event("creating the demo patient from the simulator (first start only)")
    signal = breathing.regular(
        _DEMO_AMPLITUDE_MM, _DEMO_PERIOD_S, settings.demo_duration_s, 50.0, seed=0
    )
    simulation = simulate_fluoro(
        make_phantom(),
        signal,
        duration_s=settings.demo_duration_s,
        fps=settings.demo_fps,
        geometry=xvi_geometry(binning=settings.demo_binning),
        seed=0,
        grid_spacing_mm=(1.875, 1.5),  # 4x faster than the default, still a sharp dome
    )
    patient = Patient(external_id=DEMO_EXTERNAL_ID, name=DEMO_NAME, is_demo=True)
    session = TreatmentSession(
        patient=patient,
        kind=SessionKindValues.SIMULATION.value,
        patient_position=PatientPositionValues.HFS.value,
        protocol_version=DEFAULT_PROTOCOL_VERSION,
    )
    form = FluoroscopyUploadForm(format=UploadFormatValues.DICOM)
    with service.store.staging(SUFFIXES[UploadFormatValues.DICOM]) as staged:
        write_fluoro_dicom(
            simulation.sequence,
            staged,
            patient_id=DEMO_EXTERNAL_ID,
            patient_name=DEMO_NAME,
            uid_seed="igrt-demo-fluoro",
        )
        ingested = ingest_fluoroscopy(
            service.store,
            service.limits,
            staged,
            form,
            patient_position=PatientPositionValues.HFS,
            patient=PatientIdentity(DEMO_EXTERNAL_ID, DEMO_NAME),
        )
    upload = Upload(
        session=session,
        kind=UploadKindValues.FLUOROSCOPY.value,
        format=UploadFormatValues.DICOM.value,
        content_type="application/dicom",
        filename="demo-fluoro.dcm",
        **ingested.upload_columns(),
    )
    db.add_all([patient, session, upload])
    db.flush()
    outcome = assess_sequence(
        simulation.sequence,
        patient_position=PatientPositionValues.HFS,
        context="free_breathing",
        protocol_version=DEFAULT_PROTOCOL_VERSION,
        source=f"upload {upload.id}",
    )
    assessment = MotionAssessment(
        session_id=session.id,
        upload_id=upload.id,
        status=outcome.status.value,
        reason=outcome.reason,
        context="free_breathing",
        protocol_version=DEFAULT_PROTOCOL_VERSION,
        tracked_fraction=outcome.tracked_fraction,
        track=outcome.track,
        recommendation=outcome.recommendation,
        result=outcome.result,
        software_version=outcome.software_version,
    )
    db.add(assessment)
    db.flush()
    record_audit(db, None, "patient.create", "patient", patient.id, {"demo": True})
    record_audit(db, None, "session.create", "session", session.id, {"patient_id": patient.id})
    record_audit(db, None, "upload.create", "upload", upload.id, {"session_id": session.id})
    record_audit(
        db,
        None,
        "motion_assessment.create",
        "motion_assessment",
        assessment.id,
        {"status": assessment.status, "recommendation": assessment.recommendation},
    )
    if settings.demo_registration:
        _create_demo_registration(service, db, patient)
    db.commit()
    log_event(
        "demo patient created",
        patient_id=patient.id,
        session_id=session.id,
        upload_id=upload.id,
        assessment_id=assessment.id,
        n_frames=upload.n_frames,
        recommendation=assessment.recommendation,
    )


def _create_demo_registration(service: Service, db: Session, patient: Patient) -> None:
    """Fraction 1 with a planning CT and a displaced CBCT of the phantom, and a queued job.

    The job is only queued here; the worker picks it up when start-up recovers queued jobs.
    """
    from fixtures.fraction import simulate_phantom_fraction
    from igrt.imageio import write_volume_mha

    simulated = simulate_phantom_fraction(_DEMO_DISPLACEMENT_LPS_MM)
    ct, cbct, isocentre = simulated.planning_ct, simulated.cbct, simulated.isocentre_lps_mm
    fraction = TreatmentSession(
        patient=patient,
        kind=SessionKindValues.FRACTION.value,
        fraction_number=1,
        patient_position=PatientPositionValues.HFS.value,
        protocol_version=DEFAULT_PROTOCOL_VERSION,
    )
    db.add(fraction)
    db.flush()
    volumes: dict[VolumeKindValues, VolumeUpload] = {}
    for kind, volume in ((VolumeKindValues.PLANNING_CT, ct), (VolumeKindValues.CBCT, cbct)):
        with service.store.staging(".mha") as staged:
            write_volume_mha(volume, staged, patient_position=PatientPositionValues.HFS.value)
            ingested = ingest_volume(
                service.store,
                service.volume_limits,
                staged,
                VolumeFormatValues.MHA,
                session_position=PatientPositionValues.HFS,
                patient=PatientIdentity(DEMO_EXTERNAL_ID, DEMO_NAME),
            )
        upload = VolumeUpload(
            session_id=fraction.id,
            kind=kind.value,
            format=VolumeFormatValues.MHA.value,
            content_type="application/octet-stream",
            filename=f"demo-{kind.value}.mha",
            size_bytes=ingested.original.size_bytes,
            sha256=ingested.original.sha256,
            stored_path=ingested.original.relative_path,
            volume_sha256=ingested.volume_file.sha256,
            volume_path=ingested.volume_file.relative_path,
            geometry=ingested.geometry,
        )
        db.add(upload)
        volumes[kind] = upload
    db.flush()
    job = RegistrationJob(
        session_id=fraction.id,
        planning_ct_upload_id=volumes[VolumeKindValues.PLANNING_CT].id,
        cbct_upload_id=volumes[VolumeKindValues.CBCT].id,
        degrees_of_freedom=3,
        isocentre_lps_mm=[float(v) for v in isocentre],
        status=RegistrationStatusValues.QUEUED.value,
        software_version=igrt.__version__,
    )
    db.add(job)
    db.flush()
    record_audit(db, None, "session.create", "session", fraction.id, {"patient_id": patient.id})
    for upload in volumes.values():
        record_audit(
            db, None, "volume.create", "volume_upload", upload.id, {"session_id": fraction.id}
        )
    record_audit(db, None, "registration.create", "registration", job.id, {"demo": True})


def seed_first_run(service: Service) -> None:
    """Create the first-run token and the demo patient, each only when its table is empty."""
    settings = service.settings
    with service.sessions() as db:
        if settings.first_run_token:
            _first_run_token(service, db)
        if settings.demo_data and not db.scalar(select(func.count()).select_from(Patient)):
            _create_demo(service, db)
