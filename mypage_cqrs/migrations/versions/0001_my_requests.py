"""the MyRequest view and the inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from servicekit.tables import create_inbox, drop_inbox

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "my_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_exact", sa.Boolean, nullable=False),
        sa.Column("user_id", sa.String(255)),
        sa.Column("name", sa.String(255)),
        sa.Column("model_request_id", sa.BigInteger),
        sa.Column("state", sa.String(32)),
        sa.Column("reason", sa.Text),
        sa.Column("refusal_reason", sa.Text),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("total_steps", sa.Integer, nullable=False),
        sa.Column("lms_status", sa.String(16)),
    )
    op.create_index("ix_my_requests_user_created", "my_requests", ["user_id", "created_at", "id"])
    op.create_index("ix_my_requests_created", "my_requests", ["created_at", "id"])
    create_inbox(op)


def downgrade() -> None:
    drop_inbox(op)
    op.drop_table("my_requests")
