"""The hot statements (``servicekit.statement``: Core, compiled once) run on asyncpg.

:class:`Sql` runs a :class:`Statement` on the asyncpg connection under the unit of work's
SQLAlchemy connection, in its transaction (``servicekit.driver``), without SQLAlchemy's
execution layer. ``Statement``, ``RowLoad`` and ``constant`` are importable from here too.

A write whose result nobody reads (an aggregate's save, an event's outbox row) can wait
for the commit (:meth:`Sql.defer`): the writes waiting go to the server as one statement
(data-modifying ``WITH``), and a unit of work that ran nothing else sends only that one
statement, which PostgreSQL commits on its own, instead of BEGIN, each write and COMMIT.
A ``POST /models`` was four round trips; it is one. A row read to be changed may be read
without a lock and locked by that statement (:meth:`Sql.fetchrow_for_update`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.trace import SpanKind, Tracer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from servicekit.deferred import together
from servicekit.driver import (
    Connection,
    discard_if_closed,
    driver_connection,
    driver_outside_transaction,
)
from servicekit.statement import Params, RowLoad, Statement, constant

__all__ = [
    "ConditionFailed",
    "Params",
    "RowLoad",
    "Sql",
    "Statement",
    "constant",
    "trace_statements",
]


class ConditionFailed(Exception):
    """A write deferred as a condition (:meth:`Sql.defer_condition`) did not change the
    rows it should have, or (``row_changed``) a row read to be changed without a lock
    (:meth:`Sql.fetchrow_for_update`) changed since: none of the writes sent with it was
    stored."""

    def __init__(self, message: str, *, row_changed: bool = False) -> None:
        super().__init__(message)
        self.row_changed = row_changed


_TRACERS: weakref.WeakKeyDictionary[object, Tracer] = weakref.WeakKeyDictionary()


def trace_statements(engine: AsyncEngine, tracer: Tracer) -> None:
    """A span per statement :class:`Sql` runs on ``engine``'s connections (``TRACE_SQL``),
    named and described as OpenTelemetry's SQLAlchemy instrumentation names the others."""
    _TRACERS[engine.sync_engine] = tracer


