"""The relay's sends: outbox rows to the broker, never two of one key in flight.

A failed send can never be overtaken by a later event of the same request: rows go in
waves holding at most one row per key, and a key stops at its first failure. Each send is
a producer span continuing the trace of the work that stored the row.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from opentelemetry.trace import SpanKind, Tracer

from servicekit.envelope import encode_headers
from servicekit.kafka import BrokerView
from servicekit.tracing import current_traceparent, span_from

Row = Any  # a row of the outbox, columns as attributes


class KeyOrderedSends:
    def __init__(self, producer: AIOKafkaProducer, tracer: Tracer, send_timeout_s: float) -> None:
        self.producer = producer
        self.tracer = tracer
        self.send_timeout_s = send_timeout_s

    async def publish(self, rows: list[Row]) -> tuple[list[Row], Exception | None]:
        """Send rows in waves holding at most one row per key, so a failed send can never
        be overtaken by a later event of the same request; a key stops at its first failure.
        Returns the rows the broker acknowledged and the first error, if any."""
        queues: dict[str, deque[Row]] = {}
        for row in rows:
            queues.setdefault(row.key, deque()).append(row)
        acked: list[Row] = []
        failure: Exception | None = None
        while queues:
            wave = [queue.popleft() for queue in queues.values()]
            results = await asyncio.gather(
                *(self._send(row) for row in wave), return_exceptions=True
            )
            for row, result in zip(wave, results, strict=True):
                if isinstance(result, Exception):
                    failure = failure or result
                    del queues[row.key]
                    continue
                acked.append(row)
                if not queues[row.key]:
                    del queues[row.key]
        return acked, failure

    async def _send(self, row: Row) -> None:
        # The publish continues the trace of the work that stored the row; the record's
        # traceparent names this publish, so each consumer's span is its child.
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": row.topic,
            "messaging.kafka.message.key": row.key,
            "messaging.message.id": row.event_id,
            "cloudevents.event_type": row.ce_type,
        }
        with span_from(
            self.tracer,
            f"publish {row.topic}",
            row.traceparent,
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        ) as span:
            headers = encode_headers(
                id=row.event_id,
                type=row.ce_type,
                source=row.source,
                time=row.occurred_at,
                subject=row.key,
                traceparent=current_traceparent(),
            )
            delivery = await asyncio.wait_for(
                self.producer.send(
                    row.topic,
                    orjson.dumps(orjson.loads(row.payload)),  # the json column's text, compact
                    key=row.key.encode(),
                    headers=headers,
                ),
                self.send_timeout_s,
            )
            metadata = await asyncio.wait_for(delivery, self.send_timeout_s)
            span.set_attribute("messaging.destination.partition.id", str(metadata.partition))
            span.set_attribute("messaging.kafka.offset", metadata.offset)


def split_by_topic(rows: list[Row], view: BrokerView) -> tuple[list[Row], list[Row]]:
    """Rows the broker has a topic for, and the rest; a key waits behind its first
    held row, so it is never overtaken."""
    sendable: list[Row] = []
    held: list[Row] = []
    held_keys: set[str] = set()
    for row in rows:
        if row.topic not in view.topics or row.key in held_keys:
            held.append(row)
            held_keys.add(row.key)
        else:
            sendable.append(row)
    return sendable, held
