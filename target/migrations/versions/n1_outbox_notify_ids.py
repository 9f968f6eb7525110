"""the outbox's NOTIFY names the new row's id

Revision ID: n1
Revises: a1
Create Date: 2026-12-04
"""

from alembic import op

from servicekit.tables import notify_outbox_row_ids, notify_outbox_without_ids

revision = "n1"
down_revision = "a1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    notify_outbox_row_ids(op)


def downgrade() -> None:
    notify_outbox_without_ids(op)
