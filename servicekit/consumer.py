"""Consumer runtime: an idempotent, retrying, dead-lettering Kafka consumer.

Records come in fetched batches. A batch is applied in one transaction: each event's
handler runs in order, as if none was applied before, and the commit claims every
event id in the inbox as the condition of the statement that stores their effects
(:func:`servicekit.inbox.claim_all`); then the offsets are committed (at most every
``commit_interval_s``, see :class:`servicekit.positions.PendingOffsets`). A redelivered
event finds its id in the inbox: that statement stores nothing, and the batch is applied
again with every id claimed first, skipping those applied before. When any
handler of a batch fails, that transaction rolls back (nothing of it stays) and
the batch is applied again one record per transaction, as follows. A record whose
handler fails is looked up in the inbox (a handler may refuse an event it applied
before: a duplicate, not a failure); a handler that
keeps failing is retried with backoff (a database that cannot be
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
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
)
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from contracts import Event
from contracts.topics import dead_letter_topic
from servicekit import metrics
from servicekit.db import UnitOfWork, database_unavailable
from servicekit.dead_letters import park
from servicekit.envelope import Envelope, UndecodableMessage, decode_mapped, header_map
from servicekit.inbox import applied, claim_all, claim_many
from servicekit.positions import PendingOffsets, Positions
from servicekit.record_spans import RecordSpans
from servicekit.resilience import Backoff, backoff_delay
from servicekit.sql import ConditionFailed

log = structlog.get_logger(__name__)


Handler = Callable[[Any, Any], Awaitable[None]]


def applies_only(to: Callable[[Any], bool]) -> Callable[[Handler], Handler]:
    """Declare that a handler changes nothing for the events ``to`` refuses (a training
    step for a service that follows states only): the consumer skips those without a
    transaction or an inbox row, and counts them as ``ignored``. ``to`` sees the event."""

    def mark(handler: Handler) -> Handler:
        handler.applies_to = to  # type: ignore[attr-defined]
        return handler

    return mark


def applies(handler: Handler, event: Event) -> bool:
    """Whether ``handler`` acts on ``event`` (see :func:`applies_only`)."""
    to = getattr(handler, "applies_to", None)
    return to is None or bool(to(event))


FLUSH_TIMEOUT_S = 2.0  # committing the pending offsets when the consumer stops


@dataclass(frozen=True)
class _Work:
    """A decoded record with its handler: what a batch applies."""

    record: ConsumerRecord
    headers: dict[str, str]  # the record's, mapped once (header_map)
    envelope: Envelope
    handler: Handler


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
        batch_size: int = 100,
        commit_interval_s: float = 2.0,
    ) -> None:
        self.service = service
        self.group_id = group_id or service
        self.topics = topics
        self.bootstrap_servers = bootstrap_servers
        self.uow_factory = uow_factory
        self.handlers = {contract.ce_type(): handler for contract, handler in handlers.items()}
        self.dlt_producer = dead_letter_producer
        self.tracer = tracer
        self.spans = RecordSpans(tracer, self.group_id)
        self.dead_letter_topic = dead_letter_topic(service)
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.security = security or {}
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.batch_size = batch_size  # records per fetch, applied in one transaction
        self.pending = PendingOffsets(commit_interval_s)  # applied, not committed yet
        self.positions = Positions(service, self.group_id, self.pending)
        self.series = metrics.ConsumerSeries(service, self.group_id)
        self._dead_lettered = False

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
                consumer.subscribe(self.topics, listener=self.positions.listener(consumer))
                await consumer.start()
                restarts.reset()
                log.info("consumer started", topics=list(self.topics), group=self.group_id)
                await self.positions.check_cluster(consumer)
                lag_reporter = asyncio.create_task(self.positions.report_lag(consumer))
                self.positions.flush = partial(self.pending.commit, consumer)
                while True:
                    fetched = await consumer.getmany(
                        timeout_ms=self.pending.wait_ms(1000), max_records=self.batch_size
                    )
                    if fetched:
                        # Each partition's records in their order; partitions one after another.
                        self._dead_lettered = False
                        await self.process_batch([r for rs in fetched.values() for r in rs])
                        done = {tp: records[-1].offset + 1 for tp, records in fetched.items()}
                        self.pending.add(done)
                        self.positions.fetched(consumer, done)
                        if self._dead_lettered:  # a dead letter is not in the inbox: commit now
                            await self.pending.commit(consumer)
                    if self.pending.due():
                        await self.pending.commit(consumer)
            except asyncio.CancelledError:
                self.positions.flush = None
                try:  # stopping: what is not committed comes back next time, the inbox skips it
                    await asyncio.wait_for(self.pending.commit(consumer), FLUSH_TIMEOUT_S)
                except BaseException as exc:
                    log.debug("pending offsets not committed", error=repr(exc))
                raise
            except Exception as exc:  # broker gone: start again, uncommitted records come back
                log.warning("consumer interrupted", error=str(exc))
                self.pending.drop()  # offsets of that broker: never committed to another one
                await asyncio.sleep(restarts.next_delay())
            finally:
                if lag_reporter is not None:
                    lag_reporter.cancel()
                self.positions.flush = None
                self.pending.drop()
                await consumer.stop()

    async def process(self, record: ConsumerRecord) -> None:
        """Apply one record in its own transaction (see :meth:`process_batch`)."""
        await self.process_batch([record])

    async def process_batch(self, records: list[ConsumerRecord]) -> None:
        """Apply ``records`` in order: runs of decodable records in one transaction each
        (:meth:`_apply_batch`); a record that cannot be decoded goes to the dead letters
        at once, between the runs before and after it."""
        run: list[_Work] = []
        for record in records:
            headers = header_map(record.headers)
            ce_type = headers.get("ce_type", "")
            handler = self.handlers.get(ce_type)
            if ce_type and handler is None:
                self.series.consumed(record.topic, ce_type, "ignored").inc()
                continue
            try:
                envelope = decode_mapped(record.value, headers)
            except UndecodableMessage as exc:
                await self._apply_run(run)
                run = []
                with self.spans.open(record, headers) as span:
                    await self._dead_letter(record, exc, attempts=1, span=span)
                continue
            assert handler is not None
            if not applies(handler, envelope.event):
                self.series.consumed(record.topic, ce_type, "ignored").inc()
                continue
            run.append(_Work(record, headers, envelope, handler))
        await self._apply_run(run)

    async def _apply_run(self, run: list[_Work]) -> None:
        if len(run) > 1:
            try:
                await self._apply_batch(run)
                return
            except Exception as exc:
                # Rolled back as a whole: apply each on its own, so the one that fails
                # is retried (an outage waited out) and dead-lettered alone.
                metrics.EVENTS_FAILED.labels(self.service, self.group_id, run[0].record.topic).inc()
                log.warning("batch failed, applying its events one by one", error=repr(exc))
        for work in run:
            with self.spans.open(work.record, work.headers) as span:
                await self._apply_with_retries(work.record, work.envelope, work.handler, span)

    async def _apply_batch(self, run: list[_Work]) -> None:
        """Apply ``run`` in one transaction: as new events claimed with the commit
        (:meth:`_apply_as_new`), or, if one was applied before, with every event claimed
        first, skipping those. A failure is the caller's (it applies them one by one)."""
        started = time.perf_counter()
        try:
            outcomes = await self._apply_as_new(run)
        except ConditionFailed:  # a redelivery
            outcomes = await self._apply_claimed(run)
        elapsed = time.perf_counter() - started
        for work, outcome in zip(run, outcomes, strict=True):
            topic = work.record.topic
            self.series.processing(topic).observe(elapsed)
            self.series.consumed(topic, work.envelope.type, outcome).inc()

    async def _apply_as_new(self, run: list[_Work]) -> list[str]:
        """Apply ``run``'s events as events never applied here, and claim them all with the
        commit, as the condition of its statement: if one was applied before, nothing is
        stored (``ConditionFailed``). Most events are new: their claim costs no statement
        of its own, and a unit of work that only writes is that one statement."""
        outcomes: list[str] = []
        fresh: dict[str, _Work] = {}
        for work in run:
            new = fresh.setdefault(work.envelope.id, work) is work
            outcomes.append("applied" if new else "duplicate")  # given twice in the run
        async with self.uow_factory() as uow:
            uow.sql.lock_at_commit = True  # rows read to be changed: checked at the commit
            for work in fresh.values():
                with self.spans.open(work.record, work.headers) as span:
                    await work.handler(uow, work.envelope.event)
                    span.set_attribute("nocode.outcome", "applied")
            events = [(work.record.topic, work.envelope) for work in fresh.values()]
            await claim_all(uow.sql, self.group_id, events)
            await uow.commit()
        return outcomes

    async def _apply_claimed(self, run: list[_Work]) -> list[str]:
        """Claim every event of ``run`` and apply the claimed ones, in one transaction,
        the rows they change locked as they are read."""
        outcomes: list[str] = []
        async with self.uow_factory() as uow:
            claimed = await claim_many(
                uow.sql, self.group_id, [(w.record.topic, w.envelope) for w in run]
            )
            for work in run:
                if work.envelope.id not in claimed:  # applied before, or earlier in this run
                    outcomes.append("duplicate")
                    continue
                claimed.discard(work.envelope.id)
                # A failure is recorded on the span.
                with self.spans.open(work.record, work.headers) as span:
                    await work.handler(uow, work.envelope.event)
                    span.set_attribute("nocode.outcome", "applied")
                outcomes.append("applied")
            await uow.commit()
        return outcomes

    async def _apply_with_retries(
        self, record: ConsumerRecord, envelope: Envelope, handler: Handler, span: Span
    ) -> None:
        labels = (self.service, self.group_id, record.topic)
        started = time.perf_counter()
        attempt = tries = 0
        while True:
            attempt += 1
            tries += 1
            try:
                outcome = await self._apply(record, envelope, handler)
                self.series.processing(record.topic).observe(time.perf_counter() - started)
                self.series.consumed(record.topic, envelope.type, outcome).inc()
                span.set_attribute("nocode.outcome", outcome)
                log.debug("event consumed", subject=envelope.subject, outcome=outcome)
                return
            except Exception as exc:
                log_ = log.bind(subject=envelope.subject)  # bound only when it fails
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

    async def _apply(
        self, record: ConsumerRecord, envelope: Envelope, handler: Handler, *, locking: bool = False
    ) -> str:
        """Apply one event as a new one (:meth:`_apply_as_new`'s way); if a row it read
        changed before the commit, again with the rows locked as they are read. A failure
        is looked up in the inbox first: a handler refusing an event applied before (an
        illegal transition by now) makes it a duplicate, not an event to retry and
        dead-letter."""
        try:
            async with self.uow_factory() as uow:
                uow.sql.lock_at_commit = not locking
                await handler(uow, envelope.event)
                await claim_all(uow.sql, self.group_id, [(record.topic, envelope)])
                await uow.commit()
                return "applied"
        except ConditionFailed as failed:
            if failed.row_changed:
                return await self._apply(record, envelope, handler, locking=True)
            return "duplicate"
        except Exception as failure:
            try:
                async with self.uow_factory() as uow:
                    before = await applied(uow.sql, self.group_id, envelope)
            except Exception:
                raise failure from None
            if before:
                return "duplicate"
            raise

    async def _dead_letter(
        self, record: ConsumerRecord, error: BaseException, attempts: int, span: Span
    ) -> None:
        self._dead_lettered = True
        span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {type(error).__name__}"))
        span.set_attribute("nocode.outcome", "dead_lettered")
        await park(
            self.uow_factory,
            self.dlt_producer,
            service=self.service,
            group_id=self.group_id,
            topic=self.dead_letter_topic,
            record=record,
            error=error,
            attempts=attempts,
        )
        labels = (self.service, self.group_id, record.topic)
        metrics.EVENTS_DEAD_LETTERED.labels(*labels).inc()
        ce_type = header_map(record.headers).get("ce_type", "unknown")
        self.series.consumed(record.topic, ce_type, "dead_lettered").inc()
