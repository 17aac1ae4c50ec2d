"""Volume uploads (planning CT, CBCT) and registration jobs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Volume uploads are immutable like the other uploads (triggers refuse UPDATE and DELETE).
Registration jobs are the one mutable table: their status moves queued -> running -> completed
or failed, and the worker writes the result once, with the final status. Reviews may now be of
a registration (``subject_type`` 'registration'): the check constraint is replaced (on SQLite
by rebuilding the table, whose immutability triggers are then created again).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_VOLUMES = "volume_uploads"
_JOBS = "registration_jobs"
_REVIEWS = "reviews"
_SUBJECT_CHECK = "ck_reviews_subject_type"


def _immutable(table: str) -> None:
    """Triggers refusing UPDATE and DELETE on ``table``."""
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


def _review_subjects(values: tuple[str, ...]) -> None:
    """Replace the reviews' subject_type check constraint."""
    condition = f"subject_type IN ({', '.join(repr(v) for v in values)})"
    if op.get_bind().dialect.name == "sqlite":
        for operation in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {_REVIEWS}_no_{operation}")
        with op.batch_alter_table(_REVIEWS, recreate="always") as batch:
            batch.drop_constraint(op.f(_SUBJECT_CHECK), type_="check")
            batch.create_check_constraint("subject_type", condition)
        _immutable(_REVIEWS)
    else:
        op.drop_constraint(op.f(_SUBJECT_CHECK), _REVIEWS, type_="check")
        op.create_check_constraint("subject_type", _REVIEWS, condition)


def upgrade() -> None:
    """Create both tables (volume uploads immutable) and admit reviews of registrations."""
    op.create_table(
        _VOLUMES,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("stored_path", sa.String(200), nullable=False),
        sa.Column("volume_sha256", sa.String(64), nullable=False),
        sa.Column("volume_path", sa.String(200), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.CheckConstraint("kind IN ('planning_ct', 'cbct')", name=op.f("ck_volume_uploads_kind")),
        sa.CheckConstraint(
            "format IN ('dicom_zip', 'mha', 'nrrd', 'nifti')",
            name=op.f("ck_volume_uploads_format"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["api_tokens.id"], name=op.f("fk_volume_uploads_created_by_api_tokens")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_sessions.id"],
            name=op.f("fk_volume_uploads_session_id_treatment_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_uploads")),
    )
    op.create_index(op.f("ix_volume_uploads_session_id"), _VOLUMES, ["session_id"])
    op.create_table(
        _JOBS,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("planning_ct_upload_id", sa.String(36), nullable=False),
        sa.Column("cbct_upload_id", sa.String(36), nullable=False),
        sa.Column("degrees_of_freedom", sa.Integer(), nullable=False),
        sa.Column("clip_box_lps_mm", sa.JSON(), nullable=True),
        sa.Column("isocentre_lps_mm", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=True),
        sa.Column("quality", sa.String(16), nullable=True),
        sa.Column("repositioning_required", sa.Boolean(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("overlay_paths", sa.JSON(), nullable=True),
        sa.Column("dicom_reg_path", sa.String(200), nullable=True),
        sa.Column("software_version", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'completed', 'failed')",
            name=op.f("ck_registration_jobs_status"),
        ),
        sa.CheckConstraint(
            "degrees_of_freedom IN (3, 6)", name=op.f("ck_registration_jobs_degrees_of_freedom")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["api_tokens.id"],
            name=op.f("fk_registration_jobs_created_by_api_tokens"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_sessions.id"],
            name=op.f("fk_registration_jobs_session_id_treatment_sessions"),
        ),
        sa.ForeignKeyConstraint(
            ["planning_ct_upload_id"],
            ["volume_uploads.id"],
            name=op.f("fk_registration_jobs_planning_ct_upload_id_volume_uploads"),
        ),
        sa.ForeignKeyConstraint(
            ["cbct_upload_id"],
            ["volume_uploads.id"],
            name=op.f("fk_registration_jobs_cbct_upload_id_volume_uploads"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registration_jobs")),
    )
    op.create_index(op.f("ix_registration_jobs_session_id"), _JOBS, ["session_id"])
    _immutable(_VOLUMES)
    _review_subjects(("motion_assessment", "registration"))


def downgrade() -> None:
    """Drop both tables (the triggers go with them); reviews of motion assessments only."""
    _review_subjects(("motion_assessment",))
    op.drop_index(op.f("ix_registration_jobs_session_id"), table_name=_JOBS)
    op.drop_table(_JOBS)
    op.drop_index(op.f("ix_volume_uploads_session_id"), table_name=_VOLUMES)
    op.drop_table(_VOLUMES)
