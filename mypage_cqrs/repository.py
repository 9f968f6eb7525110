"""Loading and storing MyRequest rows and timeline entries; the unit of work that carries them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from mypage_cqrs.tables import my_requests, request_timeline
from mypage_cqrs.timeline import Entry
from mypage_cqrs.view import MyRequest
from servicekit.db import UnitOfWork

INSERT_BATCH = 1000


def values_of(row: MyRequest) -> dict[str, Any]:
    return dataclasses.asdict(row)


@lru_cache(maxsize=16)
def _statements(table: Table) -> dict[str, Any]:
    """The per-event statements on ``table``, built once (an event applies two or three)."""
    c = table.c
    return {
        "get": select(table).where(c.id == bindparam("id")),
        "get_locked": select(table).where(c.id == bindparam("id")).with_for_update(),
        "add_if_absent": insert(table)
        .on_conflict_do_nothing(index_elements=[c.id])
        .returning(c.id),
        "update": update(table)
        .where(c.id == bindparam("row_id"))
        .values({col.name: bindparam(col.name) for col in table.columns if col.name != "id"}),
    }


@lru_cache(maxsize=16)
def _timeline_insert(table: Table) -> Any:
    return insert(table).on_conflict_do_nothing(index_elements=[table.c.event_id, table.c.part])


class MyRequestRepository:
    """Rows of ``table``: the live view, or the table a replay builds."""

    def __init__(self, session: AsyncSession, table: Table = my_requests) -> None:
        self.session = session
        self.table = table
        self._sql = _statements(table)

    async def get(self, id: str, *, for_update: bool = False) -> MyRequest | None:
        query = self._sql["get_locked" if for_update else "get"]
        row = (await self.session.execute(query, {"id": id})).mappings().first()
        return MyRequest(**row) if row is not None else None

    async def add_if_absent(self, row: MyRequest) -> bool:
        """Insert ``row`` unless its id exists; True if it was inserted."""
        inserted = await self.session.execute(self._sql["add_if_absent"], values_of(row))
        return inserted.first() is not None

    async def update(self, row: MyRequest) -> None:
        values = values_of(row)
        values["row_id"] = values.pop("id")
        await self.session.execute(self._sql["update"], values)

    async def add_all(self, rows: Iterable[MyRequest]) -> None:
        values = [values_of(r) for r in rows]
        for start in range(0, len(values), INSERT_BATCH):
            await self.session.execute(insert(self.table), values[start : start + INSERT_BATCH])

    async def list(
        self, user_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[MyRequest]:
        """Served rows (the owner's events have arrived), oldest request first."""
        c = self.table.c
        query = (
            select(self.table)
            .where(c.state.is_not(None))
            .order_by(c.created_at, c.id)
            .limit(limit)
            .offset(offset)
        )
        if user_id is not None:
            query = query.where(c.user_id == user_id)
        rows = (await self.session.execute(query)).mappings().all()
        return [MyRequest(**row) for row in rows]

    async def all(self) -> list[MyRequest]:
        """Every row, served or not, by id (replay checks, tests)."""
        rows = (await self.session.execute(select(self.table).order_by(self.table.c.id))).mappings()
        return [MyRequest(**row) for row in rows.all()]


class TimelineRepository:
    """Timeline entries in ``table``: the live one, or the table a replay builds."""

    def __init__(self, session: AsyncSession, table: Table = request_timeline) -> None:
        self.session = session
        self.table = table

    async def add(self, entries: Iterable[Entry]) -> None:
        """Write entries; one already there (same event and part) stays as it is."""
        values = [dataclasses.asdict(e) for e in entries]
        statement = _timeline_insert(self.table)
        for start in range(0, len(values), INSERT_BATCH):
            await self.session.execute(statement, values[start : start + INSERT_BATCH])

    async def of(self, request: str) -> list[Entry]:
        """One request's entries (unordered: see ``timeline.ordered``)."""
        query = select(self.table).where(self.table.c.request == request)
        return [Entry(**r) for r in (await self.session.execute(query)).mappings().all()]

    async def all(self) -> list[Entry]:
        """Every entry (replay checks, tests)."""
        rows = (await self.session.execute(select(self.table))).mappings().all()
        return [Entry(**r) for r in rows]


class MypageUnitOfWork(UnitOfWork):
    requests: MyRequestRepository
    timeline: TimelineRepository

    def on_begin(self) -> None:
        self.requests = MyRequestRepository(self.session)
        self.timeline = TimelineRepository(self.session)
