"""A conditional write and the writes that depend on it, as one statement on a real
PostgreSQL (``servicekit.sql.Sql.defer_condition``, ``servicekit.deferred``): stored
together when the condition holds, none of them when it does not; and core's job step
written that way, racing a cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, delete, func, select, update

from core.domain import Job, Kind, State
from core.repository import CoreUnitOfWork
from core.runner import Claim, JobEnded
from core.tables import jobs
from core.tables import outbox as core_outbox
from model import handlers
from model.repository import ModelUnitOfWork
from model.tables import inbox, model_requests, outbox
from servicekit.db import make_engine
from servicekit.outbox import OutboxWriter
from servicekit.sql import ConditionFailed, Statement
from tests.connected.test_sql_statements import _statements_sent

pytestmark = pytest.mark.connected

# Approve a request only while it is still requested: the condition.
_APPROVE_IF_REQUESTED = Statement(
    update(model_requests)
    .where(model_requests.c.id == bindparam("rid"), model_requests.c.state == "requested")
    .values(state="approved")
)
_FORGET = Statement(delete(inbox).where(inbox.c.event_id == bindparam("event_id")))


async def _state(engine, rid: int) -> tuple[str, str, int]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(model_requests.c.state, model_requests.c.model_name).where(
                    model_requests.c.id == rid
                )
            )
        ).one()
        rows = [await conn.scalar(select(func.count()).select_from(t)) for t in (outbox, inbox)]
    return row.state, row.model_name, *rows


async def test_a_condition_and_the_writes_waiting_with_it_are_one_statement(
    model_db: str,
) -> None:
    engine = make_engine(model_db)
    sent = _statements_sent(engine)
    try:
        first = await handlers.request_model(ModelUnitOfWork(engine, OutboxWriter("m")), "u", "a")
        await _remember(engine, "e1")
        await asyncio.sleep(0.05)
        sent.clear()
        async with ModelUnitOfWork(engine, OutboxWriter("m")) as uow:
            await uow.sql.defer_condition(_APPROVE_IF_REQUESTED, {"rid": first.id})
            await uow.sql.defer(_FORGET, {"event_id": "e1"})
            await uow.outbox.add(uow.sql, _another_event(first.id))
            await uow.commit()
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon after the query
        assert len(sent) == 1, sent  # no BEGIN, no COMMIT: the statement is its transaction
        assert sent[0].startswith("WITH c AS (UPDATE model_requests")
        assert sent[0].endswith("SELECT count(*) FROM c")
        # Every write happened: approved, an outbox row added, the inbox row gone.
        assert await _state(engine, first.id) == ("approved", "a", 2, 0)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("read_first", [False, True], ids=["alone", "after a read"])
async def test_a_failed_condition_stores_none_of_the_writes_sent_with_it(
    model_db: str, read_first: bool
) -> None:
    engine = make_engine(model_db)
    try:
        made = await handlers.request_model(ModelUnitOfWork(engine, OutboxWriter("m")), "u", "a")
        await _remember(engine, "e1")
        async with ModelUnitOfWork(engine, OutboxWriter("m")) as uow:
            req = await uow.requests.get(made.id)
            assert req is not None
            req.approve("admin")
            await uow.requests.save(req)
            await uow.commit()  # approved: the condition (still requested) fails from now on
        before = await _state(engine, made.id)
        assert before == ("approved", "a", 2, 1)

        with pytest.raises(ConditionFailed):
            async with ModelUnitOfWork(engine, OutboxWriter("m")) as uow:
                if read_first:  # a transaction is open: the statement goes before COMMIT
                    assert await uow.requests.get(made.id) is not None
                await uow.sql.defer_condition(_APPROVE_IF_REQUESTED, {"rid": made.id})
                await uow.sql.defer(_FORGET, {"event_id": "e1"})
                await uow.outbox.add(uow.sql, _another_event(made.id))
                await uow.commit()
        assert await _state(engine, made.id) == before  # no row dropped or added
    finally:
        await engine.dispose()


async def _remember(engine, event_id: str) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.execute(
            inbox.insert().values(event_id=event_id, consumer="test", topic="t", ce_type="x")
        )


def _another_event(rid: int):  # type: ignore[no-untyped-def]
    event = handlers.ModelRequest.request(rid, "u", "a").pull_events()[0]
    return event.model_copy(update={"event_id": f"another-{rid}"})


async def test_a_job_step_racing_a_cancel_stores_neither_the_step_nor_its_event(
    core_db: str,
) -> None:
    """A step is one statement with its event while the job is as the worker wrote it; a
    cancel asked meanwhile makes that statement store nothing, and the write that follows
    (the row locked and read) cancels the job: no progress for the step that raced it."""
    engine = make_engine(core_db)
    sent = _statements_sent(engine)
    now = datetime.now(UTC)
    try:
        uow = lambda: CoreUnitOfWork(engine, OutboxWriter("/core"))  # noqa: E731
        async with uow() as u:
            job = Job.new(await u.jobs.next_id(), Kind.MODEL, "15", "u", "m", 3, 3, now=now)
            assert await u.jobs.enqueue(job)
            job.claim("w/1", now, 30)
            await u.jobs.save(job)
            await u.commit()
        claim = Claim(uow, job, 30)
        await asyncio.sleep(0.05)
        sent.clear()

        async def step(job: Job, _: CoreUnitOfWork, at: datetime) -> None:
            job.advance(at, 30)

        stepped = await claim.write(step)
        await asyncio.sleep(0.05)
        assert stepped.step == 1
        assert len(sent) == 1 and sent[0].startswith("WITH c AS (UPDATE jobs"), sent

        async with engine.begin() as conn:  # a cancel arrives (what core's handler does)
            await conn.execute(
                update(jobs).where(jobs.c.id == job.id).values(cancel_requested=True)
            )
        sent.clear()
        with pytest.raises(JobEnded):
            await claim.write(step)
        async with engine.connect() as conn:
            row = (
                await conn.execute(select(jobs.c.state, jobs.c.step).where(jobs.c.id == job.id))
            ).one()
            types = list(
                await conn.scalars(select(core_outbox.c.ce_type).order_by(core_outbox.c.id))
            )
        assert (row.state, row.step) == (State.CANCELED.value, 1)
        assert [t.rsplit(".", 1)[-1] for t in types] == ["ModelProgressed", "JobCanceled"]
    finally:
        await engine.dispose()
