"""Where the machine isocentre is in a room-frame CBCT, per registration job.

Revision ID: 0012_cbctiso
Revises: 0011_integ
Create Date: 2026-12-07

``registration_jobs.cbct_isocentre_lps_mm``: the machine isocentre in the CBCT's own LPS
coordinates (mm) that places a CBCT of another Frame of Reference on the planning CT by the
treatment isocentre (:mod:`registration.cbct_placement`); null: the default (the CBCT's LPS
origin) when the frames differ, nothing to place when they are shared.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012_cbctiso"
down_revision: str | None = "0011_integ"
branch_labels: str | None = None
depends_on: str | None = None

_JOBS = "registration_jobs"
_COLUMN = "cbct_isocentre_lps_mm"


def upgrade() -> None:
    """Add the CBCT isocentre column."""
    op.add_column(_JOBS, sa.Column(_COLUMN, sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE {_JOBS} DROP COLUMN {_COLUMN}")
    else:
        op.drop_column(_JOBS, _COLUMN)
