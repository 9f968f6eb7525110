"""The mypage_cqrs database: the MyRequest view, each request's timeline, the kernel's inbox.

The view only consumes, so there is no outbox. ``created_exact`` and
``refusal_reason`` are not served as such: the apply rule needs them to stay
order-independent (see :mod:`mypage_cqrs.view`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

from servicekit.tables import dead_letters_table, inbox_table

metadata = MetaData()

MY_REQUESTS = "my_requests"

my_requests = Table(
    MY_REQUESTS,
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("request_id", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("created_exact", Boolean, nullable=False),
    Column("user_id", String(255)),
    Column("name", String(255)),
    Column("model_request_id", BigInteger),
    Column("state", String(32)),
    Column("reason", Text),
    Column("refusal_reason", Text),
    Column("progress", Integer, nullable=False),
    Column("step", Integer, nullable=False),
    Column("total_steps", Integer, nullable=False),
    Column("lms_status", String(16)),
    Index("ix_my_requests_user_created", "user_id", "created_at", "id"),
    Index("ix_my_requests_created", "created_at", "id"),
)

REQUEST_TIMELINE = "request_timeline"

# Each request's timeline: entries of events, never updated (see mypage_cqrs.timeline).
request_timeline = Table(
    REQUEST_TIMELINE,
    metadata,
    Column("event_id", String(64), nullable=False),
    Column("part", SmallInteger, nullable=False),
    Column("request", String(64), nullable=False),  # the my_requests row id
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("state", String(32)),
    Column("actor", String(255)),
    Column("reason", Text),
    Column("detail", JSONB, nullable=False),
    PrimaryKeyConstraint("event_id", "part", name="request_timeline_pkey"),
    Index("ix_request_timeline_request", "request", "at"),
)

inbox = inbox_table(metadata)
dead_letters = dead_letters_table(metadata)
