"""Motion assessments: the dome track of an upload, and the analysis and decision made on it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

Immutable like uploads and audit events (triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_TABLE = "motion_assessments"


def upgrade() -> None:
    """Create the table and its immutability triggers."""
    op.create_table(
        _TABLE,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("upload_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=True),
        sa.Column("context", sa.String(32), nullable=False),
        sa.Column("protocol_version", sa.String(64), nullable=False),
        sa.Column("tracked_fraction", sa.Float(), nullable=False),
        sa.Column("track", sa.JSON(), nullable=False),
        sa.Column("recommendation", sa.String(32), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("software_version", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.CheckConstraint(
            "status IN ('completed', 'tracked', 'failed')",
            name=op.f("ck_motion_assessments_status"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["api_tokens.id"],
            name=op.f("fk_motion_assessments_created_by_api_tokens"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_sessions.id"],
            name=op.f("fk_motion_assessments_session_id_treatment_sessions"),
        ),
        sa.ForeignKeyConstraint(
            ["upload_id"], ["uploads.id"], name=op.f("fk_motion_assessments_upload_id_uploads")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_motion_assessments")),
    )
    op.create_index(op.f("ix_motion_assessments_session_id"), _TABLE, ["session_id"])
    op.create_index(op.f("ix_motion_assessments_upload_id"), _TABLE, ["upload_id"])
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {_TABLE}_no_{operation.lower()} BEFORE {operation} ON {_TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{_TABLE} rows are immutable'); END"
            )
    elif dialect == "postgresql":  # igrt_refuse_change() comes from revision 0001
        op.execute(
            f"CREATE TRIGGER {_TABLE}_immutable BEFORE UPDATE OR DELETE ON {_TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION igrt_refuse_change()"
        )


def downgrade() -> None:
    """Drop the table (its triggers go with it)."""
    op.drop_index(op.f("ix_motion_assessments_upload_id"), table_name=_TABLE)
    op.drop_index(op.f("ix_motion_assessments_session_id"), table_name=_TABLE)
    op.drop_table(_TABLE)
