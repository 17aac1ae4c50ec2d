"""Reviews: a therapist's or physicist's approval, or override with a reason, of a result.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

Immutable like uploads, assessments and audit events (triggers refuse UPDATE and DELETE); a
correction is a new review that names the one it supersedes (at most one successor each).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_TABLE = "reviews"


def upgrade() -> None:
    """Create the table and its immutability triggers."""
    op.create_table(
        _TABLE,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("subject_type", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=True),
        sa.Column("decision", sa.String(64), nullable=True),
        sa.Column("supersedes_id", sa.String(36), nullable=True),
        sa.Column("reviewer_role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=False),
        sa.CheckConstraint(
            "subject_type IN ('motion_assessment')", name=op.f("ck_reviews_subject_type")
        ),
        sa.CheckConstraint(
            "outcome IN ('approved', 'overridden')", name=op.f("ck_reviews_outcome")
        ),
        sa.CheckConstraint(
            "outcome = 'approved' OR (reason IS NOT NULL AND length(reason) > 0)",
            name=op.f("ck_reviews_override_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["api_tokens.id"], name=op.f("fk_reviews_created_by_api_tokens")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["treatment_sessions.id"],
            name=op.f("fk_reviews_session_id_treatment_sessions"),
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["reviews.id"], name=op.f("fk_reviews_supersedes_id_reviews")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_reviews_supersedes_id")),
    )
    op.create_index(op.f("ix_reviews_session_id"), _TABLE, ["session_id"])
    op.create_index(op.f("ix_reviews_subject_id"), _TABLE, ["subject_id"])
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
    op.drop_index(op.f("ix_reviews_subject_id"), table_name=_TABLE)
    op.drop_index(op.f("ix_reviews_session_id"), table_name=_TABLE)
    op.drop_table(_TABLE)
