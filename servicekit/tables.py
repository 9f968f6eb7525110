"""The kernel's own tables, which live in every service database that needs them.

``outbox``: events written in the same transaction as the state change they
announce; kept after publishing as the service's event log (until the retention
setting prunes them). ``inbox``: the ids of events a consumer has applied,
written in the same transaction as the effect, so a redelivery changes nothing.
``dead_letters``: the records a consumer could not apply, kept in its own database
(the embedded broker's dead-letter topic lives in memory only) until an admin
re-drives them; each row says what the re-drive did.
``idempotency_keys``: each ``Idempotency-Key`` a caller sent with a command that
succeeded, with the fingerprint of that request and the response it got, written in
the same transaction as the command's effect (``servicekit.idempotency``).
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
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
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


def _dead_letter_columns() -> list[Column]:
    return [
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("consumer", String(255), nullable=False),  # the consumer group
        Column("topic", String(255), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("event_id", String(64), nullable=False),  # "" when undecodable
        Column("ce_type", String(255), nullable=False),
        Column("key", Text),
        Column("headers", JSON, nullable=False),  # [[name, base64 value], ...]
        Column("value", LargeBinary),
        Column("error", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("status", String(16), nullable=False),  # parked | redriven | skipped
        Column("redrives", Integer, nullable=False, server_default="0"),
        Column("outcome", Text),  # what the last re-drive did
        Column(
            "dead_lettered_at", DateTime(timezone=True), nullable=False, server_default=func.now()
        ),
        Column("redriven_at", DateTime(timezone=True)),
    ]


DEAD_LETTER_KEY = ("consumer", "topic", "partition", "offset", "event_id")


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


def dead_letters_table(metadata: MetaData) -> Table:
    return Table(
        "dead_letters",
        metadata,
        *_dead_letter_columns(),
        UniqueConstraint(*DEAD_LETTER_KEY, name="uq_dead_letters_record"),
        Index("ix_dead_letters_status", "status", "id"),
    )


def relay_state_table(metadata: MetaData) -> Table:
    return Table("relay_state", metadata, *_relay_state_columns())


def create_outbox(op: Operations) -> None:
    """Migration step: the outbox table and the trigger that wakes the relay."""
    op.create_table("outbox", *_outbox_columns())
    op.create_index("ix_outbox_unpublished", "outbox", ["id"], postgresql_where=_UNPUBLISHED)
    notify_outbox_without_ids(op)  # as first made; notify_outbox_row_ids came later


def notify_outbox_row_ids(op: Operations) -> None:
    """Migration step: the relay's wake-up names the new row's id, so a relay that has read
    the row already (woken by its own process's commit) does not read again for it."""
    _outbox_trigger(op, payload="NEW.id::text", each="ROW")


def notify_outbox_without_ids(op: Operations) -> None:
    """Undoes :func:`notify_outbox_row_ids`: one wake-up per statement, no payload."""
    _outbox_trigger(op, payload="''", each="STATEMENT")


def _outbox_trigger(op: Operations, payload: str, each: str) -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute(
        "CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', {payload}); RETURN NULL; END $$"
    )
    op.execute(
        f"CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH {each} "
        "EXECUTE FUNCTION outbox_notify()"
    )


def drop_outbox(op: Operations) -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")
    op.drop_table("outbox")


def create_inbox(op: Operations) -> None:
    op.create_table("inbox", *_inbox_columns())


def drop_inbox(op: Operations) -> None:
    op.drop_table("inbox")


def create_dead_letters(op: Operations) -> None:
    op.create_table(
        "dead_letters",
        *_dead_letter_columns(),
        UniqueConstraint(*DEAD_LETTER_KEY, name="uq_dead_letters_record"),
    )
    op.create_index("ix_dead_letters_status", "dead_letters", ["status", "id"])


def drop_dead_letters(op: Operations) -> None:
    op.drop_table("dead_letters")


def _idempotency_columns() -> list[Column]:
    return [
        Column("owner", String(255), primary_key=True),  # the caller: keys are per caller
        Column("key", String(255), primary_key=True),
        Column("request_hash", String(64), nullable=False),  # method, path and body
        # Null only inside the transaction of the request that holds the key.
        Column("status", SmallInteger),
        Column("body", LargeBinary),
        Column("media_type", String(255)),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


def idempotency_table(metadata: MetaData) -> Table:
    return Table(
        "idempotency_keys",
        metadata,
        *_idempotency_columns(),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )


def create_idempotency_keys(op: Operations) -> None:
    op.create_table("idempotency_keys", *_idempotency_columns())
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def drop_idempotency_keys(op: Operations) -> None:
    op.drop_table("idempotency_keys")


def create_relay_state(op: Operations) -> None:
    op.create_table("relay_state", *_relay_state_columns())


def drop_relay_state(op: Operations) -> None:
    op.drop_table("relay_state")
