"""Replay: the view rebuilt from the start of the topics equals the live one.

The rebuild runs while the live service keeps consuming (as ``nocode replay mypage``
would), into the live database (swapped in) or into a fresh one.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from contracts import model
from contracts.topics import CORE_EVENTS, MODEL_EVENTS, TARGET_EVENTS
from mypage_cqrs.bootstrap import build
from mypage_cqrs.replay import rebuild
from servicekit.db import asyncpg_dsn
from tests.connected.services import running
from tests.connected.test_mypage_view import (
    EXPECTED,
    applied,
    caught_up,
    listed,
    m,
    mypage_settings,
    saga_stream,
    trained,
    view_rows,
)
from tests.support import migrated_database, publish

pytestmark = pytest.mark.connected

LIVE_INDEXES = {"my_requests_pkey", "ix_my_requests_user_created", "ix_my_requests_created"}
TIMELINE_INDEXES = {"request_timeline_pkey", "ix_request_timeline_request"}


async def sql(database_url: str, statement: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetch(statement)
    finally:
        await conn.close()


async def timeline_rows(database_url: str) -> list[asyncpg.Record]:
    return await sql(database_url, "SELECT * FROM request_timeline ORDER BY event_id, part")


async def test_rebuild_equals_the_live_view(mypage_db: str, topics: str) -> None:
    settings = mypage_settings(mypage_db, topics)
    stream = saga_stream()
    async with running(build, settings) as (client, runtime):
        await publish(topics, *stream)
        await caught_up(runtime, applied(stream))
        live = await view_rows(mypage_db)
        live_timelines = await timeline_rows(mypage_db)

        report = await rebuild(settings)

        assert await view_rows(mypage_db) == live
        assert await timeline_rows(mypage_db) == live_timelines
        # One entry per event (these steps name no Vertica batch), none for the two
        # StateChanged that only repeat inProgress: core's ModelProgressed is the step's entry.
        assert report.timeline_entries == len(live_timelines) == len(stream) - 2
        assert len(live) == report.rows_built == 5
        assert report.events_read == {
            MODEL_EVENTS: sum(e.topic == MODEL_EVENTS for e in stream),
            TARGET_EVENTS: sum(e.topic == TARGET_EVENTS for e in stream),
            CORE_EVENTS: sum(e.topic == CORE_EVENTS for e in stream),
        }
        assert report.tail_events == {MODEL_EVENTS: 0, TARGET_EVENTS: 0, CORE_EVENTS: 0}
        assert report.skipped == 0 and report.truncated == []
        assert "5 rows" in report.summary()

        # The swapped-in table is the live one: served, and the live consumer writes to it.
        assert await listed(client, userId="test") == EXPECTED
        approved = m(model.Approved, 3, 41, "approved", "OtherModel", user_id="other")
        await publish(topics, *[approved])
        await caught_up(runtime, applied(stream) + 1)
        other = await client.get("/myRequests/model-3")
        assert other.json()["state"] == "approved"

        # A second rebuild finds the table and its indexes under their usual names; two at
        # once on one database: the second refuses to start.
        both = (rebuild(settings), rebuild(settings))
        outcomes = await asyncio.gather(*both, return_exceptions=True)
        assert sorted(type(o).__name__ for o in outcomes) == ["RebuildReport", "ReplayInProgress"]
        assert [r.state for r in await view_rows(mypage_db) if r.id == "model-3"] == ["approved"]

    tables = await sql(mypage_db, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'my_%'")
    assert [t["tablename"] for t in tables] == ["my_requests"]
    indexes = await sql(
        mypage_db, "SELECT indexname FROM pg_indexes WHERE tablename = 'my_requests'"
    )
    assert {i["indexname"] for i in indexes} == LIVE_INDEXES
    tables = await sql(
        mypage_db, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'request_timeline%'"
    )
    assert [t["tablename"] for t in tables] == ["request_timeline"]
    indexes = await sql(
        mypage_db, "SELECT indexname FROM pg_indexes WHERE tablename = 'request_timeline'"
    )
    assert {i["indexname"] for i in indexes} == TIMELINE_INDEXES


async def test_rebuild_repairs_a_corrupted_view(mypage_db: str, topics: str) -> None:
    settings = mypage_settings(mypage_db, topics)
    stream = saga_stream()
    async with running(build, settings) as (client, runtime):
        await publish(topics, *stream)
        await caught_up(runtime, applied(stream))
        live = await view_rows(mypage_db)

        await sql(mypage_db, "UPDATE my_requests SET state = 'rejected', progress = 0")
        await sql(mypage_db, "DELETE FROM my_requests WHERE id = 'target-1'")
        await sql(
            mypage_db,
            "INSERT INTO my_requests (id, kind, request_id, created_at, updated_at, created_exact,"
            " progress, step, total_steps, state) VALUES"
            " ('model-77', 'model', 77, now(), now(), true, 0, 0, 0, 'completed')",
        )
        assert await view_rows(mypage_db) != live

        await rebuild(settings)
        assert await view_rows(mypage_db) == live
        assert await listed(client, userId="test") == EXPECTED

        await sql(mypage_db, "TRUNCATE my_requests")
        assert await listed(client) == []
        await rebuild(settings)
        assert await view_rows(mypage_db) == live


async def test_rebuild_into_a_fresh_database_equals_the_live_view(
    postgres_admin_url: str, mypage_db: str, topics: str
) -> None:
    stream = saga_stream()
    async with running(build, mypage_settings(mypage_db, topics)) as (_, runtime):
        await publish(topics, *stream)
        await caught_up(runtime, applied(stream))
        live = await view_rows(mypage_db)

    fresh_db = await migrated_database(postgres_admin_url, "mypage_cqrs")
    report = await rebuild(mypage_settings(fresh_db, topics))
    assert report.rows_built == len(live)
    assert await view_rows(fresh_db) == live


async def test_rebuild_while_events_keep_arriving(
    postgres_admin_url: str, mypage_db: str, topics: str
) -> None:
    """The live consumer writes the old table, then the new one; the tail covers the gap."""
    settings = mypage_settings(mypage_db, topics)
    first = saga_stream()
    later = [e for n in range(20) for e in trained(100 + n, 100 + n, f"Late{n}")]
    async with running(build, settings) as (_, runtime):
        await publish(topics, *first)
        await caught_up(runtime, applied(first))

        async def trickle() -> None:
            for start in range(0, len(later), 10):
                await publish(topics, *later[start : start + 10])
                await asyncio.sleep(0.01)

        _, report = await asyncio.gather(trickle(), rebuild(settings))
        assert sum(report.events_read.values()) >= len(first)
        await caught_up(runtime, applied(first) + applied(later))
        live = await view_rows(mypage_db)

        live_timelines = await timeline_rows(mypage_db)

    assert sum(r.state == "completed" for r in live if r.kind == "model") == 1 + 20
    fresh_db = await migrated_database(postgres_admin_url, "mypage_cqrs")
    await rebuild(mypage_settings(fresh_db, topics))
    assert await view_rows(fresh_db) == live
    assert await timeline_rows(fresh_db) == live_timelines
