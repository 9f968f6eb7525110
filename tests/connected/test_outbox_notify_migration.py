"""Migration n1 on a real PostgreSQL, in each service with an outbox: the relay's NOTIFY
names the row's id (a row-level trigger); downgraded, it is the payload-less statement
trigger again; upgraded once more, the id again."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic import command

from servicekit import migrations
from servicekit.db import asyncpg_dsn
from tests.support import create_database

pytestmark = pytest.mark.connected

_TRIGGER = """
SELECT position('NEW.id' IN p.prosrc) > 0 AS names_the_row, (t.tgtype & 1) = 1 AS per_row
FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgname = 'outbox_notify'
"""


async def _trigger(url: str) -> tuple[bool, bool]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow(_TRIGGER)
        return row["names_the_row"], row["per_row"]
    finally:
        await conn.close()


@pytest.mark.parametrize("service", ["model", "target", "core"])
async def test_the_notify_names_the_row_and_the_downgrade_restores_it(
    postgres_admin_url: str, service: str
) -> None:
    url = await create_database(postgres_admin_url, service)
    await asyncio.to_thread(migrations.upgrade, service, url)
    assert await _trigger(url) == (True, True)
    await asyncio.to_thread(command.downgrade, migrations.alembic_config(service, url), "-1")
    assert await _trigger(url) == (False, False)
    await asyncio.to_thread(migrations.upgrade, service, url)
    assert await _trigger(url) == (True, True)
