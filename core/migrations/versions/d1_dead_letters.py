"""dead letters; jobs count their re-drives

Revision ID: d1
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from servicekit.tables import create_dead_letters, drop_dead_letters

revision = "d1"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_dead_letters(op)
    op.add_column("jobs", sa.Column("redrives", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("jobs", "redrives")
    drop_dead_letters(op)
