"""Initial schema: API tokens, patients, treatment sessions, uploads, the audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Uploads and audit events are immutable: triggers refuse UPDATE and DELETE on them in SQLite and
PostgreSQL alike (the ORM refuses too; the triggers guard against anyone bypassing it).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_IMMUTABLE_TABLES = ("audit_events", "uploads")
_POSITIONS = "'HFS', 'HFP', 'FFS', 'FFP', 'HFDR', 'HFDL', 'FFDR', 'FFDL'"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=False), nullable=nullable)


def _creator() -> sa.Column[str]:
    return sa.Column("created_by", sa.String(36), nullable=True)


def upgrade() -> None:
    """Create the tables and the immutability triggers."""
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("token_prefix", sa.String(16), nullable=False),
        _timestamp("created_at"),
        _timestamp("revoked_at", nullable=True),
        sa.CheckConstraint(
            "role IN ('console', 'therapist', 'physicist')", name=op.f("ck_api_tokens_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        _timestamp("occurred_at"),
        sa.Column("actor_token_id", sa.String(36), nullable=True),
        sa.Column("actor_role", sa.String(16), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(36), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_occurred_at"), "audit_events", ["occurred_at"])
    op.create_index(op.f("ix_audit_events_resource_id"), "audit_events", ["resource_id"])
    op.create_table(
        "patients",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("is_demo", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
        _creator(),
        sa.ForeignKeyConstraint(
            ["created_by"], ["api_tokens.id"], name=op.f("fk_patients_created_by_api_tokens")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("external_id", name=op.f("uq_patients_external_id")),
    )
    op.create_table(
        "treatment_sessions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("patient_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fraction_number", sa.Integer(), nullable=True),
        sa.Column("patient_position", sa.String(4), nullable=False),
        sa.Column("protocol_version", sa.String(64), nullable=False),
        _timestamp("created_at"),
        _creator(),
        sa.CheckConstraint(
            "(kind = 'fraction' AND fraction_number IS NOT NULL AND fraction_number >= 1) "
            "OR (kind = 'simulation' AND fraction_number IS NULL)",
            name=op.f("ck_treatment_sessions_fraction_number"),
        ),
        sa.CheckConstraint(
            "kind IN ('simulation', 'fraction')", name=op.f("ck_treatment_sessions_kind")
        ),
        sa.CheckConstraint(
            f"patient_position IN ({_POSITIONS})", name=op.f("ck_treatment_sessions_position")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["api_tokens.id"],
            name=op.f("fk_treatment_sessions_created_by_api_tokens"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_treatment_sessions_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treatment_sessions")),
    )
    op.create_index(op.f("ix_treatment_sessions_patient_id"), "treatment_sessions", ["patient_id"])
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("stored_path", sa.String(200), nullable=False),
        sa.Column("sequence_sha256", sa.String(64), nullable=False),
        sa.Column("sequence_path", sa.String(200), nullable=False),
        sa.Column("n_frames", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("columns", sa.Integer(), nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("intensity", sa.String(16), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("geometry_source", sa.String(16), nullable=False),
        _timestamp("created_at"),
        _creator(),
        sa.CheckConstraint(
            "format IN ('dicom', 'mha', 'raw', 'zip')", name=op.f("ck_uploads_format")
        ),
        sa.CheckConstraint(
            "geometry_source IN ('file', 'request')", name=op.f("ck_uploads_geometry_source")
        ),
        sa.CheckConstraint("kind IN ('fluoroscopy')", name=op.f("ck_uploads_kind")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["api_tokens.id"], name=op.f("fk_uploads_created_by_api_tokens")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_sessions.id"],
            name=op.f("fk_uploads_session_id_treatment_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    op.create_index(op.f("ix_uploads_session_id"), "uploads", ["session_id"])
    _create_immutability_triggers()


def _create_immutability_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in _IMMUTABLE_TABLES:
            for operation in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} rows are immutable'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION igrt_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% rows are immutable', TG_TABLE_NAME; END $$"
        )
        for table in _IMMUTABLE_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION igrt_refuse_change()"
            )


def _drop_immutability_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in _IMMUTABLE_TABLES:
            for operation in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")
    elif dialect == "postgresql":
        for table in _IMMUTABLE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
        op.execute("DROP FUNCTION IF EXISTS igrt_refuse_change()")


def downgrade() -> None:
    """Drop everything this revision created."""
    _drop_immutability_triggers()
    op.drop_index(op.f("ix_uploads_session_id"), table_name="uploads")
    op.drop_table("uploads")
    op.drop_index(op.f("ix_treatment_sessions_patient_id"), table_name="treatment_sessions")
    op.drop_table("treatment_sessions")
    op.drop_table("patients")
    op.drop_index(op.f("ix_audit_events_resource_id"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_occurred_at"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("api_tokens")
