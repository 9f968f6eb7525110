"""UnitOfWork.after_commit on a real database: callbacks run once the transaction
committed, never when it rolled back, so a retried event is counted once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from contracts.core import ModelCompleted
from contracts.topics import CORE_EVENTS
from servicekit.db import UnitOfWork, make_engine
from servicekit.outbox import OutboxWriter
from tests.support import cancelled, eventually, publish, quick_consumer

pytestmark = pytest.mark.connected


@pytest.fixture
async def engine(model_db: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(model_db)
    async with engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE effects (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)")
        )
    yield engine
    await engine.dispose()


def unit_of_work(engine: AsyncEngine) -> UnitOfWork:
    sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    return UnitOfWork(sessions, OutboxWriter("/test"))


async def effects(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.scalars(text("SELECT id FROM effects ORDER BY id"))).all())


async def test_callbacks_run_in_order_after_the_commit(engine: AsyncEngine) -> None:
    seen: list[str] = []
    async with unit_of_work(engine) as uow:
        await uow.session.execute(text("INSERT INTO effects VALUES (1)"))
        uow.after_commit(lambda: seen.append("first"))
        uow.after_commit(lambda: seen.append("second"))
        assert seen == []
        await uow.commit()
        assert seen == ["first", "second"]
    assert await effects(engine) == [1]


async def test_a_rolled_back_transaction_runs_no_callback(engine: AsyncEngine) -> None:
    called: list[str] = []
    with pytest.raises(RuntimeError):
        async with unit_of_work(engine) as uow:
            await uow.session.execute(text("INSERT INTO effects VALUES (1)"))
            uow.after_commit(lambda: called.append("left without commit"))
            raise RuntimeError("handler failed")
    assert called == [] and await effects(engine) == []


async def test_a_commit_that_fails_runs_no_callback(engine: AsyncEngine) -> None:
    called: list[str] = []
    with pytest.raises(IntegrityError):
        async with unit_of_work(engine) as uow:
            # The deferred key is checked at COMMIT: the commit itself fails.
            await uow.session.execute(text("INSERT INTO effects VALUES (1), (1)"))
            uow.after_commit(lambda: called.append("commit failed"))
            await uow.commit()
    assert called == [] and await effects(engine) == []
    # The same unit of work starts clean: nothing left over from the failed attempt.
    async with uow:
        await uow.session.execute(text("INSERT INTO effects VALUES (2)"))
        uow.after_commit(lambda: called.append("second try"))
        await uow.commit()
    assert called == ["second try"]


async def test_a_failing_callback_is_logged_not_raised(
    engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    called: list[str] = []

    def broken() -> None:
        raise ValueError("metric backend broken")

    async with unit_of_work(engine) as uow:
        await uow.session.execute(text("INSERT INTO effects VALUES (1)"))
        uow.after_commit(broken)
        uow.after_commit(lambda: called.append("still runs"))
        await uow.commit()
    assert called == ["still runs"] and await effects(engine) == [1]
    assert "after-commit callback failed" in capsys.readouterr().out


async def test_a_retried_event_is_counted_once(engine: AsyncEngine, topics: str) -> None:
    """What the hook is for: the consumer retries a failed transaction, the count does not."""
    counted: list[str] = []
    attempts: list[str] = []

    async def handler(uow: UnitOfWork, event: ModelCompleted) -> None:
        attempts.append(event.request_id)
        uow.after_commit(lambda: counted.append(event.request_id))
        if len(attempts) < 3:
            raise ConnectionError("blip after the count was registered")

    producer = AIOKafkaProducer(bootstrap_servers=topics, acks="all")
    await producer.start()
    consumer = quick_consumer(
        "model",
        CORE_EVENTS,
        topics,
        uow_factory=lambda: unit_of_work(engine),
        handlers={ModelCompleted: handler},
        dead_letter_producer=producer,
        max_attempts=5,
        backoff_initial_s=0.01,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await publish(topics, ModelCompleted(id=1, request_id="7"))

        async def done() -> list[str]:
            return counted

        assert await eventually(done, what="the event applied") == ["7"]
    finally:
        await cancelled(task)
        await producer.stop()
    assert attempts == ["7", "7", "7"] and counted == ["7"]
