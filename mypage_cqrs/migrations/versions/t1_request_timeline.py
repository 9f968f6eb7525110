"""each request's timeline

Revision ID: t1
Revises: 0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "t1"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_timeline",
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("part", sa.SmallInteger, nullable=False),
        sa.Column("request", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32)),
        sa.Column("actor", sa.String(255)),
        sa.Column("reason", sa.Text),
        sa.Column("detail", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("event_id", "part", name="request_timeline_pkey"),
    )
    op.create_index("ix_request_timeline_request", "request_timeline", ["request", "at"])


def downgrade() -> None:
    op.drop_table("request_timeline")
