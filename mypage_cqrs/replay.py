"""Rebuild the MyRequest view and the timelines from the start of the topics, then swap them in.

1. Count the live rows, and ask the producing services how many events their outboxes
   hold (``GET /health/outbox``, counts only).
2. Read every partition of ``model.events``, ``target.events`` and ``core.events`` from
   its beginning with a plain consumer (no group, partitions assigned: the live
   consumer's offsets are untouched) until the topics hold what the producers hold
   (:mod:`mypage_cqrs.topic_reader`: end offsets are not trusted alone).
3. Fold every event with the same apply rule as the live consumer
   (:func:`mypage_cqrs.view.apply`, :func:`mypage_cqrs.timeline.entries`). A rebuild
   holding fewer requests than the live view had is refused (nothing swapped) unless
   forced: the topics have lost events.
4. Write the rows and timeline entries into fresh tables created LIKE the live ones and
   swap them in, in one transaction: live -> old, rebuild -> live, drop old (and give the
   new tables' indexes the live names).
5. Apply the tail, from where step 2 stopped to the end offsets taken after the swap,
   to the live table once more.

Why the live consumer may keep running meanwhile: the apply rule is a join
(order-tolerant and idempotent), so a row is a function of the *set* of its events,
and a timeline is the set of its events' entries (keyed by event id).
Events the live consumer wrote to the old table after step 2 are lost with it but are
in the tail; events it writes to the new table after the swap are joined with the
rebuilt rows; anything applied twice, by it and by the tail, changes nothing. Its
transactions and the swap serialize on the table locks (a statement blocked on the
renamed table resolves the name again once the swap commits). Rows are never removed
by events, so every row the live view had when the replay started must be rebuilt.

Events are only as complete as the topics: a partition whose beginning offset is not
0 has lost events to retention, and the report says so.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import MetaData, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from contracts import Event
from contracts.topics import EVENT_TOPICS
from mypage_cqrs import handlers, timeline, view
from mypage_cqrs.repository import MypageUnitOfWork, MyRequestRepository, TimelineRepository
from mypage_cqrs.settings import MypageCqrsSettings
from mypage_cqrs.tables import MY_REQUESTS, REQUEST_TIMELINE, my_requests, request_timeline
from mypage_cqrs.timeline import Entry
from mypage_cqrs.topic_reader import (
    ProducerCounts,
    Reading,
    ReplayIncomplete,
    producer_counts,
    read_phase,
)
from mypage_cqrs.view import MyRequest
from servicekit.db import make_engine
from servicekit.kafka import client_security
from servicekit.outbox import OutboxWriter
from servicekit.sql import Sql

__all__ = ["RebuildReport", "ReplayInProgress", "ReplayIncomplete", "ReplayRefused", "rebuild"]

log = structlog.get_logger(__name__)

REBUILD = f"{MY_REQUESTS}_rebuild"
rebuild_table = my_requests.to_metadata(MetaData(), name=REBUILD)
TIMELINE_REBUILD = f"{REQUEST_TIMELINE}_rebuild"
timeline_rebuild_table = request_timeline.to_metadata(MetaData(), name=TIMELINE_REBUILD)
# Live table -> the table the rebuild writes; all swapped in together.
SWAPPED = {MY_REQUESTS: REBUILD, REQUEST_TIMELINE: TIMELINE_REBUILD}

REPLAY_LOCK_KEY = 0x6D7970616765  # one replay per database at a time
LINGER_S = 0.5  # fetching on after the targets are met, for records an end offset left out


class ReplayInProgress(RuntimeError):
    pass


class ReplayRefused(RuntimeError):
    """The rebuild holds fewer requests than the live view: nothing was swapped."""

    def __init__(self, rebuilt: int, live: int) -> None:
        super().__init__(
            f"replay refused: the rebuilt view holds {rebuilt} requests, the live one {live}; "
            "the topics have lost events, nothing swapped (--force swaps it anyway)"
        )
        self.rebuilt = rebuilt
        self.live = live


@dataclass
class RebuildReport:
    events_read: dict[str, int] = field(default_factory=dict)  # per topic, before the swap
    partitions: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> records
    expected: dict[str, int] = field(default_factory=dict)  # per topic: producers' outboxes
    unasked: dict[str, str] = field(default_factory=dict)  # producers not asked, and why
    tail_events: dict[str, int] = field(default_factory=dict)  # per topic, applied after swap
    skipped: int = 0  # records that are not events of a known contract
    rows_built: int = 0
    timeline_entries: int = 0
    live_rows: int = 0  # in the live view when the replay started
    truncated: list[str] = field(default_factory=list)  # partitions not starting at offset 0
    seconds: float = 0.0

    def summary(self) -> str:
        read = ", ".join(f"{t} {n}" for t, n in self.events_read.items())
        tail = sum(self.tail_events.values())
        line = (
            f"mypage rebuilt: {self.rows_built} rows (live had {self.live_rows}), "
            f"{self.timeline_entries} timeline entries from {read}; {tail} tail events"
        )
        if self.skipped:
            line += f"; {self.skipped} records skipped"
        if self.truncated:
            line += f"; WARNING retention truncated {', '.join(self.truncated)}"
        return f"{line}; {self.seconds:.2f} s"

    def details(self) -> list[str]:
        """What was read, per partition, against what the producers' outboxes hold."""
        lines = [f"  {where}: {n} records" for where, n in sorted(self.partitions.items())]
        for topic, n in self.expected.items():
            lines.append(f"  {topic}: {n} events in the producers' outboxes")
        for name, why in self.unasked.items():
            lines.append(f"  {name} not asked ({why}): read to the end offsets + {LINGER_S} s")
        if not self.expected and not self.unasked:
            lines.append(f"  no producer asked: read to the end offsets + {LINGER_S} s")
        return lines


