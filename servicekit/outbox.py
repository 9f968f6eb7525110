"""Transactional outbox, the writing side: an event staged in the caller's transaction.

The writer adds an event to the caller's session, so the event row commits (or not) with
the state change. :mod:`servicekit.relay` publishes the committed rows.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import MetaData, insert

from contracts import Event
from servicekit.envelope import Envelope
from servicekit.sql import Sql, Statement
from servicekit.tables import outbox_table
from servicekit.tracing import current_traceparent

OUTBOX = outbox_table(MetaData())

_COLUMNS = (
    "event_id",
    "topic",
    "key",
    "ce_type",
    "source",
    "occurred_at",
    "payload",
    "traceparent",
)
_OUTBOX_INSERT = Statement(insert(OUTBOX), columns=_COLUMNS)


class OutboxWriter:
    def __init__(self, source: str) -> None:
        self.source = source
        # The relay of this process (servicekit.relay_wakeups): told of each commit that
        # staged events, so it reads them before the NOTIFY of that commit comes.
        self.wake: Callable[[], None] | None = None

    async def add(self, sql: Sql, event: Event) -> None:
        """Stage ``event`` in the caller's transaction, with the current trace context: the
        row is written with the transaction's other deferred writes, at its commit."""
        envelope = Envelope.wrap(event, self.source, current_traceparent())
        await sql.defer(
            _OUTBOX_INSERT,
            {
                "event_id": envelope.id,
                "topic": event.topic,
                "key": envelope.subject,
                "ce_type": envelope.type,
                "source": envelope.source,
                "occurred_at": envelope.time,
                "payload": event.to_value(),
                "traceparent": envelope.traceparent,
            },
        )
