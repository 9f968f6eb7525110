"""The asyncpg connection under a SQLAlchemy connection: in its transaction, or outside any.

:class:`servicekit.sql.Sql` runs its statements on asyncpg directly; these find the
driver's connection under the unit of work's SQLAlchemy one, begin the transaction the
way SQLAlchemy's adapter does, and, when the server went away under a statement, discard
the connection as SQLAlchemy would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


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


async def driver_outside_transaction(conn: AsyncConnection | AsyncSession) -> Connection:
    """The asyncpg connection under ``conn``, no transaction begun (autocommit)."""
    if isinstance(conn, AsyncSession):
        conn = await conn.connection()
    return (await conn.get_raw_connection()).dbapi_connection.driver_connection
