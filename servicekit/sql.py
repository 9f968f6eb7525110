"""The hot statements: declared in SQLAlchemy Core, compiled once, run on asyncpg.

Every statement is declared with SQLAlchemy Core on the service's tables. Running one
through SQLAlchemy's async layer costs about 140 µs of client CPU beyond asyncpg's own
(the cache key, two greenlet hops, the result's wrapping: ``bench/db_layer.py``), on every
statement of every request and every event applied. A :class:`Statement` is compiled
once, at import, to the SQL asyncpg prepares (cached per connection) and the order of its
parameters; :class:`Sql` runs it on the unit of work's connection, in its transaction.

What a statement may hold is checked when it is compiled: no ``IN`` list expanded per
call (use ``= ANY(:ids)``) and no Python-side column default (give the column a value or
a server default), since those need SQLAlchemy's execution to fill them in.

A write whose result nobody reads (an aggregate's save, an event's outbox row) can wait
for the commit (:meth:`Sql.defer`): the writes waiting go to the server as one statement
(data-modifying ``WITH``), and a unit of work that ran nothing else sends only that one
statement, which PostgreSQL commits on its own, instead of BEGIN, each write and COMMIT.
A ``POST /models`` was four round trips; it is one.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind, Tracer
from sqlalchemy import (
    ColumnElement,
    Delete,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.sql import ClauseElement

from servicekit.deferred import together
from servicekit.driver import (
    Connection,
    discard_if_closed,
    driver_connection,
    driver_outside_transaction,
)

_DIALECT = asyncpg_dialect()
_NO_VALUE = object()

Params = Mapping[str, Any]
_WORD = re.compile(r"[a-z_]+")
_PARAMETER = re.compile(r"\$(\d+)")


class ConditionFailed(Exception):
    """A write deferred as a condition (:meth:`Sql.defer_condition`) did not change the
    rows it should have, or (``row_changed``) a row read to be changed without a lock
    (:meth:`Sql.fetchrow_for_update`) changed since: none of the writes sent with it was
    stored."""

    def __init__(self, message: str, *, row_changed: bool = False) -> None:
        super().__init__(message)
        self.row_changed = row_changed


def constant(value: str) -> ColumnElement[Any]:
    """``value`` (a state's name) written into the statement, not passed as a parameter:
    a prepared statement's generic plan can then use a partial index whose predicate
    names it (``WHERE status = 'pending'``)."""
    if not _WORD.fullmatch(value):
        raise ValueError(f"not a plain word: {value!r}")
    return literal_column(f"'{value}'")


class RowLoad:
    """A row read to be changed, by ``statement`` (a SELECT of one row of ``table`` by its
    ``key`` column): locked as it is read (``locked``, FOR UPDATE), or read with its
    version (``plain``, with ``xmin``) and locked by the commit's statement only if it is
    still that version (``guard``; :meth:`Sql.fetchrow_for_update`)."""

    __slots__ = ("guard", "key", "locked", "plain")

    def __init__(self, statement: Select[Any], table: Table, key: str = "id") -> None:
        self.key = key
        self.locked = Statement(statement.with_for_update())
        self.plain = Statement(statement.add_columns(literal_column("xmin")))
        self.guard = Statement(
            select(literal_column("1"))
            .select_from(table)
            .where(table.c[key] == bindparam("key"), literal_column("xmin") == bindparam("xmin"))
            .with_for_update()
        )


class Statement:
    """``statement`` compiled for asyncpg. For an INSERT, ``columns`` names the columns
    given a value (the others take their server defaults)."""

    __slots__ = ("_binds", "sql", "writes")

    def __init__(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> None:
        compiled = statement.compile(
            dialect=_DIALECT,
            column_keys=list(columns) if columns is not None else None,
            # As for executemany: no RETURNING of a generated key nobody reads (an INSERT
            # returns only what its statement asks for).
            for_executemany=True,
        )
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise ValueError(f"a Python-side column default needs SQLAlchemy: {compiled.string}")
        processors: Mapping[str, Callable[[Any], Any]] = compiled._bind_processors
        binds: list[tuple[str, Callable[[Any], Any] | None, Any]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            if bind.expanding:
                raise ValueError(f"an expanding IN list in {compiled.string}: use = ANY(:{name})")
            fixed = bind.value if bind.value is not None or not bind.required else _NO_VALUE
            binds.append((name, processors.get(name), fixed))
        self.sql: str = compiled.string
        self._binds = tuple(binds)
        # The table a write without RETURNING changes: such a write may wait (Sql.defer).
        self.writes: str | None = None
        if isinstance(statement, Insert | Update | Delete) and not compiled.returning:
            if "$" in _PARAMETER.sub("", self.sql):
                raise ValueError(f"a '$' not a parameter's, in {self.sql}")
            self.writes = statement.table.name  # type: ignore[union-attr]

    def args(self, params: Params | None) -> list[Any]:
        """The positional arguments for ``params`` (by bind name); a bind the statement
        fixed (a literal, a limit) takes its own value unless ``params`` names it."""
        given = params or {}
        out = []
        for name, process, fixed in self._binds:
            value = given.get(name, fixed)
            if value is _NO_VALUE:
                raise KeyError(f"no value for :{name} in {self.sql}")
            out.append(process(value) if process is not None and value is not None else value)
        return out


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
            not self.lock_at_commit
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
