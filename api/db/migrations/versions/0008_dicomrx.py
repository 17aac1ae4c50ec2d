"""DICOM receiver: filed instances and the quarantine.

Revision ID: 0008_dicomrx
Revises: 0007_clinical
Create Date: 2026-12-07

``dicom_instances`` holds every instance the receiver filed to a session (unique SOP Instance
UID; its processing columns are written once, after the acknowledgement). ``dicom_quarantine``
holds what it would not attach (unknown or wrong patient, no fitting session, a conflicting
resend); it is immutable like the uploads (triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision: str = "0008_dicomrx"
down_revision: str | None = "0007_clinical"
branch_labels: str | None = None
depends_on: str | None = None

_INSTANCES = "dicom_instances"
_QUARANTINE = "dicom_quarantine"
_KINDS = "kind IN ('ct', 'rt_image', 'fluoroscopy', 'rt_plan', 'rt_struct')"


def _uid(name: str, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(64), nullable=nullable)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def _common(table: str) -> list[SchemaItem]:
    """Columns both tables have: what was received, from whom, where it is stored."""
    return [
        sa.Column("id", sa.String(36), nullable=False),
        _uid("sop_instance_uid"),
        _uid("sop_class_uid"),
        _uid("transfer_syntax_uid"),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        _uid("study_instance_uid", nullable=True),
        _uid("series_instance_uid", nullable=True),
        _uid("frame_of_reference_uid", nullable=True),
        sa.Column("calling_ae", sa.String(16), nullable=False),
        sa.Column("source_role", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("stored_path", sa.String(200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=False), nullable=False),
        sa.CheckConstraint(_KINDS, name=op.f(f"ck_{table}_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
    ]


def _immutable(table: str) -> None:
    """Triggers refusing UPDATE and DELETE on ``table`` (as revision 0004 does)."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON "
                f"{table} BEGIN SELECT RAISE(ABORT, '{table} rows are immutable'); END"
            )
    elif dialect == "postgresql":  # igrt_refuse_change() comes from revision 0001
        op.execute(
            f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION igrt_refuse_change()"
        )


def upgrade() -> None:
    """Create both tables; the quarantine is immutable."""
    op.create_table(
        _INSTANCES,
        *_common(_INSTANCES),
        sa.Column("patient_id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("n_frames", sa.Integer(), nullable=False),
        sa.Column("processing_status", sa.String(16), nullable=False),
        sa.Column("processing_reason", sa.String(2000), nullable=True),
        sa.Column("upload_id", sa.String(36), nullable=True),
        sa.Column("volume_upload_id", sa.String(36), nullable=True),
        sa.Column("assessment_id", sa.String(36), nullable=True),
        sa.CheckConstraint(
            "source_role IN ('planning', 'treatment')", name=op.f("ck_dicom_instances_source_role")
        ),
        sa.CheckConstraint(
            "processing_status IN ('pending', 'done', 'failed', 'stored')",
            name=op.f("ck_dicom_instances_processing_status"),
        ),
        _fk(_INSTANCES, "patient_id", "patients"),
        _fk(_INSTANCES, "session_id", "treatment_sessions"),
        _fk(_INSTANCES, "upload_id", "uploads"),
        _fk(_INSTANCES, "volume_upload_id", "volume_uploads"),
        _fk(_INSTANCES, "assessment_id", "motion_assessments"),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_dicom_instances_sop_instance_uid")),
    )
    for column in (
        "patient_id",
        "session_id",
        "study_instance_uid",
        "series_instance_uid",
        "frame_of_reference_uid",
        "processing_status",
    ):
        op.create_index(op.f(f"ix_{_INSTANCES}_{column}"), _INSTANCES, [column])
    op.create_table(
        _QUARANTINE,
        *_common(_QUARANTINE),
        sa.Column("patient_id_in_file", sa.String(64), nullable=False),
        sa.Column("patient_name_in_file", sa.String(200), nullable=False),
        sa.Column("patient_id", sa.String(36), nullable=True),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.CheckConstraint(
            "reason_code IN ('unknown_patient', 'wrong_patient', 'no_session', "
            "'conflicting_resend')",
            name=op.f("ck_dicom_quarantine_reason_code"),
        ),
        _fk(_QUARANTINE, "patient_id", "patients"),
        sa.UniqueConstraint(
            "sop_instance_uid", "sha256", name=op.f("uq_dicom_quarantine_sop_instance_uid")
        ),
    )
    for column in ("sop_instance_uid", "received_at"):
        op.create_index(op.f(f"ix_{_QUARANTINE}_{column}"), _QUARANTINE, [column])
    _immutable(_QUARANTINE)


def downgrade() -> None:
    """Drop both tables (and the quarantine's triggers)."""
    if op.get_bind().dialect.name == "sqlite":
        for operation in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {_QUARANTINE}_no_{operation}")
    op.drop_table(_QUARANTINE)
    op.drop_table(_INSTANCES)
