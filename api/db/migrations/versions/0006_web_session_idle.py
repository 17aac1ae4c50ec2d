"""Review-page sign-ins end when left idle: ``web_sessions.last_seen_at``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Null means "not seen since sign-in" (the creation time counts).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``web_sessions.last_seen_at``."""
    op.add_column(
        "web_sessions", sa.Column("last_seen_at", sa.DateTime(timezone=False), nullable=True)
    )


def downgrade() -> None:
    """Drop ``web_sessions.last_seen_at``."""
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_column("last_seen_at")
