"""The kernel's consumer runtime on its own, with an effect that is not idempotent by itself."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.core import ModelCompleted
from contracts.topics import CORE_EVENTS, dead_letter_topic
from servicekit import positions as positions_module
from servicekit.db import UnitOfWork, make_engine
from servicekit.envelope import Envelope
from servicekit.outbox import OutboxWriter
from tests.support import cancelled, eventually, quick_consumer, read_topic

pytestmark = pytest.mark.connected


async def test_redelivered_event_applies_its_effect_once(model_db: str, topics: str) -> None:
    engine = make_engine(model_db)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE effects (n serial PRIMARY KEY, request_id text)"))
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    attempts: list[str] = []

    async def count_effect(uow: UnitOfWork, event: ModelCompleted) -> None:
        attempts.append(event.request_id)
        if event.request_id == "flaky" and attempts.count("flaky") < 3:
            raise ConnectionError("downstream blip")  # retried, then succeeds
        await uow.session.execute(
            text("INSERT INTO effects (request_id) VALUES (:r)"), {"r": event.request_id}
        )

    producer = AIOKafkaProducer(bootstrap_servers=topics, acks="all")
    await producer.start()
    consumer = quick_consumer(
        "model",
        CORE_EVENTS,
        topics,
        uow_factory=lambda: UnitOfWork(sessions, OutboxWriter("/test")),
        handlers={ModelCompleted: count_effect},
        dead_letter_producer=producer,
        max_attempts=5,
        backoff_initial_s=0.01,
    )
    once = ModelCompleted(id=1, request_id="once")
    flaky = ModelCompleted(id=2, request_id="flaky")
    last = ModelCompleted(id=3, request_id="last")
    for event in (once, once, flaky, once, last):
        env = Envelope.wrap(event, "/nocode/core")
        await producer.send_and_wait(CORE_EVENTS, env.value(), key=b"k", headers=env.headers())
    task = asyncio.create_task(consumer.run())
    try:
        for _ in range(200):
            async with engine.connect() as conn:
                done = (await conn.execute(text("SELECT request_id FROM effects ORDER BY n"))).all()
            if len(done) >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await cancelled(task)
        parked = await read_topic(topics, dead_letter_topic("model"), expect=0, timeout_s=1)
        await producer.stop()
        await engine.dispose()

    assert [r.request_id for r in done] == ["once", "flaky", "last"]
    # The five records came as one batch (once's second record skipped in it): its
    # transaction rolled back at flaky's first failure (once's effect with it), then each
    # record was applied in its own, as a new event claimed with the commit: once's
    # redeliveries ran their handler, but the commit's inbox row was there already, so
    # the statement stored nothing of them (servicekit.inbox.claim_all).
    assert attempts == ["once", "flaky", "once", "once", "flaky", "flaky", "once", "last"]
    assert parked == []


async def test_lag_shows_records_waiting_behind_a_stuck_one(
    model_db: str, topics: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(positions_module, "LAG_REFRESH_S", 0.2)
    engine = make_engine(model_db)
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    release = asyncio.Event()

    async def slow_effect(uow: UnitOfWork, event: ModelCompleted) -> None:
        await release.wait()

    producer = AIOKafkaProducer(bootstrap_servers=topics, acks="all")
    await producer.start()
    consumer = quick_consumer(
        "lagtest",
        CORE_EVENTS,
        topics,
        uow_factory=lambda: UnitOfWork(sessions, OutboxWriter("/test")),
        handlers={ModelCompleted: slow_effect},
        dead_letter_producer=producer,
    )

    def lag() -> float:
        return sum(
            sample.value
            for family in REGISTRY.collect()
            if family.name == "kafka_consumer_lag_messages"
            for sample in family.samples
            if sample.labels["group"] == "lagtest" and sample.labels["topic"] == CORE_EVENTS
        )

    async def lag_is(expected: float) -> bool:
        return lag() == expected

    task = asyncio.create_task(consumer.run())
    try:
        for n in range(6):
            env = Envelope.wrap(ModelCompleted(id=n, request_id="7"), "/nocode/core")
            await producer.send_and_wait(CORE_EVENTS, env.value(), key=b"7", headers=env.headers())
        # The first record is stuck in its handler; the broker's offsets show all six waiting.
        await eventually(lambda: lag_is(6), what="lag of 6 while the handler is stuck")
        release.set()
        await eventually(lambda: lag_is(0), what="lag back to 0")
    finally:
        await cancelled(task)
        await producer.stop()
        await engine.dispose()
