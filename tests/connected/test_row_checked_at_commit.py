"""A row read to be changed without a lock, and locked by the commit's one statement only if
it is still the version read (``servicekit.sql.Sql.fetchrow_for_update`` with
``lock_at_commit``, ``servicekit.deferred``'s guards), on a real PostgreSQL: two round trips
instead of four, nothing stored when another writer changed the row meanwhile, and a
consumer then applies its event again with the row locked, so no update is lost."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, select, text, update

from contracts.core import ModelCompleted
from contracts.topics import CORE_EVENTS
from model import handlers
from model.repository import ModelUnitOfWork
from model.tables import model_requests
from servicekit.db import UnitOfWork, make_engine
from servicekit.envelope import Envelope
from servicekit.outbox import OutboxWriter
from servicekit.sql import ConditionFailed, RowLoad, Statement
from tests.connected.test_deferred_condition import _state
from tests.connected.test_sql_statements import _statements_sent
from tests.support import cancelled, eventually, quick_consumer

pytestmark = pytest.mark.connected


async def _request(engine, rid: int) -> tuple[str, str, int]:  # type: ignore[no-untyped-def]
    """The request's state and name, and the events in model's outbox."""
    state, name, events, _ = await _state(engine, rid)
    return state, name, events


async def _rename(engine, rid: int, name: str) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.execute(
            update(model_requests).where(model_requests.c.id == rid).values(model_name=name)
        )


async def _approve(engine, rid: int, *, lock_at_commit: bool, between=None) -> None:  # type: ignore[no-untyped-def]
    """Approve ``rid`` as model's command does, its row read first; ``between`` runs after
    the read, before the commit."""
    uow = ModelUnitOfWork(engine, OutboxWriter("m"))
    async with uow:
        uow.sql.lock_at_commit = lock_at_commit
        req = await uow.requests.get(rid)
        assert req is not None
        if between is not None:
            await between()
        req.approve()
        await uow.requests.save(req)
        await uow.commit()


async def test_a_row_read_to_be_changed_is_checked_and_locked_by_the_commits_statement(
    model_db: str,
) -> None:
    engine = make_engine(model_db)
    sent = _statements_sent(engine)
    try:
        rid = (
            await handlers.request_model(ModelUnitOfWork(engine, OutboxWriter("m")), "u", "a")
        ).id
        events = (await _request(engine, rid))[2]
        await asyncio.sleep(0.05)
        sent.clear()
        await _approve(engine, rid, lock_at_commit=True)
        await asyncio.sleep(0.1)  # asyncpg calls its query loggers soon after the query
        assert len(sent) == 2, sent  # the read, then one statement: no BEGIN, no COMMIT
        assert sent[0].startswith("SELECT model_requests.id") and ", xmin" in sent[0]
        assert "FOR UPDATE" not in sent[0]
        assert sent[1].startswith("WITH g0 AS (SELECT 1")
        assert "xmin = $2 FOR UPDATE), w1 AS (INSERT INTO model_requests" in sent[1]
        assert "INSERT INTO outbox" in sent[1]
        assert await _request(engine, rid) == ("approved", "a", events + 1)
    finally:
        await engine.dispose()


async def test_a_row_changed_after_it_was_read_stores_nothing_and_the_locked_retry_loses_no_update(
    model_db: str,
) -> None:
    engine = make_engine(model_db)
    try:
        rid = (
            await handlers.request_model(ModelUnitOfWork(engine, OutboxWriter("m")), "u", "a")
        ).id
        events = (await _request(engine, rid))[2]

        async def renamed() -> None:
            await _rename(engine, rid, "renamed")

        with pytest.raises(ConditionFailed) as failed:
            await _approve(engine, rid, lock_at_commit=True, between=renamed)
        assert failed.value.row_changed
        assert await _request(engine, rid) == ("requested", "renamed", events)

        await _approve(engine, rid, lock_at_commit=False)  # what a consumer does then
        assert await _request(engine, rid) == ("approved", "renamed", events + 1)
    finally:
        await engine.dispose()


async def test_a_commit_meeting_a_row_being_changed_waits_and_then_finds_it_changed(
    model_db: str,
) -> None:
    engine = make_engine(model_db)
    other = make_engine(model_db)
    try:
        rid = (
            await handlers.request_model(ModelUnitOfWork(engine, OutboxWriter("m")), "u", "a")
        ).id
        events = (await _request(engine, rid))[2]
        async with other.connect() as writer:

            async def change_under_way() -> None:
                await writer.execute(
                    update(model_requests)
                    .where(model_requests.c.id == rid)
                    .values(model_name="meanwhile")
                )  # its transaction stays open: the row is locked

            approving = asyncio.create_task(
                _approve(engine, rid, lock_at_commit=True, between=change_under_way)
            )
            await asyncio.sleep(0.5)
            assert not approving.done()  # the commit's statement waits for the row's lock
            await writer.commit()
            with pytest.raises(ConditionFailed) as failed:
                await approving
        assert failed.value.row_changed
        assert await _request(engine, rid) == ("requested", "meanwhile", events)
    finally:
        await engine.dispose()
        await other.dispose()


COUNTERS = Table(
    "counters", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer)
)
_LOAD = RowLoad(select(COUNTERS).where(COUNTERS.c.id == bindparam("id")), COUNTERS)
_SET = Statement(update(COUNTERS).where(COUNTERS.c.id == bindparam("k")).values(n=bindparam("n")))


async def test_a_consumer_whose_row_changed_meanwhile_applies_its_event_once_with_the_row_locked(
    model_db: str, topics: str
) -> None:
    engine = make_engine(model_db)
    reader = make_engine(model_db)
    async with reader.begin() as conn:
        await conn.execute(text("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)"))
        await conn.execute(text("INSERT INTO counters VALUES (1, 0)"))
    runs: list[int] = []

    async def add_one(uow: UnitOfWork, event: ModelCompleted) -> None:
        row = await uow.sql.fetchrow_for_update(_LOAD, {"id": 1})
        runs.append(row["n"])
        if len(runs) == 1:  # another writer adds 100 between this read and the commit
            async with reader.begin() as conn:
                await conn.execute(text("UPDATE counters SET n = n + 100 WHERE id = 1"))
        await uow.sql.defer(_SET, {"k": 1, "n": row["n"] + 1})

    group = "rowcheckedatcommit"
    producer = AIOKafkaProducer(bootstrap_servers=topics, acks="all")
    await producer.start()
    consumer = quick_consumer(
        group,
        CORE_EVENTS,
        topics,
        uow_factory=lambda: UnitOfWork(engine, OutboxWriter("/test")),
        handlers={ModelCompleted: add_one},
        dead_letter_producer=producer,
    )
    env = Envelope.wrap(ModelCompleted(id=1, request_id="counted"), "/nocode/core")
    task = asyncio.create_task(consumer.run())
    try:
        await producer.send_and_wait(CORE_EVENTS, env.value(), key=b"1", headers=env.headers())

        async def claimed() -> int:
            async with reader.connect() as conn:
                return await conn.scalar(
                    text("SELECT count(*) FROM inbox WHERE consumer = :g"), {"g": group}
                )

        async def applied() -> bool:
            return await claimed() == 1

        await eventually(applied, what="the event applied")
        await asyncio.sleep(0.3)  # a second application would show by now
        async with reader.connect() as conn:
            n = await conn.scalar(text("SELECT n FROM counters WHERE id = 1"))
        assert await claimed() == 1
        assert runs == [0, 100]  # read unlocked and found changed; then read locked
        assert n == 101  # the other writer's +100 kept: no lost update, the event's +1 once
    finally:
        await cancelled(task)
        await producer.stop()
        await engine.dispose()
        await reader.dispose()
