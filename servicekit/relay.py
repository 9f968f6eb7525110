"""The outbox relay: publishes the rows :mod:`servicekit.outbox` staged.

The relay is the only thing that talks to Kafka on
the producing side: it publishes unpublished rows in id order, keyed by request
id, and marks them published. Per-key commit order holds because every handler
locks the aggregate row it changes (so a request's rows get ids in commit order)
and the relay never has two rows of one key in flight. Delivery is at least once
(a crash between send and mark resends); consumers deduplicate by event id.

The outbox is the log of record. The relay asks the broker for its cluster id and the
batch's topics in one Metadata request (sent while the rows are read) once per poll
interval, and before a batch whenever the producer's connections are not those the last
answer came over (:class:`servicekit.kafka.BrokerCheck`: a replaced broker closes them):
a cluster other than the one it remembers has lost the published rows, which then go
out again (:mod:`servicekit.relay_state`). A row is sent only to a topic the broker
lists (a send to a missing topic makes some brokers create it, or ack it into nothing),
and marked published only if the acks came from the cluster checked: over the same
connections, or else the broker is asked again after the acks, so an ack from a broker
that replaced the checked one between check and send is never taken for a published
row. The relay reads and marks rows on the connection that holds its advisory lock, so a
relay that lost its lock marks nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine

from servicekit import metrics, relay_state
from servicekit.kafka import BrokerCheck, BrokerView
from servicekit.relay_sends import KeyOrderedSends, Row, split_by_topic
from servicekit.relay_wakeups import Wakeups
from servicekit.resilience import Backoff
from servicekit.tables import OUTBOX_CHANNEL

log = structlog.get_logger(__name__)

RELAY_LOCK_KEY = 0x6E6F636F6465  # one relay per service database publishes at a time
RETRY = Backoff(0.2, 5.0)  # a broken connection, a failed publish: the relay's retries
PRUNE_EVERY = timedelta(minutes=5)  # at most; a shorter retention prunes as often

# The relay's hot path, on its own connection: plain statements, prepared once by asyncpg.
_COLUMNS = (
    "id, event_id, topic, key, ce_type, source, occurred_at, payload, traceparent, created_at"
)
NEXT_ROWS = f"SELECT {_COLUMNS} FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1"
NEXT_ROWS_THROUGH = (
    f"SELECT {_COLUMNS} FROM outbox WHERE published_at IS NULL AND id <= $2 ORDER BY id LIMIT $1"
)
COUNT_UNPUBLISHED = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
MARK_PUBLISHED = "UPDATE outbox SET published_at = $2 WHERE id = ANY($1::bigint[])"


class _Record(asyncpg.Record):
    """An outbox row read by the relay; columns as attributes, like a SQLAlchemy row."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class TopicMissing(RuntimeError):
    """The broker does not list a topic the outbox has rows for: they wait."""


class ClusterChanged(RuntimeError):
    """The broker answering after the sends is another cluster than the one checked."""


