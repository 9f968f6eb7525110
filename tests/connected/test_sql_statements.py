"""servicekit.sql on a real PostgreSQL: its statements share the unit of work's transaction,
and ids taken in blocks stay unique under concurrent requests."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from model import handlers
from model.repository import ModelUnitOfWork
from model.tables import model_requests, outbox
from servicekit.db import make_engine
from servicekit.outbox import OutboxWriter
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
