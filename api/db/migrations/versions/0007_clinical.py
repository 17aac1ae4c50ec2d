"""A physician role: ``api_tokens.role`` admits 'physician'.

Revision ID: 0007_clinical
Revises: 0006
Create Date: 2026-12-07

Device choice and margins (motion-assessment reviews) are approved by the roles the active
protocol names (physician, physicist); therapists approve daily registrations.
"""

from __future__ import annotations

from alembic import op

revision: str = "0007_clinical"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_TABLE = "api_tokens"
_CHECK = "ck_api_tokens_role"


def _roles(*values: str) -> None:
    condition = f"role IN ({', '.join(repr(v) for v in values)})"
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(_TABLE, recreate="always") as batch:
            batch.drop_constraint(op.f(_CHECK), type_="check")
            batch.create_check_constraint("role", condition)
    else:
        op.drop_constraint(op.f(_CHECK), _TABLE, type_="check")
        op.create_check_constraint("role", _TABLE, condition)


def upgrade() -> None:
    """Admit the physician role."""
    _roles("console", "therapist", "physicist", "physician")


def downgrade() -> None:
    """Back to three roles (fails while a physician token exists, which is intended)."""
    _roles("console", "therapist", "physicist")
