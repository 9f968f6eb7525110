"""Async SQLAlchemy engine and the unit of work every handler runs in.

A unit of work is one transaction. Events raised by aggregates the unit of work
has seen are written to the outbox inside that same transaction on commit, so a
state change and the event announcing it are stored together or not at all.
Effects outside the database that must happen once per committed change (metrics)
are registered with :meth:`UnitOfWork.after_commit`: a consumer retrying a failed
transaction does not count the change twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self

import asyncpg
import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from contracts import Event
from servicekit.outbox import OutboxWriter
from servicekit.sql import Sql

log = structlog.get_logger(__name__)

Callback = Callable[[], object]


CONNECT_TIMEOUT_S = 5.0  # asyncpg's default is 60 s: a request would hang that long
POOL_TIMEOUT_S = 10.0  # waiting for a pooled connection; then it is a 503, not a hang

# SQLSTATEs that say "the server cannot serve you now", not "your query is wrong":
# connection exceptions (class 08), shutdown / starting up (57P01-57P03), too many clients.
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})

DATABASE_ERRORS = (sa_exc.SQLAlchemyError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""What talking to the database can raise: asyncpg's and OSError raw (on connect), SQLAlchemy's
wrapping the driver's (mid-statement). :func:`database_unavailable` tells an outage apart."""

DB_RETRY_AFTER_S = 2
"""``Retry-After`` of a 503 for an unreachable database: about what PostgreSQL takes to restart
and a pool to reconnect. A client retrying a write sends an ``Idempotency-Key``."""


def make_engine(url: str, pool_size: int = 20, pre_ping: bool = False) -> AsyncEngine:
    """A pool of up to ``pool_size`` connections, each opened when first needed and kept:
    no overflow connections opened and closed under load. No ping per checkout unless
    ``pre_ping``: a connection that died with its server fails its statement once, which
    :func:`database_unavailable` reports as an outage (503 / waited out), and the pool
    replaces every connection of that server on the next checkout."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=pre_ping,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args={"timeout": CONNECT_TIMEOUT_S},
    )


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached (refused, down, restarting,
    shutting down, connection lost, pool exhausted) rather than that a statement failed.

    Looks through SQLAlchemy's wrapping (``orig``) and the exception chain, since asyncpg's
    errors reach callers raw (on connect) or wrapped (mid-statement).
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, OSError | sa_exc.TimeoutError | asyncpg.PostgresConnectionError):
            return True  # OSError: refused, reset, unreachable, connect timeout
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return True
        sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if isinstance(sqlstate, str) and (
            sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate.startswith("08")
        ):
            return True
        if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
            return True
        pending += [getattr(exc, "orig", None), exc.__cause__, exc.__context__]
    return False


def asyncpg_dsn(url: str) -> str:
    """The plain libpq URL asyncpg's own connect() accepts."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


class EventSource(Protocol):
    def pull_events(self) -> list[Event]: ...


class Session:
    """The unit of work's SQLAlchemy connection, whose statements see the writes waiting
    for the commit in :attr:`UnitOfWork.sql` (:meth:`servicekit.sql.Sql.defer`): they are
    sent first. Everything else is the connection's own."""

    __slots__ = ("_conn", "_sql")

    def __init__(self, conn: AsyncConnection, sql: Sql) -> None:
        self._conn = conn
        self._sql = sql

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        await self._sql.flush()
        return await self._conn.execute(statement, *args, **kwargs)

    async def scalar(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        await self._sql.flush()
        return await self._conn.scalar(statement, *args, **kwargs)

    async def scalars(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        await self._sql.flush()
        return await self._conn.scalars(statement, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class UnitOfWork:
    """One transaction: ``async with uow: ...; await uow.commit()``.

    Leaving the block without commit rolls back. Services subclass it to add
    their repositories (built on :attr:`session`) and register aggregates with
    :meth:`track` so their events reach the outbox.

    Blocks nest: a block entered while one is open joins its transaction, and its
    ``commit`` only stages the events; the outermost block commits (or rolls back)
    everything. That is how a command and what is stored about it (an idempotency
    key and its response, ``servicekit.idempotency``) commit together.

    :attr:`session` is a Core connection (``execute``, ``scalar``), not an ORM session:
    every repository runs Core statements, and the ORM's session around them (its
    transaction bookkeeping, identity map, execution events) was a fifth of a request.
    :attr:`sql` runs the hot paths' statements (:class:`servicekit.sql.Statement`) on the
    same connection, in the same transaction, without SQLAlchemy's execution layer. Writes
    nothing reads back (saves, outbox rows) wait there for the commit and go as one
    statement; a unit of work that ran nothing else is that one statement (its own
    transaction). A statement on either sees the writes waiting.
    """

    session: Session
    sql: Sql
    _depth = 0

    def __init__(
        self, db: AsyncEngine | async_sessionmaker[AsyncSession], outbox: OutboxWriter
    ) -> None:
        """``db``: the service's engine, or a sessionmaker bound to it (what callers pass
        that were written when the unit of work ran on an ORM session)."""
        self._engine: AsyncEngine = db if isinstance(db, AsyncEngine) else db.kw["bind"]
        self.outbox = outbox
        self._seen: list[EventSource] = []
        self._after_commit: list[Callback] = []

    async def __aenter__(self) -> Self:
        self._depth += 1
        if self._depth > 1:
            return self  # joins the open transaction
        try:
            connection = await self._engine.connect()
        except BaseException:
            self._depth = 0  # not entered: no __aexit__ comes
            raise
        # No begin(): the connection begins its transaction at the first statement.
        self.sql = Sql(connection, deferring=True)
        self.session = Session(connection, self.sql)
        self._seen = []
        self._after_commit = []
        self._staged = 0  # events staged in the outbox
        self.on_begin()
        return self

    def on_begin(self) -> None:
        """Hook for subclasses to build repositories on the fresh session."""

    def track(self, aggregate: EventSource) -> None:
        if aggregate not in self._seen:
            self._seen.append(aggregate)

    def after_commit(self, callback: Callback) -> None:
        """Call ``callback`` once this transaction has committed; never if it rolls back.

        Callbacks run in the order given, after the commit succeeded; one that raises
        is logged and the others still run (the change is stored whatever they do).
        """
        self._after_commit.append(callback)

    async def commit(self) -> None:
        for aggregate in self._seen:
            for event in aggregate.pull_events():
                await self.outbox.add(self.sql, event)
                self._staged += 1
        if self._depth > 1:
            return  # the outermost block commits
        try:
            await self.sql.flush(last=True)  # alone, it is its own transaction
        except BaseException:
            self._staged = 0  # not stored
            raise
        if self.session.in_transaction():
            await self.session.commit()
        staged, self._staged = self._staged, 0
        if staged and self.outbox.wake is not None:
            self.outbox.wake()
            await asyncio.sleep(0)  # the relay starts reading before this request answers
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:
                log.error("after-commit callback failed", callback=repr(callback), error=repr(exc))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth > 0:
            return  # an exception goes on to the outermost block, which rolls back
        self._after_commit = []  # not committed: what waited for the commit never happens
        await self.session.close()  # rolls back what did not commit
