"""Browser sign-in sessions, and the couch correction a registration override may carry.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

``web_sessions`` hold the therapist review page's sign-ins: only a keyed hash of the cookie's
secret is stored, so a copy of the database cannot be replayed as a browser. A row is mutable
once: signing out sets ``ended_at``.

``reviews.couch_correction_iec_support_mm`` is the correction a reviewer applied instead of
the computed one when overriding a registration (IEC 61217 patient-support axes, mm).
``ADD COLUMN`` keeps the reviews' immutability triggers in place on both databases.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_SESSIONS = "web_sessions"


def upgrade() -> None:
    """Create ``web_sessions`` and add the reviewed couch correction."""
    op.create_table(
        _SESSIONS,
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("token_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=False), nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_tokens.id"], name=op.f("fk_web_sessions_token_id_api_tokens")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_token_id"), _SESSIONS, ["token_id"])
    op.add_column("reviews", sa.Column("couch_correction_iec_support_mm", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop ``web_sessions`` and the reviewed couch correction."""
    if op.get_bind().dialect.name == "sqlite":
        # SQLite 3.35+ drops a plain column in place, leaving the triggers alone.
        op.execute("ALTER TABLE reviews DROP COLUMN couch_correction_iec_support_mm")
    else:
        op.drop_column("reviews", "couch_correction_iec_support_mm")
    op.drop_index(op.f("ix_web_sessions_token_id"), table_name=_SESSIONS)
    op.drop_table(_SESSIONS)
