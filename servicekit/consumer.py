"""Consumer runtime: an idempotent, retrying, dead-lettering Kafka consumer.

For each record: decode the envelope, then in one transaction claim its event id
in the inbox and apply the handler; commit the offset only after that transaction
committed. A redelivered event finds its id in the inbox and changes nothing. A
handler that keeps failing is retried with backoff (a database that cannot be
reached spends no attempt: the outage is waited out); after ``max_attempts`` the
record is kept in the service's own ``dead_letters`` table (the embedded broker
forgets its topics on a restart) and published to the service's dead-letter topic
with the error in a header, and the partition moves on. A record that cannot be
decoded goes there at once. An admin re-drives a dead letter through the same
inbox claim (:mod:`servicekit.dead_letters`), so one already applied is skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from sqlalchemy import MetaData
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import Event
from contracts.topics import dead_letter_topic
from servicekit import metrics
from servicekit.db import UnitOfWork, database_unavailable
from servicekit.dead_letters import PARKED, record_dead_letter
from servicekit.envelope import Envelope, UndecodableMessage, decode, header_map
from servicekit.kafka import broker_view
from servicekit.resilience import Backoff, backoff_delay
from servicekit.tables import inbox_table
from servicekit.tracing import span_from

log = structlog.get_logger(__name__)

INBOX = inbox_table(MetaData())
LAG_REFRESH_S = 5.0

Handler = Callable[[Any, Any], Awaitable[None]]


class EventConsumer:
    def __init__(
        self,
        *,
        service: str,
        topics: tuple[str, ...],
        bootstrap_servers: str,
        uow_factory: Callable[[], UnitOfWork],
        handlers: Mapping[type[Event], Handler],
        dead_letter_producer: AIOKafkaProducer,
        tracer: Tracer,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        group_id: str | None = None,
        session_timeout_ms: int = 6_000,
        heartbeat_interval_ms: int = 2_000,
        security: dict[str, Any] | None = None,  # servicekit.kafka.client_security
        fetch_max_wait_ms: int = 10,
    ) -> None:
        self.service = service
        self.group_id = group_id or service
        self.topics = topics
        self.bootstrap_servers = bootstrap_servers
        self.uow_factory = uow_factory
        self.handlers = {contract.ce_type(): handler for contract, handler in handlers.items()}
        self.dlt_producer = dead_letter_producer
        self.tracer = tracer
        self.dead_letter_topic = dead_letter_topic(service)
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.security = security or {}
        self._cluster_id: str | None = None  # the broker cluster this consumer reads
        self._rewind = False  # read the next assigned partitions from their beginning
        self.fetch_max_wait_ms = fetch_max_wait_ms

    async def run(self) -> None:
        restarts = Backoff(0.5, 5.0).retries()
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=self.group_id,
                client_id=self.service,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self.session_timeout_ms,
                heartbeat_interval_ms=self.heartbeat_interval_ms,
                **self.security,
                fetch_max_wait_ms=self.fetch_max_wait_ms,
            )
            lag_reporter: asyncio.Task[None] | None = None
            try:
                consumer.subscribe(self.topics, listener=_RewindOnAssign(self, consumer))
                await consumer.start()
                restarts.reset()
                log.info("consumer started", topics=list(self.topics), group=self.group_id)
                await self._check_cluster(consumer)
                lag_reporter = asyncio.create_task(self._report_lag(consumer))
                async for record in consumer:
                    await self.process(record)
                    partition = TopicPartition(record.topic, record.partition)
                    await consumer.commit({partition: record.offset + 1})
                    highwater = consumer.highwater(partition)
                    if highwater is not None:
                        self._set_lag(partition, highwater - (record.offset + 1))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker gone: start again, uncommitted records come back
                log.warning("consumer interrupted", error=str(exc))
                await asyncio.sleep(restarts.next_delay())
            finally:
                if lag_reporter is not None:
                    lag_reporter.cancel()
                await consumer.stop()

    def _set_lag(self, partition: TopicPartition, lag: int) -> None:
        metrics.CONSUMER_LAG.labels(
            self.service, self.group_id, partition.topic, str(partition.partition)
        ).set(max(0, lag))

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag from the broker's offsets every few seconds, so a consumer stuck on one
        record (or starved of fetches) still shows its lag growing."""
        while True:
            await asyncio.sleep(LAG_REFRESH_S)
            await self._check_cluster(consumer)
            try:
                partitions = list(consumer.assignment())
                ends = await consumer.end_offsets(partitions)
                starts = await consumer.beginning_offsets(partitions)
                for partition in partitions:
                    # Nothing committed yet: the group reads from the earliest record.
                    committed = await consumer.committed(partition)
                    done = starts[partition] if committed is None else committed
                    self._set_lag(partition, ends[partition] - done)
            except Exception as exc:  # the consume loop reports outages; try again later
                log.debug("lag not measured", error=repr(exc))

    async def _check_cluster(self, consumer: AIOKafkaConsumer) -> None:
        """A broker that is another cluster than the one read so far (the embedded broker
        after a restart: empty, then re-filled by the outbox relays) has other offsets:
        the positions and commits of the old one would skip records. Read every partition
        from its beginning again; the inbox skips the events already applied."""
        try:
            cluster = (await broker_view(consumer._client)).cluster_id
        except Exception as exc:  # the consume loop reports outages
            log.debug("cluster id not read", error=repr(exc))
            return
        if cluster is None:
            return
        if self._cluster_id is not None and cluster != self._cluster_id:
            log.warning(
                "consumer met a new broker cluster: reading from the beginning",
                group=self.group_id,
                cluster_id=cluster,
            )
            self._rewind = True
            if assigned := consumer.assignment():
                await consumer.seek_to_beginning(*assigned)
        self._cluster_id = cluster

    async def process(self, record: ConsumerRecord) -> None:
        """Apply one record, retrying; dead-letter it when it cannot be applied.

        The work is one span, a child of the publish that sent the record (the
        envelope's ``traceparent``); the handler's queries and the events it stages
        in the outbox join that trace.
        """
        headers = header_map(record.headers)
        ce_type = headers.get("ce_type", "")
        labels = (self.service, self.group_id, record.topic)
        handler = self.handlers.get(ce_type)
        if ce_type and handler is None:
            metrics.EVENTS_CONSUMED.labels(*labels, ce_type, "ignored").inc()
            return
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.consumer.group.name": self.group_id,
            "messaging.kafka.offset": record.offset,
            "messaging.kafka.message.key": (record.key or b"").decode("utf-8", "replace"),
            "messaging.message.id": headers.get("ce_id", ""),
            "cloudevents.event_type": ce_type,
        }
        with (
            span_from(
                self.tracer,
                f"process {record.topic}",
                headers.get("traceparent"),
                kind=SpanKind.CONSUMER,
                attributes=attributes,
            ) as span,
            structlog.contextvars.bound_contextvars(
                event_id=headers.get("ce_id"), event_type=ce_type
            ),
        ):
            try:
                envelope = decode(record.value, record.headers)
            except UndecodableMessage as exc:
                await self._dead_letter(record, exc, attempts=1, span=span)
                return
            assert handler is not None
            await self._apply_with_retries(record, envelope, handler, span)

    async def _apply_with_retries(
        self, record: ConsumerRecord, envelope: Envelope, handler: Handler, span: Span
    ) -> None:
        labels = (self.service, self.group_id, record.topic)
        log_ = log.bind(subject=envelope.subject)
        started = time.perf_counter()
        attempt = tries = 0
        while True:
            attempt += 1
            tries += 1
            try:
                outcome = await self._apply(record, envelope, handler)
                metrics.EVENT_PROCESSING.labels(*labels).observe(time.perf_counter() - started)
                metrics.EVENTS_CONSUMED.labels(*labels, envelope.type, outcome).inc()
                span.set_attribute("nocode.outcome", outcome)
                log_.debug("event consumed", outcome=outcome)
                return
            except Exception as exc:
                metrics.EVENTS_FAILED.labels(*labels).inc()
                span.record_exception(exc, attributes={"attempt": attempt})
                if database_unavailable(exc):
                    # An outage is not the event's fault: wait it out, spend no attempt.
                    attempt -= 1
                elif attempt >= self.max_attempts:
                    log_.error("event dead-lettered", attempts=attempt, error=repr(exc))
                    await self._dead_letter(record, exc, attempts=attempt, span=span)
                    return
                delay = backoff_delay(tries, self.backoff_initial_s, self.backoff_max_s)
                metrics.EVENTS_RETRIED.labels(*labels).inc()
                log_.warning(
                    "event failed, retrying", attempt=attempt, retry_in_s=delay, error=repr(exc)
                )
                await asyncio.sleep(delay)

    async def _apply(self, record: ConsumerRecord, envelope: Envelope, handler: Handler) -> str:
        async with self.uow_factory() as uow:
            if not await claim(uow.session, self.group_id, record.topic, envelope):
                return "duplicate"
            await handler(uow, envelope.event)
            await uow.commit()
            return "applied"

    async def _dead_letter(
        self, record: ConsumerRecord, error: BaseException, attempts: int, span: Span
    ) -> None:
        span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {type(error).__name__}"))
        span.set_attribute("nocode.outcome", "dead_lettered")
        headers = [
            *(record.headers or ()),
            ("dlt_error", f"{type(error).__name__}: {error}"[:4000].encode()),
            ("dlt_original_topic", record.topic.encode()),
            ("dlt_original_partition", str(record.partition).encode()),
            ("dlt_original_offset", str(record.offset).encode()),
            ("dlt_consumer_group", self.group_id.encode()),
            ("dlt_attempts", str(attempts).encode()),
        ]
        # Kept in the database first (the embedded broker keeps topics in memory only),
        # then on the topic; each retried until taken: moving on without it would lose it.
        retries = Backoff(0.5, 5.0).retries()
        while True:
            try:
                await record_dead_letter(self.uow_factory, self.group_id, record, error, attempts)
                PARKED.labels(self.service).inc()  # the redriver's count corrects it
                break
            except Exception as exc:
                log.warning("dead letter not stored yet", error=repr(exc))
                await asyncio.sleep(retries.next_delay())
        retries.reset()
        while True:
            try:
                await self.dlt_producer.send_and_wait(
                    self.dead_letter_topic, record.value, key=record.key, headers=headers
                )
                break
            except Exception as exc:
                log.warning("dead-letter publish failed", error=str(exc))
                await asyncio.sleep(retries.next_delay())
        labels = (self.service, self.group_id, record.topic)
        metrics.EVENTS_DEAD_LETTERED.labels(*labels).inc()
        ce_type = header_map(record.headers).get("ce_type", "unknown")
        metrics.EVENTS_CONSUMED.labels(*labels, ce_type, "dead_lettered").inc()


_CLAIM = insert(INBOX).on_conflict_do_nothing().returning(INBOX.c.event_id)  # built once


async def claim(session: AsyncSession, group_id: str, topic: str, envelope: Envelope) -> bool:
    """Record ``envelope``'s id in the inbox of ``group_id``, in the caller's transaction;
    False when that consumer applied it already."""
    claimed = await session.execute(
        _CLAIM,
        {"event_id": envelope.id, "consumer": group_id, "topic": topic, "ce_type": envelope.type},
    )
    return claimed.first() is not None


class _RewindOnAssign(ConsumerRebalanceListener):
    """After a new broker cluster was met, partitions assigned by the next rebalances
    start from their beginning too, not from offsets committed before the rewind."""

    def __init__(self, owner: EventConsumer, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.owner._rewind and assigned:
            await self.consumer.seek_to_beginning(*assigned)
            self.owner._rewind = False  # from here on, its commits are this cluster's
