"""Rebuild the MyRequest view and the timelines from the start of the topics, then swap them in.

1. Take the end offsets of ``model.events``, ``target.events`` and ``core.events``
   (the snapshot) and read every partition from its beginning up to them with a plain
   consumer (no group, partitions assigned: the live consumer's offsets are untouched).
2. Fold every event with the same apply rule as the live consumer
   (:func:`mypage_cqrs.view.apply`, :func:`mypage_cqrs.timeline.entries`) and write the
   rows and timeline entries into fresh tables created LIKE the live ones.
3. Swap them in, in one transaction: live -> old, rebuild -> live, drop old (and give
   the new tables' indexes the live names).
4. Apply the tail, from the snapshot to the end offsets taken after the swap, to the
   live table once more.

Why the live consumer may keep running meanwhile: the apply rule is a join
(order-tolerant and idempotent), so a row is a function of the *set* of its events,
and a timeline is the set of its events' entries (keyed by event id).
Events the live consumer wrote to the old table after the snapshot are lost with it
but are in the tail; events it writes to the new table after the swap are joined
with the rebuilt rows; anything applied twice, by it and by the tail, changes
nothing. Its transactions and the swap serialize on the table locks (a statement
blocked on the renamed table resolves the name again once the swap commits).

Events are only as complete as the topics: a partition whose beginning offset is not
0 has lost events to retention, and the report says so.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from contracts import Event
from contracts.topics import EVENT_TOPICS
from mypage_cqrs import handlers, timeline, view
from mypage_cqrs.repository import MypageUnitOfWork, MyRequestRepository, TimelineRepository
from mypage_cqrs.settings import MypageCqrsSettings
from mypage_cqrs.tables import MY_REQUESTS, REQUEST_TIMELINE, my_requests, request_timeline
from mypage_cqrs.timeline import Entry
from mypage_cqrs.view import MyRequest
from servicekit.db import make_engine
from servicekit.envelope import UndecodableMessage, decode
from servicekit.outbox import OutboxWriter

log = structlog.get_logger(__name__)

REBUILD = f"{MY_REQUESTS}_rebuild"
rebuild_table = my_requests.to_metadata(MetaData(), name=REBUILD)
TIMELINE_REBUILD = f"{REQUEST_TIMELINE}_rebuild"
timeline_rebuild_table = request_timeline.to_metadata(MetaData(), name=TIMELINE_REBUILD)
# Live table -> the table the rebuild writes; all swapped in together.
SWAPPED = {MY_REQUESTS: REBUILD, REQUEST_TIMELINE: TIMELINE_REBUILD}

REPLAY_LOCK_KEY = 0x6D7970616765  # one replay per database at a time

Offsets = dict[TopicPartition, int]
Sink = Callable[[list[Event]], Awaitable[None]]


class ReplayInProgress(RuntimeError):
    pass


@dataclass
class RebuildReport:
    events_read: dict[str, int] = field(default_factory=dict)  # per topic, up to the snapshot
    tail_events: dict[str, int] = field(default_factory=dict)  # per topic, applied after swap
    skipped: int = 0  # records that are not events of a known contract
    rows_built: int = 0
    timeline_entries: int = 0
    truncated: list[str] = field(default_factory=list)  # partitions not starting at offset 0
    seconds: float = 0.0

    def summary(self) -> str:
        read = ", ".join(f"{t} {n}" for t, n in self.events_read.items())
        tail = sum(self.tail_events.values())
        line = (
            f"mypage rebuilt: {self.rows_built} rows, {self.timeline_entries} timeline entries"
            f" from {read}; {tail} tail events"
        )
        if self.skipped:
            line += f"; {self.skipped} records skipped"
        if self.truncated:
            line += f"; WARNING retention truncated {', '.join(self.truncated)}"
        return f"{line}; {self.seconds:.2f} s"


async def rebuild(settings: MypageCqrsSettings, *, stall_timeout_s: float = 30.0) -> RebuildReport:
    """Rebuild the view from the topics into a fresh table and swap it in (see module doc)."""
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
                await _replay(settings, engine, report, stall_timeout_s)
            finally:
                await guard.execute(text("SELECT pg_advisory_unlock(:key)"), lock)
    finally:
        await engine.dispose()
    report.seconds = time.perf_counter() - started
    log.info("mypage replay done", summary=report.summary())
    return report


async def _replay(
    settings: MypageCqrsSettings, engine: AsyncEngine, report: RebuildReport, stall_timeout_s: float
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"{settings.service_name}-replay",
        enable_auto_commit=False,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        beginnings = await consumer.beginning_offsets(tps)
        report.truncated = [f"{tp.topic}/{tp.partition}" for tp, o in beginnings.items() if o > 0]
        snapshot = await consumer.end_offsets(tps)

        rows: dict[str, MyRequest] = {}
        entries: dict[tuple[str, int], Entry] = {}

        async def fold(events: list[Event]) -> None:
            for event in events:
                entries.update((e.key, e) for e in timeline.entries(event))
                # view.apply, keyed: the same rule the live consumer applies.
                change = view.contribution(event)
                if change is not None:
                    row = rows.get(change.id)
                    rows[change.id] = change if row is None else view.merge(row, change)

        read = await _read_until(consumer, tps, snapshot, fold, report, stall_timeout_s)
        report.events_read = _per_topic(read, EVENT_TOPICS)
        report.rows_built = len(rows)
        report.timeline_entries = len(entries)
        sessionmaker = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        await _write_rebuild_table(sessionmaker, list(rows.values()))
        await _write_timeline_rebuild_table(sessionmaker, list(entries.values()))
        await _swap(engine)
        log.info("mypage view swapped in", rows=len(rows))

        tail_end = await consumer.end_offsets(tps)
        for tp, offset in snapshot.items():
            consumer.seek(tp, offset)

        async def catch_up(events: list[Event]) -> None:
            async with MypageUnitOfWork(sessionmaker, OutboxWriter(settings.source)) as uow:
                for event in events:
                    await handlers.on_event(uow, event)
                await uow.commit()

        tail = await _read_until(consumer, tps, tail_end, catch_up, report, stall_timeout_s)
        report.tail_events = _per_topic(tail, EVENT_TOPICS)
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


async def _read_until(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    ends: Offsets,
    sink: Sink,
    report: RebuildReport,
    stall_timeout_s: float,
) -> Counter[str]:
    """Feed ``sink`` every event from the current positions up to ``ends`` (exclusive)."""
    read: Counter[str] = Counter()
    last_progress = time.monotonic()
    while True:
        pending = [tp for tp in tps if await consumer.position(tp) < ends.get(tp, 0)]
        if not pending:
            return read
        batches = await consumer.getmany(*pending, timeout_ms=500, max_records=1000)
        events: list[Event] = []
        for tp, records in batches.items():
            for record in records:
                if record.offset >= ends[tp]:
                    break
                read[tp.topic] += 1
                try:
                    events.append(decode(record.value, record.headers).event)
                except UndecodableMessage as exc:
                    report.skipped += 1
                    log.warning("replay: record skipped", topic=tp.topic, error=str(exc))
        if events:
            await sink(events)
        if batches:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > stall_timeout_s:
            raise TimeoutError(f"replay stalled before the end offsets of {pending}")
        await asyncio.sleep(0)


async def _write_rebuild_table(
    sessionmaker: async_sessionmaker[AsyncSession], rows: list[MyRequest]
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(text(f"DROP TABLE IF EXISTS {REBUILD}"))
        await session.execute(text(f"CREATE TABLE {REBUILD} (LIKE {MY_REQUESTS} INCLUDING ALL)"))
        await MyRequestRepository(session, rebuild_table).add_all(rows)


async def _write_timeline_rebuild_table(
    sessionmaker: async_sessionmaker[AsyncSession], entries: list[Entry]
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(text(f"DROP TABLE IF EXISTS {TIMELINE_REBUILD}"))
        await session.execute(
            text(f"CREATE TABLE {TIMELINE_REBUILD} (LIKE {REQUEST_TIMELINE} INCLUDING ALL)")
        )
        await TimelineRepository(session, timeline_rebuild_table).add(entries)


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


def _per_topic(counts: Counter[str], topics: tuple[str, ...]) -> dict[str, int]:
    return {t: counts.get(t, 0) for t in topics}
