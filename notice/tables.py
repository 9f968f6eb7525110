"""The notice database: notifications to send and sent, the targets it knows, the inbox,
the dead letters.

notice publishes nothing, so it has no outbox.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)

from servicekit.tables import dead_letters_table, inbox_table

metadata = MetaData()

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("event_type", String(64), nullable=False),
    Column("user_id", String(255), index=True),  # null: a target notice knows no owner
    Column("request_kind", String(16), nullable=False),
    Column("request_id", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    Column("traceparent", String(64)),  # the trace of the event it announces
    Column("redrives", Integer, nullable=False, server_default="0"),  # by an admin
    Index("ix_notifications_request", "request_kind", "request_id", "id"),
    # The claim (notice.repository.claim_next) walks pending rows in id order and looks for
    # an earlier unsent one of the same request: both only among unsent rows, however many
    # were sent. (No index on next_attempt_at: with one, a planner on stale statistics
    # sorted every pending row.) The retention deletes sent rows by age.
    Index("ix_notifications_pending_id", "id", postgresql_where=text("status = 'pending'")),
    Index(
        "ix_notifications_unsent_request",
        "request_kind",
        "request_id",
        "id",
        postgresql_where=text("status IN ('pending', 'failed')"),
    ),
    Index("ix_notifications_sent_at", "sent_at", postgresql_where=text("status = 'sent'")),
)

# Target requests as learnt from target events: core's events name only the request id.
notice_targets = Table(
    "notice_targets",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    Column("model_request_id", BigInteger, nullable=False),
)

inbox = inbox_table(metadata)
dead_letters = dead_letters_table(metadata)
