"""job queue, outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from servicekit.tables import create_inbox, create_outbox, drop_inbox, drop_outbox

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE jobs_id_seq")
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger, sa.Sequence("jobs_id_seq"), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_steps", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("data_offset", sa.Integer, nullable=False, server_default="0"),
        sa.Column("params", JSONB, nullable=False, server_default="{}"),
        sa.Column("result", JSONB, nullable=False, server_default="{}"),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("reason", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("kind", "request_id", name="uq_jobs_kind_request"),
    )
    op.create_index(
        "ix_jobs_claimable",
        "jobs",
        ["id"],
        postgresql_where=sa.text("state IN ('queued', 'running')"),
    )
    op.create_index("ix_jobs_state_kind", "jobs", ["state", "kind"])
    create_outbox(op)
    create_inbox(op)


def downgrade() -> None:
    drop_inbox(op)
    drop_outbox(op)
    op.drop_table("jobs")
    op.execute("DROP SEQUENCE jobs_id_seq")
