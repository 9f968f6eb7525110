"""dead letters

Revision ID: d1
Revises: i1
Create Date: 2026-12-03
"""

from alembic import op

from servicekit.tables import create_dead_letters, drop_dead_letters

revision = "d1"
down_revision = "i1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_dead_letters(op)


def downgrade() -> None:
    drop_dead_letters(op)
