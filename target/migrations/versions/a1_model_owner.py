"""target's record of each model's owner, from model's events

Revision ID: a1
Revises: r1
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "a1"
down_revision = "r1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows recorded before this have no owner until their model's next event names it;
    # meanwhile only an admin may ask for a target of such a model.
    op.add_column("model_requests", sa.Column("user_id", sa.String(255)))


def downgrade() -> None:
    op.drop_column("model_requests", "user_id")