async def rebuild(
    settings: MypageCqrsSettings,
    *,
    producers: Mapping[str, str] | None = None,
    force: bool = False,
    stall_timeout_s: float = 30.0,
) -> RebuildReport:
    """Rebuild the view from the topics into a fresh table and swap it in (see module doc).
    ``producers``: name -> base URL of each publishing service (else the settings')."""
    started = time.perf_counter()
    report = RebuildReport()
    engine = make_engine(settings.database_url, pool_size=2)
    try:
        async with engine.connect() as guard:
            guard = await guard.execution_options(isolation_level="AUTOCOMMIT")
            lock = {"key": REPLAY_LOCK_KEY}
            if not await guard.scalar(text("SELECT pg_try_advisory_lock(:key)"), lock):
                raise ReplayInProgress("another mypage replay is running on this database")
            try:
                report.live_rows = await guard.scalar(select(func.count()).select_from(my_requests))
                asked = producers if producers is not None else settings.producer_urls()
                counts = await producer_counts(asked)
                report.expected, report.unasked = counts.per_topic, counts.unasked
                await _replay(settings, engine, report, counts, force, stall_timeout_s)
            finally:
                await guard.execute(text("SELECT pg_advisory_unlock(:key)"), lock)
    finally:
        await engine.dispose()
    report.seconds = time.perf_counter() - started
    log.info("mypage replay done", summary=report.summary())
    return report


