"""The core database: the job queue, plus the kernel's outbox and inbox."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from servicekit.tables import (
    dead_letters_table,
    inbox_table,
    outbox_table,
    relay_state_table,
)

metadata = MetaData()

job_ids = Sequence("jobs_id_seq", metadata=metadata)

# Rows a worker may claim: queued ones, and running ones whose lease may have run out.
CLAIMABLE = text("state IN ('queued', 'running')")

jobs = Table(
    "jobs",
    metadata,
    Column("id", BigInteger, job_ids, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("step", Integer, nullable=False),
    Column("total_steps", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("data_offset", Integer, nullable=False),
    Column("params", JSONB, nullable=False),
    Column("result", JSONB, nullable=False),
    Column("available_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("cancel_requested", Boolean, nullable=False),
    Column("reason", Text),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("traceparent", String(64)),
    Column("redrives", Integer, nullable=False, server_default="0"),
    UniqueConstraint("kind", "request_id", name="uq_jobs_kind_request"),
    Index("ix_jobs_claimable", "id", postgresql_where=CLAIMABLE),
    Index("ix_jobs_state_kind", "state", "kind"),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
dead_letters = dead_letters_table(metadata)
relay_state = relay_state_table(metadata)
