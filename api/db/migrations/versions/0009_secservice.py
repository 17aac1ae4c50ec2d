"""Concurrency and token lifetime: one first review per result, job leases, token expiry.

Revision ID: 0009_secservice
Revises: 0008_dicomrx
Create Date: 2026-12-07

- ``uq_reviews_first_review``: a partial unique index on ``reviews (subject_type, subject_id)``
  where ``supersedes_id IS NULL``, so two simultaneous first reviews of one result cannot both
  stand (the second insert fails, whatever the isolation level). A database that already holds
  two first reviews of one result (possible before this revision) is refused with the count:
  a person must supersede one of them before upgrading.
- ``registration_jobs.lease_owner``, ``lease_expires_at``, ``deadline_at``: the claim of a job by
  one worker (:mod:`api.job_leases`).
- ``api_tokens.expires_at``: optional token expiry (null: never).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009_secservice"
down_revision: str | None = "0008_dicomrx"
branch_labels: str | None = None
depends_on: str | None = None

_FIRST_REVIEW = "uq_reviews_first_review"
_JOB_COLUMNS = ("lease_owner", "lease_expires_at", "deadline_at")


def _refuse_duplicate_first_reviews() -> None:
    duplicates = op.get_bind().scalar(
        sa.text(
            "SELECT count(*) FROM (SELECT subject_type, subject_id FROM reviews "
            "WHERE supersedes_id IS NULL GROUP BY subject_type, subject_id "
            "HAVING count(*) > 1) AS twice"
        )
    )
    if duplicates:
        raise RuntimeError(
            f"{duplicates} result(s) have two first reviews (a race before revision "
            "0009_secservice): supersede one of each pair, then upgrade again"
        )


def upgrade() -> None:
    """Add the first-review index, the job lease columns and token expiry."""
    _refuse_duplicate_first_reviews()
    op.create_index(
        _FIRST_REVIEW,
        "reviews",
        ["subject_type", "subject_id"],
        unique=True,
        sqlite_where=sa.text("supersedes_id IS NULL"),
        postgresql_where=sa.text("supersedes_id IS NULL"),
    )
    op.add_column("registration_jobs", sa.Column("lease_owner", sa.String(100), nullable=True))
    for name in _JOB_COLUMNS[1:]:
        op.add_column(
            "registration_jobs", sa.Column(name, sa.DateTime(timezone=False), nullable=True)
        )
    op.add_column("api_tokens", sa.Column("expires_at", sa.DateTime(timezone=False), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("registration_jobs") as batch:
        for name in _JOB_COLUMNS:
            batch.drop_column(name)
    op.drop_index(_FIRST_REVIEW, table_name="reviews")
