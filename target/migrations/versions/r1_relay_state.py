"""the outbox relay remembers the broker cluster it published to

Revision ID: r1
Revises: d1
Create Date: 2026-12-03
"""

from alembic import op

from servicekit.tables import create_relay_state, drop_relay_state

revision = "r1"
down_revision = "d1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_relay_state(op)


def downgrade() -> None:
    drop_relay_state(op)
