"""notifications remember the trace of the event they announce

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("traceparent", sa.String(64)))


def downgrade() -> None:
    op.drop_column("notifications", "traceparent")