async def _replay(
    settings: MypageCqrsSettings,
    engine: AsyncEngine,
    report: RebuildReport,
    counts: ProducerCounts,
    force: bool,
    stall_timeout_s: float,
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"{settings.service_name}-replay",
        enable_auto_commit=False,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        fetch_max_wait_ms=50,
        **client_security(settings),
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer)
        consumer.assign(tps)
        if tps:
            await consumer.seek_to_beginning(*tps)
        beginnings = await consumer.beginning_offsets(tps) if tps else {}
        report.truncated = [f"{tp.topic}/{tp.partition}" for tp, o in beginnings.items() if o > 0]
        lossy = {t.rsplit("/", 1)[0] for t in report.truncated}
        expected = {t: n for t, n in counts.per_topic.items() if t in EVENT_TOPICS}
        expected = {t: n for t, n in expected.items() if t not in lossy}

        rows: dict[str, MyRequest] = {}
        entries: dict[tuple[str, int], Entry] = {}

        async def fold(events: list[Event]) -> None:
            for event in events:
                entries.update((e.key, e) for e in timeline.entries(event))
                # view.apply, keyed by row: the rule the live consumer applies too.
                change = view.contribution(event)
                if change is not None:
                    rows[change.id] = view.apply(rows.get(change.id), event) or change

        reading = Reading()
        await read_phase(
            consumer,
            tps,
            fold,
            reading,
            expected=expected,
            stall_timeout_s=stall_timeout_s,
            linger_s=LINGER_S,
        )
        report.events_read = reading.per_topic(EVENT_TOPICS)
        report.partitions = dict(reading.per_partition)
        report.skipped = reading.skipped
        report.rows_built = len(rows)
        report.timeline_entries = len(entries)
        if report.rows_built < report.live_rows and not force:
            raise ReplayRefused(report.rows_built, report.live_rows)
        sessionmaker = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        await _write_rebuild_table(sessionmaker, list(rows.values()))
        await _write_timeline_rebuild_table(sessionmaker, list(entries.values()))
        await _swap(engine)
        log.info("mypage view swapped in", rows=len(rows))

        async def catch_up(events: list[Event]) -> None:
            async with MypageUnitOfWork(sessionmaker, OutboxWriter(settings.source)) as uow:
                for event in events:
                    await handlers.on_event(uow, event)
                await uow.commit()

        # From where the rebuild stopped reading: the positions are still there.
        tail = Reading()
        await read_phase(
            consumer,
            tps,
            catch_up,
            tail,
            expected={},
            stall_timeout_s=stall_timeout_s,
            linger_s=LINGER_S,
        )
        report.tail_events = tail.per_topic(EVENT_TOPICS)
        report.skipped += tail.skipped
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer) -> list[TopicPartition]:
    existing = await consumer.topics()  # a metadata request: fresh partition counts
    tps = []
    for topic in EVENT_TOPICS:
        if topic not in existing:
            log.warning("replay: topic does not exist, nothing to read", topic=topic)
            continue
        tps += [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    return tps


async def _write_rebuild_table(
    sessionmaker: async_sessionmaker[AsyncSession], rows: list[MyRequest]
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(text(f"DROP TABLE IF EXISTS {REBUILD}"))
        await session.execute(text(f"CREATE TABLE {REBUILD} (LIKE {MY_REQUESTS} INCLUDING ALL)"))
        await MyRequestRepository(session, Sql(session), rebuild_table).add_all(rows)


async def _write_timeline_rebuild_table(
    sessionmaker: async_sessionmaker[AsyncSession], entries: list[Entry]
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(text(f"DROP TABLE IF EXISTS {TIMELINE_REBUILD}"))
        await session.execute(
            text(f"CREATE TABLE {TIMELINE_REBUILD} (LIKE {REQUEST_TIMELINE} INCLUDING ALL)")
        )
        await TimelineRepository(session, Sql(session), timeline_rebuild_table).add(entries)


async def _swap(engine: AsyncEngine) -> None:
    """rebuild -> live in one transaction; the new tables' indexes get the live names."""
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL lock_timeout = '30s'"))
        for live, rebuilt_table in SWAPPED.items():
            old = f"{live}_old"
            live_names = {d: n for n, d in (await _indexes(conn, live)).items()}
            rebuilt = await _indexes(conn, rebuilt_table)
            await conn.execute(text(f"ALTER TABLE {live} RENAME TO {old}"))
            await conn.execute(text(f"ALTER TABLE {rebuilt_table} RENAME TO {live}"))
            await conn.execute(text(f"DROP TABLE {old}"))
            for name, definition in rebuilt.items():
                live_name = live_names.get(definition)
                if live_name and live_name != name:
                    await conn.execute(text(f'ALTER INDEX "{name}" RENAME TO "{live_name}"'))


_INDEX_HEAD = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ ")


async def _indexes(conn: AsyncConnection, table: str) -> dict[str, str]:
    """Index name -> its definition without index and table names."""
    result = await conn.execute(
        text(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = CAST(:t AS regclass)"
        ),
        {"t": table},
    )
    return {name: _INDEX_HEAD.sub(r"CREATE \1INDEX ON ", d) for name, d in result.all()}
