"""The target database: target requests, target's record of model states, outbox, inbox."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Sequence, String, Table, Text

from servicekit.tables import (
    dead_letters_table,
    idempotency_table,
    inbox_table,
    outbox_table,
    relay_state_table,
)

metadata = MetaData()

target_ids = Sequence("targets_id_seq", metadata=metadata)

targets = Table(
    "targets",
    metadata,
    Column("id", BigInteger, target_ids, primary_key=True),
    Column("user_id", String(255), nullable=False, index=True),
    Column("type", String(255), nullable=False),
    Column("model_request_id", BigInteger, nullable=False, index=True),
    Column("state", String(32), nullable=False),
    Column("reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Built only from model.events; no foreign key: model's rows live in model's database.
model_requests = Table(
    "model_requests",
    metadata,
    Column("model_request_id", BigInteger, primary_key=True, autoincrement=False),
    Column("state", String(32), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The model's owner, from its events: a user may ask for targets of their own models only.
    Column("user_id", String(255)),
)

outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
dead_letters = dead_letters_table(metadata)
idempotency_keys = idempotency_table(metadata)
relay_state = relay_state_table(metadata)
