"""Loading and storing MyRequest rows and timeline entries; the unit of work that carries them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from mypage_cqrs.tables import my_requests, request_timeline
from mypage_cqrs.timeline import Entry
from mypage_cqrs.view import MyRequest
from servicekit.db import UnitOfWork
from servicekit.sql import RowLoad, Sql, Statement

INSERT_BATCH = 1000


_ROW_COLUMNS = tuple(f.name for f in dataclasses.fields(MyRequest))
_ENTRY_COLUMNS = tuple(f.name for f in dataclasses.fields(Entry))


def values_of(row: MyRequest) -> dict[str, Any]:
    """The row's columns (``dataclasses.asdict`` deep-copies them: 4 % of mypage's CPU)."""
    return {name: getattr(row, name) for name in _ROW_COLUMNS}


def _entry_values(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in _ENTRY_COLUMNS}


@lru_cache(maxsize=16)
def _statements(table: Table) -> dict[str, Statement]:
    """The per-event statements on ``table``, compiled once (an event applies two or three)."""
    c = table.c
    by_id = select(table).where(c.id == bindparam("id"))
    return {
        "get": Statement(by_id),
        "add_if_absent": Statement(
            insert(table).on_conflict_do_nothing(index_elements=[c.id]).returning(c.id),
            columns=_ROW_COLUMNS,
        ),
        "update": Statement(
            update(table)
            .where(c.id == bindparam("row_id"))
            .values({name: bindparam(name) for name in _ROW_COLUMNS if name != "id"})
        ),
    }


@lru_cache(maxsize=16)
def _row_load(table: Table) -> RowLoad:
    """A row read to be changed (locked, or checked at the commit: ``Sql.fetchrow_for_update``)."""
    return RowLoad(select(table).where(table.c.id == bindparam("id")), table)


@lru_cache(maxsize=16)
def _timeline_insert(table: Table) -> Statement:
    """One statement for any number of entries: each column's values as one array."""
    entries = (
        func.unnest(*(bindparam(c, type_=ARRAY(table.c[c].type)) for c in _ENTRY_COLUMNS))
        .table_valued(*_ENTRY_COLUMNS)
        .render_derived(name="entries")
    )
    return Statement(
        insert(table)
        .from_select(list(_ENTRY_COLUMNS), select(*(entries.c[c] for c in _ENTRY_COLUMNS)))
        .on_conflict_do_nothing(index_elements=[table.c.event_id, table.c.part])
    )


class MyRequestRepository:
    """Rows of ``table``: the live view, or the table a replay builds."""

    def __init__(self, session: AsyncSession, sql: Sql, table: Table = my_requests) -> None:
        self.session = session
        self.sql = sql
        self.table = table
        self._statements = _statements(table)

    async def get(self, id: str, *, for_update: bool = False) -> MyRequest | None:
        if for_update:
            row = await self.sql.fetchrow_for_update(_row_load(self.table), {"id": id})
        else:
            row = await self.sql.fetchrow(self._statements["get"], {"id": id})
        return MyRequest(**row) if row is not None else None

    async def add_if_absent(self, row: MyRequest) -> bool:
        """Insert ``row`` unless its id exists; True if it was inserted."""
        return (
            await self.sql.fetchrow(self._statements["add_if_absent"], values_of(row)) is not None
        )

    async def update(self, row: MyRequest) -> None:
        values = values_of(row)
        values["row_id"] = values.pop("id")
        await self.sql.defer(self._statements["update"], values)  # written at the commit

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

    def __init__(self, session: AsyncSession, sql: Sql, table: Table = request_timeline) -> None:
        self.session = session
        self.sql = sql
        self.table = table

    async def add(self, entries: Iterable[Entry]) -> None:
        """Write entries; one already there (same event and part) stays as it is."""
        values = [_entry_values(e) for e in entries]
        if values:  # written at the commit
            columns = {c: [v[c] for v in values] for c in _ENTRY_COLUMNS}
            await self.sql.defer(_timeline_insert(self.table), columns)

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
        self.requests = MyRequestRepository(self.session, self.sql)
        self.timeline = TimelineRepository(self.session, self.sql)
