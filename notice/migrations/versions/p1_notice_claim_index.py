"""notifications: the claim's partial indexes (constant time however many were sent, the
next_attempt_at one gone) and the retention's index on sent rows

Revision ID: p1
Revises: d1
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "p1"
down_revision = "d1"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_notifications_pending", "notifications")
    op.create_index(
        "ix_notifications_pending_id", "notifications", ["id"], postgresql_where=PENDING
    )
    op.create_index(
        "ix_notifications_unsent_request",
        "notifications",
        ["request_kind", "request_id", "id"],
        postgresql_where=sa.text("status IN ('pending', 'failed')"),
    )
    op.create_index(
        "ix_notifications_sent_at",
        "notifications",
        ["sent_at"],
        postgresql_where=sa.text("status = 'sent'"),
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_sent_at", "notifications")
    op.drop_index("ix_notifications_unsent_request", "notifications")
    op.drop_index("ix_notifications_pending_id", "notifications")
    op.create_index(
        "ix_notifications_pending", "notifications", ["next_attempt_at"], postgresql_where=PENDING
    )
