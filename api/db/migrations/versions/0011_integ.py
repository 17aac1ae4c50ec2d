"""Plan-aware registration jobs, kV/MV pair registrations, quarantine resolutions.

Revision ID: 0011_integ
Revises: 0010_hint
Create Date: 2026-12-07

``registration_jobs.plan_request``: the RT Plan (and RT Structure Set, ROI, margin, beam) a
registration takes its isocentre and clip box from, by received DICOM instance id (null: no
plan). ``dicom_quarantine_resolutions``: what a physicist decided about a quarantined instance,
released to a session (naming the instance row it became) or discarded, with the reason; one per
quarantined instance, immutable like the quarantine itself. ``pair_registrations``: a kV/MV
image pair registered to DRRs of the planning CT, with its request and result, immutable.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011_integ"
down_revision: str | None = "0010_hint"
branch_labels: str | None = None
depends_on: str | None = None

_JOBS = "registration_jobs"
_RESOLUTIONS = "dicom_quarantine_resolutions"
_PAIRS = "pair_registrations"


def _fk(column: str, target: str, table: str = _RESOLUTIONS) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}")
    )


def _immutable(table: str) -> None:
    """Triggers refusing UPDATE and DELETE on ``table`` (as revision 0008 does)."""
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


def upgrade() -> None:
    """Add the plan request column, the resolutions and pair registrations tables."""
    op.add_column(_JOBS, sa.Column("plan_request", sa.JSON(), nullable=True))
    op.create_table(
        _RESOLUTIONS,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("quarantine_item_id", sa.String(36), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("instance_id", sa.String(36), nullable=True),
        sa.Column("resolved_by", sa.String(36), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=False), nullable=False),
        sa.CheckConstraint(
            "action IN ('released', 'discarded')", name=op.f(f"ck_{_RESOLUTIONS}_action")
        ),
        sa.CheckConstraint(
            "(action = 'released' AND session_id IS NOT NULL AND instance_id IS NOT NULL) "
            "OR (action = 'discarded' AND session_id IS NULL AND instance_id IS NULL)",
            name=op.f(f"ck_{_RESOLUTIONS}_released_to"),
        ),
        _fk("quarantine_item_id", "dicom_quarantine"),
        _fk("session_id", "treatment_sessions"),
        _fk("instance_id", "dicom_instances"),
        _fk("resolved_by", "api_tokens"),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{_RESOLUTIONS}")),
        sa.UniqueConstraint(
            "quarantine_item_id", name=op.f(f"uq_{_RESOLUTIONS}_quarantine_item_id")
        ),
    )
    _immutable(_RESOLUTIONS)
    op.create_table(
        _PAIRS,
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("planning_ct_upload_id", sa.String(36), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("quality", sa.String(16), nullable=False),
        sa.Column("repositioning_required", sa.Boolean(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("software_version", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=True),
        _fk("session_id", "treatment_sessions", _PAIRS),
        _fk("planning_ct_upload_id", "volume_uploads", _PAIRS),
        _fk("created_by", "api_tokens", _PAIRS),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{_PAIRS}")),
    )
    op.create_index(op.f(f"ix_{_PAIRS}_session_id"), _PAIRS, ["session_id"])
    _immutable(_PAIRS)


def downgrade() -> None:
    """Drop the table (and its triggers) and the column."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in (_PAIRS, _RESOLUTIONS):
        if sqlite:
            for operation in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")
        op.drop_table(table)
    if sqlite:
        op.execute(f"ALTER TABLE {_JOBS} DROP COLUMN plan_request")
    else:
        op.drop_column(_JOBS, "plan_request")
