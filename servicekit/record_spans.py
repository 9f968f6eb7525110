"""The span and the log context of the work on one consumed record.

The work on one record is one span, a child of the publish that sent it (the envelope's
``traceparent``): the handler's queries and the events it stages in the outbox join that
trace. Logs within carry the event's id and type.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiokafka import ConsumerRecord
from opentelemetry.trace import Span, SpanKind, Tracer
from structlog.contextvars import bind_contextvars, reset_contextvars

from servicekit.tracing import span_from


class RecordSpans:
    def __init__(self, tracer: Tracer, group_id: str) -> None:
        self.tracer = tracer
        self.group_id = group_id

    @contextmanager
    def open(self, record: ConsumerRecord, headers: dict[str, str]) -> Iterator[Span]:
        """The record's span, current while the block runs; ``headers`` are the record's
        mapped (``envelope.header_map``)."""
        ce_type = headers.get("ce_type", "")
        event_id = headers.get("ce_id")
        with span_from(
            self.tracer,
            f"process {record.topic}",
            headers.get("traceparent"),
            kind=SpanKind.CONSUMER,
        ) as span:
            if span.is_recording():  # attributes only for a span that is kept
                span.set_attributes(self.attributes(record, event_id, ce_type))
            # Tokens, not structlog's bound_contextvars: that one copies the whole context.
            tokens = bind_contextvars(event_id=event_id, event_type=ce_type)
            try:
                yield span
            finally:
                reset_contextvars(**tokens)

    def attributes(
        self, record: ConsumerRecord, event_id: str | None, ce_type: str
    ) -> dict[str, Any]:
        return {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.consumer.group.name": self.group_id,
            "messaging.kafka.offset": record.offset,
            "messaging.kafka.message.key": (record.key or b"").decode("utf-8", "replace"),
            "messaging.message.id": event_id or "",
            "cloudevents.event_type": ce_type,
        }
