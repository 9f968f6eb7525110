"""A fetched batch is applied in one transaction, and broken two ways.

A poison event among good ones: every good one is applied exactly once (in order), the
poison is dead-lettered, and the group's offset moves past the batch. A consumer process
killed with SIGKILL in the middle of a batch's transaction leaves none of that batch
behind; started again, it applies every event exactly once. The effect is a row per
handler call (not idempotent by itself), so counting rows counts applies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from contracts.core import ModelCompleted
from contracts.topics import CORE_EVENTS, dead_letter_topic
from servicekit.db import UnitOfWork, asyncpg_dsn, make_engine
from servicekit.envelope import Envelope
from servicekit.outbox import OutboxWriter
from tests.connected import batch_consumer
from tests.support import cancelled, eventually, quick_consumer, read_topic

pytestmark = pytest.mark.connected

ROOT = Path(__file__).resolve().parents[2]


async def publish(producer: AIOKafkaProducer, request_ids: list[str]) -> list[str]:
    """One ModelCompleted per id, all on one partition (one key); their event ids."""
    ids = []
    for n, request_id in enumerate(request_ids):
        env = Envelope.wrap(ModelCompleted(id=n, request_id=request_id), "/nocode/core")
        await producer.send(CORE_EVENTS, env.value(), key=b"k", headers=env.headers())
        ids.append(env.id)
    await producer.flush()
    return ids


async def effects(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT request_id FROM effects ORDER BY n"))
        return [r.request_id for r in rows]


async def committed_offset(bootstrap: str, group: str) -> int | None:
    """The offset ``group`` committed on the partition the events went to (the only one)."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await reader.start()
    try:
        await reader.topics()  # the metadata, so the topic's partitions are known
        partitions = reader.partitions_for_topic(CORE_EVENTS) or set()
        assert partitions, f"{CORE_EVENTS} has no partitions"
        offsets = [await reader.committed(TopicPartition(CORE_EVENTS, p)) for p in partitions]
        return max((o for o in offsets if o is not None), default=None)
    finally:
        await reader.stop()


async def test_a_poison_event_in_a_batch_spares_the_good_ones(model_db: str, topics: str) -> None:
    engine = make_engine(model_db)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE effects (n serial PRIMARY KEY, request_id text)"))
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    calls: list[str] = []

    async def effect(uow: UnitOfWork, event: ModelCompleted) -> None:
        calls.append(event.request_id)
        await uow.session.execute(
            text("INSERT INTO effects (request_id) VALUES (:r)"), {"r": event.request_id}
        )
        if event.request_id == "poison":
            raise ValueError("cannot apply this one")

    producer = AIOKafkaProducer(bootstrap_servers=topics, acks="all")
    await producer.start()
    good = [f"good-{n}" for n in range(6)]
    # All published before the consumer starts: its first fetch is one batch of seven.
    await publish(producer, [*good[:3], "poison", *good[3:]])
    consumer = quick_consumer(
        "batchpoison",
        CORE_EVENTS,
        topics,
        uow_factory=lambda: UnitOfWork(sessions, OutboxWriter("/test")),
        handlers={ModelCompleted: effect},
        dead_letter_producer=producer,
        max_attempts=2,
        backoff_initial_s=0.01,
    )
    task = asyncio.create_task(consumer.run())

    async def offset_past_the_batch() -> bool:
        return await committed_offset(topics, "batchpoison") == 7

    try:
        await eventually(offset_past_the_batch, what="offset 7 committed", timeout_s=30)
        applied = await effects(engine)
        async with engine.connect() as conn:
            letters = (
                await conn.execute(text("SELECT consumer, status, attempts FROM dead_letters"))
            ).all()
        parked = await read_topic(topics, dead_letter_topic("batchpoison"), expect=1)
    finally:
        await cancelled(task)
        await producer.stop()
        await engine.dispose()

    assert applied == good  # each once, in order; nothing of the poison's attempts stayed
    assert [tuple(r) for r in letters] == [("batchpoison", "parked", 2)]
    assert [dict(r.headers)["dlt_original_offset"] for r in parked] == [b"3"]
    # The batch ran once and rolled back at the poison; then one record per transaction.
    assert calls == [*good[:3], "poison", *good[:3], "poison", "poison", *good[3:]]


def start_consumer(model_db: str, topics: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.connected.batch_consumer", model_db, topics],
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def test_a_consumer_killed_mid_batch_applies_every_event_once_after_restart(
    model_db: str, topics: str, tmp_path: Path
) -> None:
    import asyncpg

    engine = make_engine(model_db)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE effects (n serial PRIMARY KEY, request_id text)"))
    expected = [f"r-{n}" for n in range(5)] + ["stall"] + [f"r-{n}" for n in range(5, 10)]
    producer = AIOKafkaProducer(bootstrap_servers=topics, acks="all")
    await producer.start()
    await publish(producer, expected)
    await producer.stop()
    holder = await asyncpg.connect(asyncpg_dsn(model_db))
    await holder.execute(f"SELECT pg_advisory_lock({batch_consumer.STALL_LOCK})")
    log = tmp_path / "consumer.log"
    proc = start_consumer(model_db, topics, log)
    try:

        async def stalled_mid_batch() -> bool:
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            return waiting == 1

        await eventually(stalled_mid_batch, what="the batch waiting at 'stall'", timeout_s=60)
        # The sequence is not transactional: the batch wrote six rows so far, uncommitted.
        assert await holder.fetchval("SELECT last_value FROM effects_n_seq") == 6
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        await holder.execute(f"SELECT pg_advisory_unlock({batch_consumer.STALL_LOCK})")
        # Its transaction died with it: none of the batch's five earlier rows stayed.
        assert await effects(engine) == []
        assert await committed_offset(topics, batch_consumer.GROUP) is None

        proc = start_consumer(model_db, topics, log)
        deadline = time.monotonic() + 60
        while await committed_offset(topics, batch_consumer.GROUP) != len(expected):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "offset not committed in 60 s"
            await asyncio.sleep(0.2)
        applied = await effects(engine)
        async with engine.connect() as conn:
            inbox = (
                await conn.execute(
                    text("SELECT count(*) FROM inbox WHERE consumer = :c"),
                    {"c": batch_consumer.GROUP},
                )
            ).scalar_one()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        await holder.close()
        await engine.dispose()

    assert applied == expected
    assert inbox == len(expected)
