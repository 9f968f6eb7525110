"""Transactional outbox: state and event commit together; the relay publishes them."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from sqlalchemy import func, select

from contracts.topics import MODEL_EVENTS
from model import handlers
from model.repository import ModelUnitOfWork
from model.tables import model_requests, outbox
from servicekit import migrations
from tests.connected.model_service import model_service
from tests.support import ce, create_database, read_topic

pytestmark = pytest.mark.connected

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_created_request_reaches_the_topic_with_cloudevents_headers(
    model_db: str, topics: str
) -> None:
    async with model_service(model_db, topics) as (client, runtime):
        created = await client.post(
            "/models",
            json={"userId": "test", "modelName": "TestModel10"},
            headers={"traceparent": TRACEPARENT},
        )
        assert created.status_code == 201
        request_id = created.json()["id"]
        [record] = await read_topic(topics, MODEL_EVENTS, expect=1)

        async with runtime.engine.connect() as conn:
            row = (await conn.execute(select(outbox))).one()

    headers = ce(record)
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == "nocode.model.Requested"
    assert headers["ce_source"] == "/nocode/model"
    assert headers["ce_subject"] == str(request_id)
    assert headers["ce_id"] == row.event_id
    assert headers["ce_time"].endswith("Z")
    assert headers["content-type"] == "application/json"
    # The request's trace goes on: the stored row names a span of the request, and the
    # record names the relay's publish span, both in the caller's trace.
    trace_id = TRACEPARENT.split("-")[1]
    assert row.traceparent.split("-")[1] == trace_id
    assert headers["traceparent"].split("-")[1] == trace_id
    assert len({TRACEPARENT, row.traceparent, headers["traceparent"]}) == 3
    assert record.key == str(request_id).encode()
    value = orjson.loads(record.value)
    assert list(value) == ["eventType", "timestamp", "id", "state", "userId", "modelName"]
    assert value | {"timestamp": 0} == {
        "eventType": "Requested",
        "timestamp": 0,
        "id": request_id,
        "state": "requested",
        "userId": "test",
        "modelName": "TestModel10",
    }
    # Published rows stay as the service's event log, marked published.
    assert row.published_at is not None


async def test_events_of_one_request_arrive_in_order(model_db: str, topics: str) -> None:
    async with model_service(model_db, topics) as (client, _):
        ids = [
            (await client.post("/models", data={"userId": "u", "modelName": f"m{i}"})).json()["id"]
            for i in range(3)
        ]
        for id in ids:
            assert (await client.put(f"/models/{id}")).status_code == 200
            assert (await client.put(f"/models/{id}/cancel")).status_code == 200
        records = await read_topic(topics, MODEL_EVENTS, expect=9)

    by_key: dict[bytes, list[str]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append(orjson.loads(r.value)["eventType"])
    assert by_key == {str(i).encode(): ["Requested", "Approved", "RequestCanceled"] for i in ids}


async def test_a_rolled_back_change_leaves_neither_state_nor_event(
    model_db: str, topics: str
) -> None:
    async with model_service(model_db, topics) as (_, runtime):
        uow = ModelUnitOfWork(runtime.sessionmaker, runtime.outbox)
        with pytest.raises(RuntimeError):
            async with uow:
                req = handlers.ModelRequest.request(await uow.requests.next_id(), "u", "m")
                await uow.requests.save(req)
                await uow.outbox.add(uow.sql, req.pull_events()[0])
                raise RuntimeError("crash before commit")
        async with runtime.engine.connect() as conn:
            counts = [
                await conn.scalar(select(func.count()).select_from(t))
                for t in (model_requests, outbox)
            ]
    assert counts == [0, 0]


async def test_published_events_are_kept_until_the_retention_setting_prunes_them(
    model_db: str, postgres_admin_url: str, topics: str
) -> None:
    async def outbox_rows(engine) -> int:  # type: ignore[no-untyped-def]
        async with engine.connect() as conn:
            return await conn.scalar(select(func.count()).select_from(outbox))

    async with model_service(model_db, topics) as (client, runtime):
        await client.post("/models", json={"userId": "u", "modelName": "kept"})
        await read_topic(topics, MODEL_EVENTS, expect=1)
        await asyncio.sleep(1.5)
        kept = await outbox_rows(runtime.engine)

    other_db = await create_database(postgres_admin_url, "model")
    await asyncio.to_thread(migrations.upgrade, "model", other_db)
    one_second = 1 / 3600
    async with model_service(other_db, topics, outbox_retention_hours=one_second) as (
        client,
        runtime,
    ):
        await client.post("/models", json={"userId": "u", "modelName": "pruned"})
        published = await read_topic(topics, MODEL_EVENTS, expect=2)
        for _ in range(100):
            if await outbox_rows(runtime.engine) == 0:
                break
            await asyncio.sleep(0.1)
        left = await outbox_rows(runtime.engine)
        request = (await client.get("/models/1")).json()

    assert kept == 1
    assert len(published) == 2 and left == 0
    assert request["modelName"] == "pruned"


async def test_the_relay_is_woken_by_notify_not_by_its_polling(model_db: str, topics: str) -> None:
    # With polling every 60 s, an event seen within 10 s can only have come through NOTIFY.
    async with model_service(model_db, topics, outbox_poll_interval_s=60) as (client, _):
        await asyncio.sleep(0.5)  # the relay is idle, waiting
        await client.post("/models", json={"userId": "u", "modelName": "woken"})
        records = await read_topic(topics, MODEL_EVENTS, expect=1, timeout_s=10)
    assert [orjson.loads(r.value)["modelName"] for r in records] == ["woken"]
