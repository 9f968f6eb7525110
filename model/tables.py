"""The model database: model requests, plus the kernel's outbox and inbox."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
)

from servicekit.tables import (
    dead_letters_table,
    idempotency_table,
    inbox_table,
    outbox_table,
    relay_state_table,
)

metadata = MetaData()

model_request_ids = Sequence("model_requests_id_seq", metadata=metadata)

model_requests = Table(
    "model_requests",
    metadata,
    Column("id", BigInteger, model_request_ids, primary_key=True),
    Column("user_id", String(255), nullable=False, index=True),
    Column("model_name", String(255), nullable=False),
    Column("state", String(32), nullable=False),
    Column("reason", Text),
    Column("step", Integer, nullable=False, default=0),
    Column("total_steps", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
dead_letters = dead_letters_table(metadata)
idempotency_keys = idempotency_table(metadata)
relay_state = relay_state_table(metadata)
