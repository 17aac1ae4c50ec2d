"""A therapist's dome hint on motion assessments, and which assessment a re-run repeats.

Revision ID: 0010_hint
Revises: 0009_secservice
Create Date: 2026-12-07

``dome_hint_column_px`` / ``dome_hint_row_px``: the pixel of the upload's first frame the
tracker started from (both null: the dome was found automatically); ``dome_hint_given_by``: the
name of the token that gave it, as it was then (``created_by`` holds the token id).
``rerun_of``: the assessment of the same upload this one repeats with a hint (the old row
stays). ``ADD COLUMN`` keeps the table's immutability triggers in place on both databases.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010_hint"
down_revision: str | None = "0009_secservice"
branch_labels: str | None = None
depends_on: str | None = None

_TABLE = "motion_assessments"
_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("dome_hint_column_px", sa.Float()),
    ("dome_hint_row_px", sa.Float()),
    ("dome_hint_given_by", sa.String(100)),
    ("rerun_of", sa.String(36)),
)


def upgrade() -> None:
    """Add the hint's pixel, its giver, and the re-run's origin."""
    for name, type_ in _COLUMNS:
        op.add_column(_TABLE, sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    """Drop them again."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name, _ in reversed(_COLUMNS):
        if sqlite:
            # SQLite 3.35+ drops a plain column in place, leaving the triggers alone.
            op.execute(f"ALTER TABLE {_TABLE} DROP COLUMN {name}")
        else:
            op.drop_column(_TABLE, name)
