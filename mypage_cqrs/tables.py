"""The mypage_cqrs database: the MyRequest view, plus the kernel's inbox.

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
    String,
    Table,
    Text,
)

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

inbox = inbox_table(metadata)
dead_letters = dead_letters_table(metadata)
