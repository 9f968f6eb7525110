"""The kernel's own tables, which live in every service database that needs them.

``outbox``: events written in the same transaction as the state change they
announce; kept after publishing as the service's event log (until the retention
setting prunes them). ``inbox``: the ids of events a consumer has applied,
written in the same transaction as the effect, so a redelivery changes nothing.
``relay_state``: what the outbox relay remembers across restarts: the broker cluster
it published to (a different one has lost the outbox's events: they go out again) and
what retention has pruned (a re-publish cannot send those).
"""

from __future__ import annotations

from alembic.operations import Operations
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSON

OUTBOX_CHANNEL = "outbox"


def _outbox_columns() -> list[Column]:
    return [
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(255), nullable=False),
        Column("key", String(255), nullable=False),
        Column("ce_type", String(255), nullable=False),
        Column("source", String(255), nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("payload", JSON, nullable=False),  # json, not jsonb: keeps the key order
        Column("traceparent", String(64)),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
    ]


def _inbox_columns() -> list[Column]:
    return [
        Column("event_id", String(64), primary_key=True),
        Column("consumer", String(255), primary_key=True),
        Column("topic", String(255), nullable=False),
        Column("ce_type", String(255), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


def _relay_state_columns() -> list[Column]:
    return [
        Column("relay", String(255), primary_key=True),  # the publishing service's name
        Column("cluster_id", String(255), nullable=False),
        # Rows up to this outbox id are being published again to this cluster, before newer ones.
        Column("republish_through", BigInteger),
        Column("pruned_rows", BigInteger, nullable=False, server_default="0"),  # ever pruned
        # How many events the last re-publish could not send because retention had pruned them.
        Column("republish_missing", BigInteger, nullable=False, server_default="0"),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


_UNPUBLISHED = text("published_at IS NULL")


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        *_outbox_columns(),
        Index("ix_outbox_unpublished", "id", postgresql_where=_UNPUBLISHED),
    )


def inbox_table(metadata: MetaData) -> Table:
    return Table("inbox", metadata, *_inbox_columns())


def relay_state_table(metadata: MetaData) -> Table:
    return Table("relay_state", metadata, *_relay_state_columns())


def create_outbox(op: Operations) -> None:
    """Migration step: the outbox table and the trigger that wakes the relay."""
    op.create_table("outbox", *_outbox_columns())
    op.create_index("ix_outbox_unpublished", "outbox", ["id"], postgresql_where=_UNPUBLISHED)
    op.execute(
        "CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )


def drop_outbox(op: Operations) -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")
    op.drop_table("outbox")


def create_inbox(op: Operations) -> None:
    op.create_table("inbox", *_inbox_columns())


def drop_inbox(op: Operations) -> None:
    op.drop_table("inbox")


def create_relay_state(op: Operations) -> None:
    op.create_table("relay_state", *_relay_state_columns())


def drop_relay_state(op: Operations) -> None:
    op.drop_table("relay_state")
