"""The consumer runtime's parts: pending offsets, cached metric series, the record's span."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracer
from prometheus_client import REGISTRY
from structlog.contextvars import bind_contextvars, get_contextvars, unbind_contextvars

from servicekit import metrics
from servicekit.envelope import header_map
from servicekit.positions import PendingOffsets, Positions
from servicekit.record_spans import RecordSpans

A, B = TopicPartition("model.events", 0), TopicPartition("model.events", 1)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


class Broker:
    """The two calls PendingOffsets makes of a consumer."""

    def __init__(self, assigned: set[TopicPartition], fail: bool = False) -> None:
        self.assigned = assigned
        self.fail = fail
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.commits.append(offsets)


async def test_pending_offsets_commit_the_assigned_partitions_once() -> None:
    pending = PendingOffsets(interval_s=60)
    assert pending.wait_ms(1000) == 1000  # nothing pending: wait as long as asked
    pending.add({A: 5, B: 3})
    pending.add({A: 7})
    assert 0 < pending.wait_ms(1000) <= 1000 and not pending.due()
    broker = Broker({A})  # B was revoked meanwhile: its next reader commits it
    await pending.commit(broker)  # type: ignore[arg-type]
    assert broker.commits == [{A: 7}]
    await pending.commit(broker)  # type: ignore[arg-type]
    assert broker.commits == [{A: 7}]


class Offsets(Broker):
    """What measuring the lag asks of a consumer: ends, beginnings, committed offsets."""

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {A: 20, B: 8}

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return {A: 0, B: 2}

    async def committed(self, partition: TopicPartition) -> int | None:
        return {A: 10}.get(partition)


async def test_the_lag_counts_what_was_applied_since_the_last_commit() -> None:
    pending = PendingOffsets(interval_s=60)
    positions = Positions("model", "lag-test", pending)
    consumer = Offsets({A, B})
    await positions.measure_lag(consumer)  # type: ignore[arg-type]
    assert lag("lag-test", A) == 10 and lag("lag-test", B) == 6  # B: nothing committed yet
    pending.add({A: 18})  # applied, committed within the next interval
    await positions.measure_lag(consumer)  # type: ignore[arg-type]
    assert lag("lag-test", A) == 2 and lag("lag-test", B) == 6


def lag(group: str, partition: TopicPartition) -> float | None:
    labels = {"service": "model", "group": group, "topic": partition.topic}
    return REGISTRY.get_sample_value(
        "kafka_consumer_lag_messages", labels | {"partition": str(partition.partition)}
    )


async def test_pending_offsets_not_taken_are_kept_and_newer_ones_win() -> None:
    pending = PendingOffsets(interval_s=0)
    pending.add({A: 5})
    with pytest.raises(ConnectionError):
        await pending.commit(Broker({A}, fail=True))  # type: ignore[arg-type]
    pending.add({A: 9})  # applied meanwhile
    assert pending.due() and pending.wait_ms(1000) == 0
    broker = Broker({A})
    await pending.commit(broker)  # type: ignore[arg-type]
    assert broker.commits == [{A: 9}]
    pending.add({B: 1})
    pending.drop()
    await pending.commit(broker)  # type: ignore[arg-type]
    assert broker.commits == [{A: 9}]


def test_consumer_series_count_in_the_same_series() -> None:
    series = metrics.ConsumerSeries("svc-parts", "grp-parts")
    labels = {"service": "svc-parts", "group": "grp-parts", "topic": "t"}
    for _ in range(3):
        series.consumed("t", "nocode.x.Y", "applied").inc()
        series.processing("t").observe(0.01)
    consumed = {**labels, "type": "nocode.x.Y", "outcome": "applied"}
    assert REGISTRY.get_sample_value("events_consumed_total", consumed) == 3
    assert REGISTRY.get_sample_value("event_processing_duration_seconds_count", labels) == 3
    series.consumed("t", "nocode.x.Y", "duplicate").inc()
    assert (
        REGISTRY.get_sample_value("events_consumed_total", {**consumed, "outcome": "duplicate"})
        == 1
    )


def record(headers: list[tuple[str, bytes]]) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic="model.events", partition=1, offset=42, timestamp=int(time.time() * 1000),
        timestamp_type=0, key=b"17", value=b"{}", checksum=None, serialized_key_size=2,
        serialized_value_size=2, headers=headers,
    )  # fmt: skip


def test_a_record_span_continues_its_trace_with_its_attributes_and_log_context() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = RecordSpans(provider.get_tracer("t"), "mypage_cqrs")
    rec = record(
        [
            ("ce_id", b"e-1"),
            ("ce_type", b"nocode.model.Requested"),
            ("traceparent", TRACEPARENT.encode()),
        ]
    )
    bind_contextvars(event_id="outer")
    try:
        with spans.open(rec, header_map(rec.headers)):
            assert get_contextvars()["event_id"] == "e-1"
            assert get_contextvars()["event_type"] == "nocode.model.Requested"
        assert get_contextvars()["event_id"] == "outer"
        assert "event_type" not in get_contextvars()
    finally:
        unbind_contextvars("event_id")
    [span] = exporter.get_finished_spans()
    assert span.name == "process model.events"
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert dict(span.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": "model.events",
        "messaging.destination.partition.id": "1",
        "messaging.consumer.group.name": "mypage_cqrs",
        "messaging.kafka.offset": 42,
        "messaging.kafka.message.key": "17",
        "messaging.message.id": "e-1",
        "cloudevents.event_type": "nocode.model.Requested",
    }


def test_a_record_span_that_is_not_kept_still_carries_the_log_context() -> None:
    rec = record([("ce_id", b"e-2")])
    with RecordSpans(NoOpTracer(), "g").open(rec, header_map(rec.headers)) as span:
        assert not span.is_recording()
        assert get_contextvars()["event_id"] == "e-2" and get_contextvars()["event_type"] == ""
    assert "event_id" not in get_contextvars()