class OutboxRelay:
    """Publishes committed outbox rows; woken by its own process's commits and by
    LISTEN/NOTIFY (:mod:`servicekit.relay_wakeups`), polling as a fallback."""

    def __init__(
        self,
        *,
        service: str,
        engine: AsyncEngine,
        dsn: str,
        producer: AIOKafkaProducer,
        tracer: Tracer,
        batch_size: int = 200,
        poll_interval_s: float = 1.0,
        retention: timedelta | None = None,
        send_timeout_s: float = 15.0,
    ) -> None:
        self.service = service
        self.engine = engine
        self.dsn = dsn
        self.producer = producer
        self.tracer = tracer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retention = retention
        self.sends = KeyOrderedSends(producer, tracer, send_timeout_s)
        self.wakeups = Wakeups()
        self._pruned_at = datetime.min.replace(tzinfo=UTC)
        self.memory = relay_state.Memory()
        self._interruptions = RETRY.retries()
        self._conn: asyncpg.Connection | None = None  # the leader's, while leading
        self._topics: set[str] = set()  # topics rows had: asked about with every check
        self.check = BrokerCheck(producer.client, max_age_s=poll_interval_s)

    async def run(self) -> None:
        while True:
            try:
                await self._run_as_leader()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the relay must outlive DB and broker outages
                delay = self._interruptions.next_delay()
                log.warning("outbox relay interrupted", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)

    async def _run_as_leader(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
        try:
            # Standby relays (other replicas) poll the lock; only the holder publishes.
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):  # noqa: ASYNC110
                await asyncio.sleep(self.poll_interval_s * 5)
            await conn.add_listener(OUTBOX_CHANNEL, lambda *n: self.wakeups.notified(n[-1]))
            # A published mark lost with the server's last WAL is a resend (at least once,
            # deduplicated by event id), so its commit need not wait for the flush.
            await conn.execute("SET synchronous_commit = off")
            self._conn = conn
            self.memory = await relay_state.load(self.engine, self.service)
            metrics.OUTBOX_REPUBLISH_MISSING.labels(self.service).set(self.memory.republish_missing)
            log.info("outbox relay leading", service=self.service, cluster=self.memory.cluster_id)
            self._interruptions.reset()
            failures = RETRY.retries()
            while not conn.is_closed():
                self.wakeups.clear()
                try:
                    published = await self.publish_batch()
                    failures.reset()
                except Exception as exc:
                    metrics.OUTBOX_PUBLISH_FAILURES.labels(self.service).inc()
                    delay = failures.next_delay()
                    log.warning("outbox publish failed", error=str(exc), retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                if published < self.batch_size:
                    await self._prune()
                    await self.wakeups.wait(self.poll_interval_s)
        finally:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()

    async def publish_batch(self) -> int:
        """Check the broker, then publish up to one batch; returns how many rows were
        published. Raises when a send failed, a topic is missing or the broker changed.

        The check before the sends is the last answer only while the producer's
        connections are those it came over: a broker that died closed them, so the
        broker is asked (and answers at once that it is gone) before anything is sent
        that could reach its replacement through the producer's retries. If the acks
        came over other connections, the broker is asked again before they count. Idle,
        the relay comes here once per poll interval and the answer is that old, so a
        broker replaced between batches is noticed then."""
        rows, backlog, view = await self._rows_and_view()
        if await self._meet(view.cluster_id):  # every retained row goes again, oldest first
            self.check.forget()
            rows, backlog, view = await self._rows_and_view()
            if view.cluster_id != self.memory.cluster_id:
                raise ClusterChanged(f"broker changed again, to cluster {view.cluster_id}")
        if not rows:
            if self.memory.republish_through is not None:
                await relay_state.republished(self.engine, self.service)
                self.memory = relay_state.Memory(
                    view.cluster_id, None, self.memory.republish_missing
                )
                log.info("outbox re-publish done", service=self.service, cluster=view.cluster_id)
            return 0
        sendable, held = split_by_topic(rows, view)
        acked, failure = await self.sends.publish(sendable)
        now = datetime.now(UTC)  # published_at: when the acks came, not when they were checked
        if failure is not None:
            self.check.forget()  # the next batch asks the broker first
        if acked:
            same = self.check.same_connections()
            after = view if same else await self.check.ask(self._topics)
            if after.cluster_id != view.cluster_id:
                raise ClusterChanged(
                    f"broker changed from cluster {view.cluster_id} to {after.cluster_id} "
                    f"during a batch: {len(acked)} acks not taken"
                )
            await self._leader().execute(MARK_PUBLISHED, [r.id for r in acked], now)
            for row in acked:
                metrics.OUTBOX_PUBLISHED.labels(self.service, row.topic).inc()
                metrics.OUTBOX_LAG.labels(self.service).observe(
                    max(0.0, (now - row.created_at).total_seconds())
                )
            metrics.OUTBOX_BACKLOG.labels(self.service).set(max(0, backlog - len(acked)))
        if failure is not None:
            raise failure
        if held:
            missing = sorted({r.topic for r in held if r.topic not in view.topics})
            raise TopicMissing(
                f"topics {missing} do not exist on the broker: {len(held)} events wait"
            )
        return len(acked)

    async def _rows_and_view(self) -> tuple[list[Row], int, BrokerView]:
        """The next rows, the backlog and the broker's answer about the rows' topics: the
        last answer while it holds (:class:`BrokerCheck`), else a metadata request sent
        with the database read, asking about the topics rows had before; only rows for a
        topic not asked about yet cost a second request."""
        asked = frozenset(self._topics)
        held = self.check.holds(asked)
        if held is not None:
            rows, backlog = await self._next_rows()
            if {r.topic for r in rows} <= held.topics:
                return rows, backlog, held
            self._topics |= {r.topic for r in rows}
            return rows, backlog, await self.check.ask(self._topics)
        read, answer = await asyncio.gather(
            self._next_rows(), self.check.ask(asked), return_exceptions=True
        )
        for result in (read, answer):
            if isinstance(result, BaseException):
                raise result
        rows, backlog = read  # type: ignore[misc]
        view: BrokerView = answer  # type: ignore[assignment]
        topics = {r.topic for r in rows}
        if not topics <= asked:
            self._topics |= topics
            view = await self.check.ask(self._topics)
        return rows, backlog, view

    async def _next_rows(self) -> tuple[list[Row], int]:
        """The next batch of unpublished rows in id order (during a re-publish, only rows
        up to where it started), and how many rows wait in all (counted only when the
        batch does not say it: a full batch, or a re-publish that stops at its end)."""
        conn = self._leader()
        through = self.memory.republish_through
        self.wakeups.begin_read()
        rows = None
        try:
            if through is None:
                rows = await conn.fetch(NEXT_ROWS, self.batch_size, record_class=_Record)
            else:  # the broker's lost rows first, then the newer ones
                rows = await conn.fetch(
                    NEXT_ROWS_THROUGH, self.batch_size, through, record_class=_Record
                )
        finally:
            self.wakeups.end_read(None if rows is None else (r.id for r in rows))
        if through is None and len(rows) < self.batch_size:
            backlog = len(rows)
        else:
            backlog = await conn.fetchval(COUNT_UNPUBLISHED) or 0
        metrics.OUTBOX_BACKLOG.labels(self.service).set(backlog)  # shown while broker down
        return list(rows), backlog

    def _leader(self) -> asyncpg.Connection:
        """The connection that holds the relay's advisory lock: the rows are read and
        marked on it, so a relay that lost its lock (its connection) marks nothing."""
        if self._conn is None or self._conn.is_closed():
            raise ConnectionError("the relay's database connection is closed")
        return self._conn

    async def _meet(self, cluster_id: str | None) -> bool:
        """Remember the broker's cluster; another one than remembered: publish again.
        True when the retained rows were made unpublished."""
        if cluster_id is None or cluster_id == self.memory.cluster_id:
            return False
        republish = await relay_state.meet(self.engine, self.service, cluster_id)
        self.memory = await relay_state.load(self.engine, self.service)
        if republish is None:
            log.info("outbox relay met broker cluster", service=self.service, cluster=cluster_id)
            return False
        metrics.OUTBOX_REPUBLISHED.labels(self.service).inc(republish.rows)
        metrics.OUTBOX_REPUBLISH_MISSING.labels(self.service).set(republish.missing)
        (log.warning if republish.rows else log.info)(
            "broker is another cluster: publishing the retained outbox again",
            service=self.service,
            previous_cluster=republish.previous,
            cluster=republish.current,
            events=republish.rows,
            through_id=republish.through,
        )
        if republish.missing:
            log.error(
                "OUTBOX RE-PUBLISH INCOMPLETE: retention pruned events the new broker never "
                "gets; consumers reading it from the beginning (a replay) miss them",
                service=self.service,
                missing_events=republish.missing,
                republished_events=republish.rows,
                retention_hours=None
                if self.retention is None
                else self.retention / timedelta(hours=1),
            )
        await self.producer.client.force_metadata_update()  # its partitions, not the old one's
        return True

    async def _prune(self) -> None:
        now = datetime.now(UTC)
        if self.retention is None or now - self._pruned_at < min(PRUNE_EVERY, self.retention):
            return
        self._pruned_at = now
        await relay_state.prune(self.engine, self.service, published_before=now - self.retention)
