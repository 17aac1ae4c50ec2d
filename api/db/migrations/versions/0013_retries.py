"""Bounded retries of a registration job whose worker died: its attempts and interruptions.

Revision ID: 0013_retries
Revises: 0012_cbctiso
Create Date: 2026-12-08

- ``registration_jobs.attempts``: runs of the job claimed by a worker and not handed back by a
  graceful stop (:mod:`api.job_leases`); a job is queued again after its worker died while it
  has had fewer than ``IGRT_REGISTRATION_MAX_ATTEMPTS``, failed with the reason otherwise.
  Jobs that already started count one run (they were claimed once), queued ones none.
- ``registration_jobs.interruptions``: one ``{"attempt", "at", "reason"}`` per run its worker
  died under, oldest first (``[]`` for the existing jobs: before this revision such a job was
  failed at once, with the reason in ``reason``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013_retries"
down_revision: str | None = "0012_cbctiso"
branch_labels: str | None = None
depends_on: str | None = None

_JOBS = "registration_jobs"
_COLUMNS = ("attempts", "interruptions")


def upgrade() -> None:
    """Add the two columns; count one run for every job that started."""
    op.add_column(
        _JOBS, sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column(
        _JOBS,
        sa.Column("interruptions", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    )
    op.execute(f"UPDATE {_JOBS} SET attempts = 1 WHERE status <> 'queued'")


def downgrade() -> None:
    """Drop them."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in reversed(_COLUMNS):
        if sqlite:  # as 0012: SQLite drops a column in place, without rebuilding the table
            op.execute(f"ALTER TABLE {_JOBS} DROP COLUMN {name}")
        else:
            op.drop_column(_JOBS, name)
