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
"""

from __future__ import annotations

import re
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import asyncpg
from opentelemetry.trace import SpanKind, Tracer
from sqlalchemy import ColumnElement, bindparam, func, literal_column, select
from sqlalchemy import Sequence as DbSequence
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.sql import ClauseElement

_DIALECT = asyncpg_dialect()
_NO_VALUE = object()

Params = Mapping[str, Any]
_WORD = re.compile(r"[a-z_]+")


def constant(value: str) -> ColumnElement[Any]:
    """``value`` (a state's name) written into the statement, not passed as a parameter:
    a prepared statement's generic plan can then use a partial index whose predicate
    names it (``WHERE status = 'pending'``)."""
    if not _WORD.fullmatch(value):
        raise ValueError(f"not a plain word: {value!r}")
    return literal_column(f"'{value}'")


class Statement:
    """``statement`` compiled for asyncpg. For an INSERT, ``columns`` names the columns
    given a value (the others take their server defaults)."""

    __slots__ = ("_binds", "sql")

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


class Connection(Protocol):
    """What :class:`Sql` needs of a connection: asyncpg's, in an open transaction."""

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...
    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    async def execute(self, query: str, *args: Any) -> str: ...
    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None: ...
    def is_closed(self) -> bool: ...


async def driver_connection(conn: AsyncConnection | AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under ``conn``, in ``conn``'s transaction (begun here if no
    statement began it yet), so statements on either commit or roll back together."""
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    if not conn.in_transaction():
        await conn.begin()
    # SQLAlchemy's asyncpg adapter begins the asyncpg transaction at its first statement;
    # begun here the same way (its private _transaction / _start_transaction: SQLAlchemy is
    # pinned, and tests/connected/test_sql_statements.py fails if they change).
    adapted = (await conn.get_raw_connection()).dbapi_connection
    driver: asyncpg.Connection = adapted.driver_connection
    if adapted._transaction is None:
        try:
            await adapted._start_transaction()
        except Exception as error:  # the adapter's translation: hand on asyncpg's own
            await discard_if_closed(conn, driver, error)
            raise error.__cause__ or error from None
    return driver


async def discard_if_closed(
    conn: AsyncConnection | AsyncSession, driver: Connection, error: BaseException
) -> None:
    """If ``driver`` died under a statement (its server went away), do what SQLAlchemy does
    when one of its own statements meets a dead server: this connection is invalidated,
    and every connection the pool opened before it is replaced at its next checkout, so
    the requests after it do not meet the old server's connections one by one."""
    if not driver.is_closed():
        return
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    sync = conn.sync_connection
    if sync is not None and not sync.invalidated:
        sync.engine.pool._invalidate(sync.connection, error, _checkin=False)
        await conn.invalidate(error)


_TRACERS: weakref.WeakKeyDictionary[object, Tracer] = weakref.WeakKeyDictionary()


def trace_statements(engine: AsyncEngine, tracer: Tracer) -> None:
    """A span per statement :class:`Sql` runs on ``engine``'s connections (``TRACE_SQL``),
    named and described as OpenTelemetry's SQLAlchemy instrumentation names the others."""
    _TRACERS[engine.sync_engine] = tracer


class Sql:
    """:class:`Statement`s run on the asyncpg connection under a SQLAlchemy connection
    (or session), in its transaction; the connection is looked up at the first one."""

    __slots__ = ("_conn", "_over", "_tracer")

    def __init__(self, over: AsyncConnection | AsyncSession) -> None:
        self._over = over
        self._conn: Connection | None = None
        self._tracer: Tracer | None = None

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

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        conn = self._conn
        if conn is None:
            conn = self._conn = await driver_connection(self._over)
            self._tracer = _TRACERS.get(self.database)
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


class IdBlocks:
    """New ids from ``sequence``, taken ``size`` at a time: one round trip per ``size`` new
    rows instead of one per row (a request's INSERT is then its only statement before the
    outbox row). Ids stay unique; like a sequence's own cache, a process that stops leaves
    the rest of its block unused (a gap), and two processes' ids interleave."""

    def __init__(self, sequence: DbSequence, size: int = 16) -> None:
        self.size = size
        self._take = Statement(
            select(sequence.next_value()).select_from(func.generate_series(1, bindparam("n")))
        )
        self._free: weakref.WeakKeyDictionary[object, deque[int]] = weakref.WeakKeyDictionary()

    async def next(self, sql: Sql) -> int:
        free = self._free.setdefault(sql.database, deque())
        if not free:
            taken = [row[0] for row in await sql.fetch(self._take, {"n": self.size})]
            free.extend(sorted(taken))
        return free.popleft()
