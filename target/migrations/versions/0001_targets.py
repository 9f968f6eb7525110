"""targets, model request states, outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from servicekit.tables import create_inbox, create_outbox, drop_inbox, drop_outbox

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE targets_id_seq")
    op.create_table(
        "targets",
        sa.Column("id", sa.BigInteger, sa.Sequence("targets_id_seq"), primary_key=True),
        sa.Column("user_id", sa.String(255), nullable=False, index=True),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("model_request_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "model_requests",
        sa.Column("model_request_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    create_outbox(op)
    create_inbox(op)


def downgrade() -> None:
    drop_inbox(op)
    drop_outbox(op)
    op.drop_table("model_requests")
    op.drop_table("targets")
    op.execute("DROP SEQUENCE targets_id_seq")
