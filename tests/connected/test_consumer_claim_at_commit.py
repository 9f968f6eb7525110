"""A consumer claims a new event with its commit (servicekit.inbox.claim_all): the inbox
row is the condition of the one statement that stores the event's effects, so a handler
that only writes costs one statement, and a redelivered event stores nothing, even when
its handler, run again, refuses it."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.dialects.postgresql import insert

from contracts.core import ModelCompleted
from contracts.topics import CORE_EVENTS
from servicekit.db import UnitOfWork, make_engine
from servicekit.envelope import Envelope
from servicekit.outbox import OutboxWriter
from servicekit.sql import Statement
from tests.connected.test_sql_statements import _statements_sent
from tests.support import cancelled, eventually, quick_consumer

pytestmark = pytest.mark.connected

EFFECTS = Table(
    "effects", MetaData(), Column("n", Integer, primary_key=True), Column("request_id", String)
)
_EFFECT = Statement(insert(EFFECTS), columns=("request_id",))


def _consumed(group: str, outcome: str) -> float:
    labels = {"service": group, "group": group, "topic": CORE_EVENTS}
    labels |= {"type": "nocode.core.ModelCompleted", "outcome": outcome}
    return REGISTRY.get_sample_value("events_consumed_total", labels) or 0.0


async def test_a_new_event_is_one_statement_and_a_redelivered_one_stores_nothing(
    model_db: str, topics: str
) -> None:
    engine = make_engine(model_db)  # the consumer's: every statement it sends is logged
    reader = make_engine(model_db)
    sent = _statements_sent(engine)
    async with reader.begin() as conn:
        await conn.execute(text("CREATE TABLE effects (n serial PRIMARY KEY, request_id text)"))

    async def effect(uow: UnitOfWork, event: ModelCompleted) -> None:
        if event.request_id == "strict":  # a transition that is illegal once it happened
            rows = await uow.session.scalar(
                select(func.count()).select_from(EFFECTS).where(EFFECTS.c.request_id == "strict")
            )
            if rows:
                raise ValueError("strict is applied already")
        await uow.sql.defer(_EFFECT, {"request_id": event.request_id})

    group = "claimatcommit"
    producer = AIOKafkaProducer(bootstrap_servers=topics, acks="all")
    await producer.start()
    consumer = quick_consumer(
        group,
        CORE_EVENTS,
        topics,
        uow_factory=lambda: UnitOfWork(engine, OutboxWriter("/test")),
        handlers={ModelCompleted: effect},
        dead_letter_producer=producer,
        max_attempts=2,
        backoff_initial_s=0.01,
    )
    envelopes = {
        name: Envelope.wrap(ModelCompleted(id=n, request_id=name), "/nocode/core")
        for n, name in enumerate(("warm", "plain", "strict"), start=1)
    }

    async def send(name: str) -> None:
        env = envelopes[name]
        await producer.send_and_wait(
            CORE_EVENTS, env.value(), key=name.encode(), headers=env.headers()
        )

    async def stored() -> list[str]:
        async with reader.connect() as conn:
            return list(await conn.scalars(text("SELECT request_id FROM effects ORDER BY n")))

    duplicates = _consumed(group, "duplicate")
    task = asyncio.create_task(consumer.run())
    try:
        await send("warm")  # its connection opened and its statements prepared

        async def warm_stored() -> bool:
            return await stored() == ["warm"]

        await eventually(warm_stored, what="warm applied")
        await asyncio.sleep(0.1)
        sent.clear()
        await send("plain")

        async def plain_stored() -> bool:
            return await stored() == ["warm", "plain"]

        async def two_duplicates() -> bool:
            return _consumed(group, "duplicate") - duplicates >= 2

        await eventually(plain_stored, what="plain applied")
        await asyncio.sleep(0.1)  # asyncpg calls its query loggers soon after the query
        assert len(sent) == 1, sent  # no BEGIN, no claim of its own, no COMMIT
        assert sent[0].startswith("WITH c AS (INSERT INTO inbox")
        assert "INSERT INTO effects" in sent[0]

        for name in ("plain", "strict", "strict"):  # a redelivery of each, one run at a time
            await send(name)
            await asyncio.sleep(0.3)
        await eventually(two_duplicates, what="two duplicates")
        assert await stored() == ["warm", "plain", "strict"]
        async with reader.connect() as conn:
            inbox = await conn.scalar(
                text("SELECT count(*) FROM inbox WHERE consumer = :g"), {"g": group}
            )
            parked = await conn.scalar(
                text("SELECT count(*) FROM dead_letters WHERE consumer = :g"), {"g": group}
            )
        assert inbox == 3
        assert parked == 0  # strict's refusal of its redelivery is a duplicate, not a poison
    finally:
        await cancelled(task)
        await producer.stop()
        await engine.dispose()
        await reader.dispose()
