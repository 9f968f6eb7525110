"""servicekit.sql on a real PostgreSQL: its statements share the unit of work's transaction,
and ids taken in blocks stay unique under concurrent requests."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import event, func, select

from model import handlers
from model.repository import ModelUnitOfWork
from model.tables import model_requests, outbox
from servicekit.db import make_engine
from servicekit.outbox import OutboxWriter
from servicekit.sql import Sql
from tests.support import migrated_database

pytestmark = pytest.mark.connected


async def _counts(engine) -> list[int]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return [
            await conn.scalar(select(func.count()).select_from(t)) for t in (model_requests, outbox)
        ]


async def test_statements_on_sql_commit_and_roll_back_with_the_unit_of_work(
    model_db: str,
) -> None:
    engine = make_engine(model_db)
    try:
        uow = ModelUnitOfWork(engine, OutboxWriter("model"))
        with pytest.raises(RuntimeError):
            async with uow:
                req = handlers.ModelRequest.request(await uow.requests.next_id(), "u", "m")
                await uow.requests.save(req)  # servicekit.sql
                await uow.outbox.add(uow.sql, req.pull_events()[0])
                # a statement through SQLAlchemy, in the same transaction
                assert await uow.session.scalar(select(func.count()).select_from(outbox)) == 1
                raise RuntimeError("crash before commit")
        assert await _counts(engine) == [0, 0]

        created = await handlers.request_model(
            ModelUnitOfWork(engine, OutboxWriter("model")), "u", "m"
        )
        assert await _counts(engine) == [1, 1]
        async with ModelUnitOfWork(engine, OutboxWriter("model")) as uow:
            stored = await uow.requests.get(created.id, for_update=False)
        assert stored is not None and (stored.user_id, stored.model_name) == ("u", "m")
    finally:
        await engine.dispose()


async def test_ids_taken_in_blocks_are_unique_under_concurrency_and_fresh_per_database(
    model_db: str, postgres_admin_url: str
) -> None:
    engine = make_engine(model_db)
    other = make_engine(await migrated_database(postgres_admin_url, "model"))
    try:
        made = await asyncio.gather(
            *(
                handlers.request_model(ModelUnitOfWork(engine, OutboxWriter("model")), "u", f"m{i}")
                for i in range(60)
            )
        )
        ids = [req.id for req in made]
        assert len(set(ids)) == 60 and min(ids) == 1
        async with engine.connect() as conn:
            stored = set(await conn.scalars(select(model_requests.c.id)))
        assert stored == set(ids)
        # Another database (another engine) starts from its own sequence, not this block.
        first = await handlers.request_model(
            ModelUnitOfWork(other, OutboxWriter("model")), "u", "x"
        )
        assert first.id == 1
    finally:
        await engine.dispose()
        await other.dispose()


def _statements_sent(engine) -> list[str]:  # type: ignore[no-untyped-def]
    """Every statement the engine's connections send from now on, as asyncpg logs them."""
    sent: list[str] = []

    def log_queries(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.driver_connection.add_query_logger(lambda q: sent.append(q.query))

    event.listen(engine.sync_engine, "connect", log_queries)
    return sent


async def test_a_request_that_only_writes_is_one_statement_and_its_own_transaction(
    model_db: str,
) -> None:
    engine = make_engine(model_db)
    try:
        sent = _statements_sent(engine)
        first = await handlers.request_model(  # takes a block of ids first
            ModelUnitOfWork(engine, OutboxWriter("model")), "u", "m"
        )
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon after the query
        sent.clear()
        second = await handlers.request_model(
            ModelUnitOfWork(engine, OutboxWriter("model")), "u", "n"
        )
        await asyncio.sleep(0.05)
        assert len(sent) == 1, sent
        assert sent[0].startswith("WITH w0 AS (INSERT INTO model_requests")
        assert "INSERT INTO outbox" in sent[0]
        assert await _counts(engine) == [2, 2]
        async with engine.connect() as conn:
            keys = list(await conn.scalars(select(outbox.c.key).order_by(outbox.c.id)))
        assert keys == [str(first.id), str(second.id)]
    finally:
        await engine.dispose()


async def test_writes_waiting_for_the_commit_are_stored_all_or_none_and_in_order(
    model_db: str,
) -> None:
    """A write that fails takes the others of its statement with it, with or without a
    transaction begun before; two events of one commit get ids in the order raised."""
    engine = make_engine(model_db)
    try:
        created = await handlers.request_model(
            ModelUnitOfWork(engine, OutboxWriter("model")), "u", "m"
        )
        async with engine.connect() as conn:
            taken = await conn.scalar(select(outbox.c.event_id))
        for read_first in (False, True):
            with pytest.raises(asyncpg.UniqueViolationError):
                async with ModelUnitOfWork(engine, OutboxWriter("model")) as uow:
                    if read_first:  # a transaction is open: the writes go before COMMIT
                        assert await uow.requests.get(created.id) is not None
                    req = handlers.ModelRequest.request(await uow.requests.next_id(), "u", "x")
                    await uow.requests.save(req)
                    event = req.pull_events()[0]
                    duplicate = event.model_copy(update={"event_id": taken})
                    await uow.outbox.add(uow.sql, duplicate)
                    await uow.commit()
            assert await _counts(engine) == [1, 1]

        async with ModelUnitOfWork(engine, OutboxWriter("model")) as uow:
            req = await uow.requests.get(created.id)
            assert req is not None
            req.approve("admin")
            req.cancel("changed my mind", "u")
            await uow.requests.save(req)
            await uow.commit()
        async with engine.connect() as conn:
            types = list(await conn.scalars(select(outbox.c.ce_type).order_by(outbox.c.id)))
        assert types == [
            "nocode.model.Requested",
            "nocode.model.Approved",
            "nocode.model.RequestCanceled",
        ]
    finally:
        await engine.dispose()


async def test_a_sql_that_no_unit_of_work_flushes_writes_at_once(model_db: str) -> None:
    """A replay writes through a plain ``Sql`` on its own connection: nothing would send a
    write left waiting, so it is run when asked."""
    engine = make_engine(model_db)
    try:
        async with engine.connect() as conn:
            event = handlers.ModelRequest.request(1, "u", "m").pull_events()[0]
            await OutboxWriter("model").add(Sql(conn), event)
            assert await conn.scalar(select(func.count()).select_from(outbox)) == 1
            await conn.commit()
        assert await _counts(engine) == [0, 1]
    finally:
        await engine.dispose()


async def test_writes_sent_before_the_commit_are_in_the_unit_of_works_transaction(
    model_db: str,
) -> None:
    """A waiting write sent early (a read follows it, or a second write to its table) goes
    in the unit of work's transaction, begun for it: a crash before the commit stores
    none of it. Only the commit's own statement may be a transaction of its own."""
    engine = make_engine(model_db)
    try:
        created = await handlers.request_model(
            ModelUnitOfWork(engine, OutboxWriter("model")), "u", "m"
        )
        for early in ("a read", "a second write to the table"):
            with pytest.raises(RuntimeError):
                async with ModelUnitOfWork(engine, OutboxWriter("model")) as uow:
                    req = handlers.ModelRequest.request(created.id + 1000, "u", "x")
                    await uow.requests.save(req)  # the first statement of this unit of work
                    events = req.pull_events()
                    await uow.outbox.add(uow.sql, events[0])
                    if early == "a read":
                        assert await uow.requests.get(created.id) is not None
                    else:
                        again = events[0].model_copy(update={"event_id": "another"})
                        await uow.outbox.add(uow.sql, again)
                        assert await uow.session.scalar(select(func.count()).select_from(outbox))
                    raise RuntimeError(f"crash after {early}")
            assert await _counts(engine) == [1, 1], early
    finally:
        await engine.dispose()
