"""The tables. Ids are UUID 4 strings; timestamps are UTC; enum columns hold the enum values.

Uploads and audit events are immutable: the ORM refuses to update or delete them
(:func:`_refuse_changes_to_immutable_rows`) and migration ``0001`` adds database triggers that do
the same for anyone bypassing the ORM.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from api.db.base import Base, new_id, utc_now
from api.dicom.objects import (
    ObjectKindValues,
    ProcessingStatusValues,
    QuarantineActionValues,
    QuarantineReasonValues,
    SourceRoleValues,
)
from api.enums import (
    AssessmentStatusValues,
    GeometrySourceValues,
    RegistrationStatusValues,
    ReviewOutcomeValues,
    ReviewSubjectValues,
    RoleValues,
    SessionKindValues,
    UploadFormatValues,
    UploadKindValues,
    VolumeFormatValues,
    VolumeKindValues,
)
from igrt.frame_of_reference import PatientPositionValues

__all__ = [
    "ApiToken",
    "AuditEvent",
    "DicomInstance",
    "DicomQuarantineItem",
    "DicomQuarantineResolution",
    "ImmutableRowError",
    "MotionAssessment",
    "PairRegistration",
    "Patient",
    "RegistrationJob",
    "Review",
    "TreatmentSession",
    "Upload",
    "VolumeUpload",
    "WebSession",
]


class ImmutableRowError(RuntimeError):
    """Code tried to change or delete an upload or an audit event (a programming error)."""


def _one_of(column: str, values: type[Any]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class ApiToken(Base):
    """A bearer token: only its keyed hash is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(_one_of("role", RoleValues), name="role"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)


class Patient(Base):
    """A patient. ``external_id`` (the hospital's id) is an identifier: never log it."""

    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    is_demo: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)

    sessions: Mapped[list[TreatmentSession]] = relationship(
        back_populates="patient", order_by="TreatmentSession.created_at"
    )