class Sql:
    """:class:`Statement`s run on the asyncpg connection under a SQLAlchemy connection
    (or session), in its transaction; the connection is looked up at the first one."""

    __slots__ = (
        "_condition",
        "_conn",
        "_deferring",
        "_guards",
        "_over",
        "_rows",
        "_tracer",
        "_waiting",
        "lock_at_commit",
    )

    def __init__(self, over: AsyncConnection | AsyncSession, *, deferring: bool = False) -> None:
        """``deferring``: the owner flushes before it commits (a unit of work does), so
        writes may wait (:meth:`defer`); otherwise a deferred write is run at once."""
        self._over = over
        self._deferring = deferring
        self._conn: Connection | None = None
        self._tracer: Tracer | None = _TRACERS.get(self.database)
        self._waiting: list[tuple[Statement, list[Any]]] = []
        self._condition: tuple[Statement, list[Any]] | None = None
        self._rows = 1  # what the condition must change
        self._guards: list[tuple[Statement, list[Any]]] = []  # rows read to be changed
        self.lock_at_commit = False  # fetchrow_for_update: read unlocked, lock at the commit

    @property
    def database(self) -> object:
        """What identifies the database these statements run on (its engine)."""
        over = self._over
        return (over.bind if isinstance(over, AsyncSession) else over.engine).sync_engine

    async def fetch(self, statement: Statement, params: Params | None = None) -> list[Any]:
        return await self._run("fetch", statement.sql, *statement.args(params))

    async def fetchrow(self, statement: Statement, params: Params | None = None) -> Any:
        return await self._run("fetchrow", statement.sql, *statement.args(params))

    async def fetchval(self, statement: Statement, params: Params | None = None) -> Any:
        return await self._run("fetchval", statement.sql, *statement.args(params))

    async def execute(self, statement: Statement, params: Params | None = None) -> int:
        """Run ``statement``; the rows it changed."""
        status = await self._run("execute", statement.sql, *statement.args(params))
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def executemany(self, statement: Statement, many: Iterable[Params]) -> None:
        await self._run("executemany", statement.sql, [statement.args(params) for params in many])

    async def defer(self, statement: Statement, params: Params | None = None) -> None:
        """Write with ``statement`` (an INSERT, UPDATE or DELETE without RETURNING) at the
        next statement run here or at :meth:`flush`, together with the other writes
        waiting, as one statement. The writes in one ``WITH`` do not see each other, so a
        second write to a table that has one waiting sends the waiting ones first: writes
        to one table happen in the order given (an outbox's ids are its events' order).

        Statements run through this :class:`Sql` send the waiting writes first; so do the
        unit of work's SQLAlchemy statements (``servicekit.db.Session``). A :class:`Sql`
        made without ``deferring`` runs the write at once."""
        if statement.writes is None:
            raise TypeError(f"only a write without RETURNING can wait: {statement.sql}")
        if not self._deferring:
            await self.execute(statement, params)
            return
        condition = self._condition[0].writes if self._condition else None
        if statement.writes == condition or any(
            waiting.writes == statement.writes for waiting, _ in self._waiting
        ):
            await self.flush()
        self._waiting.append((statement, statement.args(params)))

    async def defer_condition(
        self, statement: Statement, params: Params | None = None, *, rows: int = 1
    ) -> None:
        """Write with ``statement`` (a write whose WHERE, or conflict, is the condition)
        when the writes waiting are sent, and store them only if it changes ``rows`` rows:
        all of them, deferred before it or after, go as one statement
        (``servicekit.deferred``), which raises :class:`ConditionFailed` (nothing of it
        stored) when it changed another number. Sent first, on their own: a condition
        waiting already, and writes waiting to its table (the writes of one statement do
        not see each other's). A :class:`Sql` made without ``deferring`` sends it at once."""
        if statement.writes is None:
            raise TypeError(f"only a write without RETURNING can wait: {statement.sql}")
        if self._condition is not None or any(
            waiting.writes == statement.writes for waiting, _ in self._waiting
        ):
            await self.flush()
        self._condition = (statement, statement.args(params))
        self._rows = rows
        if not self._deferring:
            await self.flush()

    async def fetchrow_for_update(self, load: RowLoad, params: Params | None = None) -> Any:
        """The row ``load`` reads, to be changed here; None if there is none. Locked as it
        is read; or, with :attr:`lock_at_commit` before any statement ran or a write
        waits, read without a lock (outside any transaction) and locked by the statement
        of the writes waiting if it is still the version read: that statement stores
        nothing otherwise and raises :class:`ConditionFailed` (``row_changed``), and the
        caller runs its unit of work again with the row locked as it is read."""
        if (
            not (self.lock_at_commit and self._deferring)  # guards go with deferred writes
            or self._conn is not None
            or self._waiting
            or self._condition is not None
            or self._over.in_transaction()
        ):
            return await self.fetchrow(load.locked, params)
        conn = await driver_outside_transaction(self._over)
        row = await self._call(conn, "fetchrow", load.plain.sql, load.plain.args(params))
        if row is None:
            return None
        values = dict(row)
        version = {"key": values[load.key], "xmin": values.pop("xmin")}
        self._guards.append((load.guard, load.guard.args(version)))
        return values

    async def flush(self, *, last: bool = False) -> None:
        """Send the deferred writes, as one statement, in the transaction (begun here if
        none is). ``last``: nothing follows it (the unit of work commits): with no
        statement run before it, that statement is its own transaction, which
        PostgreSQL commits as a whole or not at all, and nothing is left to commit."""
        if not self._waiting and self._condition is None:
            if last:
                self._guards = []  # nothing written: what was read needs no lock
            return
        waiting, self._waiting = self._waiting, []
        condition, self._condition = self._condition, None
        guards, self._guards = self._guards, []
        sql, args = together(waiting, condition, self._rows, guards)
        method = "execute" if condition is None and not guards else "fetchval"
        if last and self._conn is None and not self._over.in_transaction():
            conn = await driver_outside_transaction(self._over)
            changed = await self._call(conn, method, sql, args)
        else:
            changed = await self._run(method, sql, *args)
        if guards and changed == -1:
            raise ConditionFailed(f"a row read changed since: {sql}", row_changed=True)
        if condition is not None and changed != self._rows:
            raise ConditionFailed(f"{changed} rows, not {self._rows}: {condition[0].sql}")

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        if self._waiting or self._condition is not None:
            await self.flush()
        conn = self._conn
        if conn is None:
            conn = self._conn = await driver_connection(self._over)
        return await self._call(conn, method, sql, args)

    async def _call(self, conn: Connection, method: str, sql: str, args: Sequence[Any]) -> Any:
        call = getattr(conn, method)
        try:
            if self._tracer is None:
                return await call(sql, *args)
            with self._tracer.start_as_current_span(
                sql.split(None, 1)[0],
                kind=SpanKind.CLIENT,
                attributes={"db.system": "postgresql", "db.statement": sql},
            ):
                return await call(sql, *args)
        except BaseException as error:
            await discard_if_closed(self._over, conn, error)
            raise
