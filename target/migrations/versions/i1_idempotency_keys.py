"""idempotency keys of target's commands

Revision ID: i1
Revises: 0001
Create Date: 2026-12-03
"""

from alembic import op

from servicekit.tables import create_idempotency_keys, drop_idempotency_keys

revision = "i1"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_idempotency_keys(op)


def downgrade() -> None:
    drop_idempotency_keys(op)