class TreatmentSession(Base):
    """A simulation day or a treatment fraction of one patient."""

    __tablename__ = "treatment_sessions"
    __table_args__ = (
        CheckConstraint(_one_of("kind", SessionKindValues), name="kind"),
        CheckConstraint(_one_of("patient_position", PatientPositionValues), name="position"),
        CheckConstraint(
            "(kind = 'fraction' AND fraction_number IS NOT NULL AND fraction_number >= 1) "
            "OR (kind = 'simulation' AND fraction_number IS NULL)",
            name="fraction_number",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    fraction_number: Mapped[int | None] = mapped_column(default=None)
    patient_position: Mapped[str] = mapped_column(String(4))
    protocol_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)

    patient: Mapped[Patient] = relationship(back_populates="sessions")
    uploads: Mapped[list[Upload]] = relationship(
        back_populates="session", order_by="Upload.created_at"
    )


class Upload(Base):
    """An uploaded image file, stored unchanged, plus its canonical frame sequence (MHA).

    ``stored_path`` and ``sequence_path`` are relative to the file store root; both files are
    content-addressed by their sha256.
    """

    __tablename__ = "uploads"
    __table_args__ = (
        CheckConstraint(_one_of("kind", UploadKindValues), name="kind"),
        CheckConstraint(_one_of("format", UploadFormatValues), name="format"),
        CheckConstraint(_one_of("geometry_source", GeometrySourceValues), name="geometry_source"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str | None] = mapped_column(String(255), default=None)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    stored_path: Mapped[str] = mapped_column(String(200))
    sequence_sha256: Mapped[str] = mapped_column(String(64))
    sequence_path: Mapped[str] = mapped_column(String(200))
    n_frames: Mapped[int]
    rows: Mapped[int]
    columns: Mapped[int]
    dtype: Mapped[str] = mapped_column(String(16))
    intensity: Mapped[str] = mapped_column(String(16))
    geometry: Mapped[dict[str, Any]]
    geometry_source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)

    session: Mapped[TreatmentSession] = relationship(back_populates="uploads")


class AuditEvent(Base):
    """One entry of the append-only audit trail (no patient identifiers in ``detail``)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    occurred_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor_token_id: Mapped[str | None] = mapped_column(String(36), default=None)
    actor_role: Mapped[str | None] = mapped_column(String(16), default=None)
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(36), index=True)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class MotionAssessment(Base):
    """A breathing-motion assessment of one fluoroscopy upload (immutable).

    Holds the dome track and, when the analysis could run, the analysis and the
    motion-management decision. A therapist's dome hint (a pixel of the first frame the tracker
    started from) is kept with the name of who gave it; a re-run with a hint is a new row naming
    the one it repeats (``rerun_of``).
    """

    __tablename__ = "motion_assessments"
    __table_args__ = (CheckConstraint(_one_of("status", AssessmentStatusValues), name="status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(2000), default=None)
    context: Mapped[str] = mapped_column(String(32))
    protocol_version: Mapped[str] = mapped_column(String(64))
    tracked_fraction: Mapped[float] = mapped_column(Float())
    track: Mapped[list[dict[str, Any]]] = mapped_column(JSON())
    recommendation: Mapped[str | None] = mapped_column(String(32), default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(), default=None)
    software_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)
    dome_hint_column_px: Mapped[float | None] = mapped_column(Float(), default=None)
    dome_hint_row_px: Mapped[float | None] = mapped_column(Float(), default=None)
    dome_hint_given_by: Mapped[str | None] = mapped_column(String(100), default=None)
    rerun_of: Mapped[str | None] = mapped_column(String(36), default=None)

    @property
    def dome_hint(self) -> dict[str, Any] | None:
        """The hint as the API shows it, or None when the dome was found automatically."""
        if self.dome_hint_column_px is None or self.dome_hint_row_px is None:
            return None
        return {
            "column_px": self.dome_hint_column_px,
            "row_px": self.dome_hint_row_px,
            "given_by": self.dome_hint_given_by,
            "given_by_token_id": self.created_by,
        }


class Review(Base):
    """A reviewer's verdict on a result (immutable): approved, or overridden with a reason.

    A correction is a new review naming the one it ``supersedes``; the latest review of a
    subject (the one nothing supersedes) is the standing one. ``subject_type`` says which table
    ``subject_id`` points into (motion assessments now, registrations later).
    """

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint(_one_of("subject_type", ReviewSubjectValues), name="subject_type"),
        CheckConstraint(_one_of("outcome", ReviewOutcomeValues), name="outcome"),
        CheckConstraint(
            "outcome = 'approved' OR (reason IS NOT NULL AND length(reason) > 0)",
            name="override_reason",
        ),
        # One first review per result: two simultaneous first reviews cannot both stand.
        Index(
            "uq_reviews_first_review",
            "subject_type",
            "subject_id",
            unique=True,
            sqlite_where=text("supersedes_id IS NULL"),
            postgresql_where=text("supersedes_id IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(36), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(2000), default=None)
    decision: Mapped[str | None] = mapped_column(String(64), default=None)
    supersedes_id: Mapped[str | None] = mapped_column(
        ForeignKey("reviews.id"), unique=True, default=None
    )
    couch_correction_iec_support_mm: Mapped[list[float] | None] = mapped_column(
        JSON(), default=None
    )
    reviewer_role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    created_by: Mapped[str] = mapped_column(ForeignKey("api_tokens.id"))


class VolumeUpload(Base):
    """An uploaded planning CT or CBCT, stored unchanged, plus its canonical MetaImage.

    ``stored_path`` (the file as sent) and ``volume_path`` (an MHA with the exact geometry,
    Frame of Reference UID and patient position, which registrations read) are relative to the
    file store root and content-addressed by their sha256. Immutable.
    """

    __tablename__ = "volume_uploads"
    __table_args__ = (
        CheckConstraint(_one_of("kind", VolumeKindValues), name="kind"),
        CheckConstraint(_one_of("format", VolumeFormatValues), name="format"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str | None] = mapped_column(String(255), default=None)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    stored_path: Mapped[str] = mapped_column(String(200))
    volume_sha256: Mapped[str] = mapped_column(String(64))
    volume_path: Mapped[str] = mapped_column(String(200))
    geometry: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)


class RegistrationJob(Base):
    """A CBCT-to-planning-CT registration job and, once it finished, its result.

    The one mutable record: ``status`` moves queued -> running -> completed or failed, and the
    result columns are written once with the final status (the worker never changes a finished
    job). Every transition is a compare-and-set (:mod:`api.job_leases`): one worker claims a
    queued job, holds it under a renewed lease and a time limit, and only the lease holder may
    finish it; a job whose holder died is queued again a bounded number of times, then failed
    with the reason, and one that overran its time limit is failed with the reason.
    """

    __tablename__ = "registration_jobs"
    __table_args__ = (
        CheckConstraint(_one_of("status", RegistrationStatusValues), name="status"),
        CheckConstraint("degrees_of_freedom IN (3, 6)", name="degrees_of_freedom"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    planning_ct_upload_id: Mapped[str] = mapped_column(ForeignKey("volume_uploads.id"))
    cbct_upload_id: Mapped[str] = mapped_column(ForeignKey("volume_uploads.id"))
    degrees_of_freedom: Mapped[int]
    clip_box_lps_mm: Mapped[dict[str, Any] | None] = mapped_column(JSON(), default=None)
    isocentre_lps_mm: Mapped[list[float] | None] = mapped_column(JSON(), default=None)
    # The machine isocentre in a room-frame CBCT's own LPS mm (registration.cbct_placement).
    cbct_isocentre_lps_mm: Mapped[list[float] | None] = mapped_column(JSON(), default=None)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(2000), default=None)
    quality: Mapped[str | None] = mapped_column(String(16), default=None)
    repositioning_required: Mapped[bool | None] = mapped_column(default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(), default=None)
    overlay_paths: Mapped[dict[str, Any] | None] = mapped_column(JSON(), default=None)
    dicom_reg_path: Mapped[str | None] = mapped_column(String(200), default=None)
    # The RT Plan (and structures) the isocentre and clip box come from (api.plan_registration).
    plan_request: Mapped[dict[str, Any] | None] = mapped_column(JSON(), default=None)
    software_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)
    # The claim of a running job (api.job_leases): which worker, until when, and its time limit.
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    deadline_at: Mapped[datetime | None] = mapped_column(default=None)
    # Runs claimed and not handed back by a graceful stop; each run its worker died under is
    # one entry of interruptions ({"attempt", "at", "reason"}): the bound on retries.
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    interruptions: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON(), default=list, server_default=text("'[]'")
    )


class PairRegistration(Base):
    """A kV/MV image pair registered to DRRs of a planning CT (2D/2D), with its result.

    Computed within the request (a few seconds) and written once: immutable. ``request`` names
    the views (received RT Images or fluoroscopy uploads, their beam, intensity and kV source
    angle) and where the isocentre came from; ``result`` is the engine's document
    (:meth:`registration.Pair2DResult.to_dict` with ``kind`` and ``isocentre_source``).
    """

    __tablename__ = "pair_registrations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    planning_ct_upload_id: Mapped[str] = mapped_column(ForeignKey("volume_uploads.id"))
    request: Mapped[dict[str, Any]] = mapped_column(JSON())
    quality: Mapped[str] = mapped_column(String(16))
    repositioning_required: Mapped[bool | None] = mapped_column(default=None)
    result: Mapped[dict[str, Any]] = mapped_column(JSON())
    software_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("api_tokens.id"), default=None)


class DicomInstance(Base):
    """A DICOM instance the receiver stored and filed to a patient's session.

    ``stored_path`` is the instance as received (Part-10, content-addressed). The SOP Instance
    UID is unique: a resend of the same content is acknowledged without a second row. The
    processing columns are written once, after the acknowledgement (:mod:`api.dicom.processing`).
    """

    __tablename__ = "dicom_instances"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ObjectKindValues), name="kind"),
        CheckConstraint(_one_of("source_role", SourceRoleValues), name="source_role"),
        CheckConstraint(
            _one_of("processing_status", ProcessingStatusValues), name="processing_status"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    modality: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("treatment_sessions.id"), index=True)
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    series_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    frame_of_reference_uid: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    n_frames: Mapped[int]
    calling_ae: Mapped[str] = mapped_column(String(16))
    source_role: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    stored_path: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utc_now)
    processing_status: Mapped[str] = mapped_column(String(16), index=True)
    processing_reason: Mapped[str | None] = mapped_column(String(2000), default=None)
    upload_id: Mapped[str | None] = mapped_column(ForeignKey("uploads.id"), default=None)
    volume_upload_id: Mapped[str | None] = mapped_column(
        ForeignKey("volume_uploads.id"), default=None
    )
    assessment_id: Mapped[str | None] = mapped_column(
        ForeignKey("motion_assessments.id"), default=None
    )


class DicomQuarantineItem(Base):
    """A received instance held back: unknown or wrong patient, no fitting session, conflict.

    Never attached to a session. ``patient_id_in_file`` and ``patient_name_in_file`` are what
    the instance said (identifiers: shown to therapists and physicists, never logged);
    ``patient_id`` is the patient that Patient ID named, when one did. Immutable.
    """

    __tablename__ = "dicom_quarantine"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ObjectKindValues), name="kind"),
        CheckConstraint(_one_of("reason_code", QuarantineReasonValues), name="reason_code"),
        UniqueConstraint("sop_instance_uid", "sha256"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    modality: Mapped[str] = mapped_column(String(16))
    patient_id_in_file: Mapped[str] = mapped_column(String(64))
    patient_name_in_file: Mapped[str] = mapped_column(String(200))
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.id"), default=None)
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), default=None)
    series_instance_uid: Mapped[str | None] = mapped_column(String(64), default=None)
    frame_of_reference_uid: Mapped[str | None] = mapped_column(String(64), default=None)
    reason_code: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(2000))
    calling_ae: Mapped[str] = mapped_column(String(16))
    source_role: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    stored_path: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)


class DicomQuarantineResolution(Base):
    """A physicist's decision on one quarantined instance: released to a session, or discarded.

    A released instance becomes a :class:`DicomInstance` of the session (``instance_id``) and is
    processed like a filed one; a discarded one stays in the store, attached to nothing. One per
    quarantined instance; immutable (a decision is not taken back, the audit trail says who).
    """

    __tablename__ = "dicom_quarantine_resolutions"
    __table_args__ = (
        CheckConstraint(_one_of("action", QuarantineActionValues), name="action"),
        CheckConstraint(
            "(action = 'released' AND session_id IS NOT NULL AND instance_id IS NOT NULL) "
            "OR (action = 'discarded' AND session_id IS NULL AND instance_id IS NULL)",
            name="released_to",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    quarantine_item_id: Mapped[str] = mapped_column(ForeignKey("dicom_quarantine.id"), unique=True)
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(2000))
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("treatment_sessions.id"), default=None
    )
    instance_id: Mapped[str | None] = mapped_column(ForeignKey("dicom_instances.id"), default=None)
    resolved_by: Mapped[str] = mapped_column(ForeignKey("api_tokens.id"))
    resolved_at: Mapped[datetime] = mapped_column(default=utc_now)


_IMMUTABLE: tuple[type[Base], ...] = (
    AuditEvent,
    DicomQuarantineItem,
    DicomQuarantineResolution,
    MotionAssessment,
    PairRegistration,
    Review,
    Upload,
    VolumeUpload,
)


@event.listens_for(Session, "before_flush")
def _refuse_changes_to_immutable_rows(session: Session, context: Any, instances: Any) -> None:
    """Uploads and audit events are written once; a correction is a new record."""
    for instance in list(session.dirty) + list(session.deleted):
        if isinstance(instance, _IMMUTABLE) and (
            instance in session.deleted or session.is_modified(instance)
        ):
            raise ImmutableRowError(f"{type(instance).__name__} rows are immutable")


class WebSession(Base):
    """A browser sign-in to the review page, bound to the API token it was made with.

    ``id`` is the keyed hash (:func:`api.security.hash_token`) of the cookie's secret, which is
    not stored. Signing out sets ``ended_at``; a revoked token ends its sessions too, because
    every request checks the token again; ``last_seen_at`` (refreshed at most once a minute)
    ends a session left idle.
    """

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
