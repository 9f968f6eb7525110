"""A handler that declares which events it acts on: the others are skipped, not applied."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import select, text

from contracts.model import StateChanged, changes_state
from contracts.topics import MODEL_EVENTS
from servicekit.consumer import applies_only
from servicekit.db import UnitOfWork, make_engine
from servicekit.envelope import Envelope
from servicekit.inbox import INBOX
from servicekit.outbox import OutboxWriter
from tests.support import cancelled, eventually, quick_consumer

pytestmark = pytest.mark.connected


def _ignored() -> float:
    labels = {"service": "target", "group": "target", "topic": MODEL_EVENTS}
    labels |= {"type": "nocode.model.StateChanged", "outcome": "ignored"}
    return REGISTRY.get_sample_value("events_consumed_total", labels) or 0.0


async def test_training_steps_are_skipped_by_a_handler_that_follows_states_only(
    model_db: str, topics: str
) -> None:
    engine = make_engine(model_db)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE seen (n serial PRIMARY KEY, state text)"))

    @applies_only(to=changes_state)
    async def record_state(uow: UnitOfWork, event: StateChanged) -> None:
        await uow.session.execute(text("INSERT INTO seen (state) VALUES (:s)"), {"s": event.state})

    def changed(previous: str, state: str, step: int) -> StateChanged:
        return StateChanged(
            id=7, state=state, previous_state=previous, user_id="u", model_name="m",
            step=step, total_steps=3,
        )  # fmt: skip

    producer = AIOKafkaProducer(bootstrap_servers=topics, acks="all")
    await producer.start()
    consumer = quick_consumer(
        "target",
        MODEL_EVENTS,
        topics,
        uow_factory=lambda: UnitOfWork(engine, OutboxWriter("/test")),
        handlers={StateChanged: record_state},
        dead_letter_producer=producer,
    )
    ignored_before = _ignored()
    events = [
        changed("approved", "training", 1),
        changed("training", "training", 2),
        changed("training", "training", 3),
        changed("training", "completed", 3),
    ]
    sent = []
    for event in events:
        env = Envelope.wrap(event, "/nocode/model")
        sent.append(env.id)
        await producer.send_and_wait(MODEL_EVENTS, env.value(), key=b"7", headers=env.headers())
    task = asyncio.create_task(consumer.run())

    async def states() -> list[str]:
        async with engine.connect() as conn:
            return list(await conn.scalars(text("SELECT state FROM seen ORDER BY n")))

    async def ignored_twice() -> bool:
        return _ignored() - ignored_before == 2

    try:
        applied = await eventually(states, what="the state changes applied")
        await eventually(ignored_twice, timeout_s=5, what="two steps counted as ignored")
        await asyncio.sleep(0.5)  # nothing else comes
        applied = await states()
        async with engine.connect() as conn:
            claimed = set(await conn.scalars(select(INBOX.c.event_id)))
    finally:
        await cancelled(task)
        await producer.stop()
        await engine.dispose()

    assert applied == ["training", "completed"]
    assert claimed == {sent[0], sent[3]}  # the steps left no inbox row
