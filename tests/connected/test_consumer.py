"""Consumer runtime: idempotent under redelivery, poison messages parked on the DLT."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from contracts import Event
from contracts.core import ModelCompleted, ModelProgressed
from contracts.topics import CORE_EVENTS, dead_letter_topic
from model.tables import inbox, outbox
from servicekit.envelope import Envelope
from servicekit.runtime import ServiceRuntime
from tests.connected.model_service import model_service
from tests.support import ce, read_topic

pytestmark = pytest.mark.connected


async def publish(bootstrap: str, *records: Event | tuple[bytes | None, list]) -> None:
    """Send events the way core's relay would, or raw (value, headers) records."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for record in records:
            if isinstance(record, Event):
                env = Envelope.wrap(record, "/nocode/core")
                await producer.send_and_wait(
                    CORE_EVENTS, env.value(), key=record.key.encode(), headers=env.headers()
                )
            else:
                value, headers = record
                await producer.send_and_wait(CORE_EVENTS, value, key=b"1", headers=headers)
    finally:
        await producer.stop()


async def approved_request(client: httpx.AsyncClient) -> int:
    id = (await client.post("/models", json={"userId": "test", "modelName": "M"})).json()["id"]
    assert (await client.put(f"/models/{id}")).json()["state"] == "approved"
    return id


async def wait_for(client: httpx.AsyncClient, id: int, **expected: object) -> dict:
    for _ in range(200):
        body = (await client.get(f"/models/{id}")).json()
        if all(body[k] == v for k, v in expected.items()):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"model request {id} never reached {expected}: {body}")


async def count(runtime: ServiceRuntime, table, *where) -> int:  # type: ignore[no-untyped-def]
    async with runtime.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(table).where(*where))


async def test_an_event_delivered_twice_changes_state_once(model_db: str, topics: str) -> None:
    async with model_service(model_db, topics) as (client, runtime):
        id = await approved_request(client)
        step1 = ModelProgressed(id=1, request_id=str(id), step=1, total_steps=4)
        step2 = ModelProgressed(id=1, request_id=str(id), step=2, total_steps=4)
        # The second copy carries the same event id, as a redelivery would.
        await publish(topics, step1, step1.model_copy(), step2)
        body = await wait_for(client, id, step=2)
        changed = await count(runtime, outbox, outbox.c.ce_type == "nocode.model.StateChanged")
        applied = await count(runtime, inbox)

    assert body["state"] == "inProgress" and body["progress"] == 50
    assert changed == 1  # the start (a step within training is announced by core alone)
    assert applied == 2  # one inbox row per distinct event, not one per delivery


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_next_is_processed(
    model_db: str, topics: str
) -> None:
    async with model_service(model_db, topics) as (client, _):
        id = await approved_request(client)
        garbage = (
            b"{not json",
            [
                ("ce_id", b"bad-1"),
                ("ce_type", b"nocode.core.ModelCompleted"),
                ("ce_source", b"/nocode/core"),
            ],
        )
        headerless = (b'{"eventType":"ModelCompleted"}', [])
        # Decodes, but the handler fails on every attempt (request id is not a number).
        failing = ModelCompleted(id=9, request_id="not-a-number")
        await publish(
            topics,
            garbage,
            headerless,
            failing,
            ModelProgressed(id=1, request_id=str(id), step=1, total_steps=1),
            ModelCompleted(id=1, request_id=str(id)),
        )
        body = await wait_for(client, id, state="completed")
        parked = await read_topic(topics, dead_letter_topic("model"), expect=3)

    assert body["progress"] == 100
    errors = [ce(r) for r in parked]
    assert [e.get("ce_id") for e in errors] == ["bad-1", None, failing.event_id]
    assert "invalid nocode.core.ModelCompleted value" in errors[0]["dlt_error"]
    assert "missing header ce_id" in errors[1]["dlt_error"]
    assert errors[2]["dlt_error"].startswith("ValueError: invalid literal for int()")
    assert [e["dlt_attempts"] for e in errors] == ["1", "1", "3"]
    assert all(e["dlt_original_topic"] == CORE_EVENTS for e in errors)
    assert orjson.loads(parked[2].value)["requestId"] == "not-a-number"


async def test_completion_of_a_cancelled_request_leaves_it_cancelled(
    model_db: str, topics: str
) -> None:
    # The counter is the process's: other tests in this run may have counted before.
    before = refused_completions()
    async with model_service(model_db, topics) as (client, runtime):
        id = await approved_request(client)
        await publish(topics, ModelProgressed(id=1, request_id=str(id), step=1, total_steps=2))
        await wait_for(client, id, state="inProgress")
        assert (await client.put(f"/models/{id}/cancel")).json()["state"] == "requestCanceled"
        await publish(topics, ModelCompleted(id=1, request_id=str(id)))
        # The completion is consumed (recorded in the inbox) but refused; it is counted once
        # the commit has answered, which may be just after the inbox row shows.
        for _ in range(200):
            if await count(runtime, inbox) == 2 and refused_completions() > before:
                break
            await asyncio.sleep(0.05)
        body = (await client.get(f"/models/{id}")).json()
        metrics = (await client.get("/metrics")).text

    assert body["state"] == "requestCanceled"
    assert 'model_core_events_refused_total{event="ModelCompleted",state="requestCanceled"}' in (
        metrics
    )
    assert refused_completions() == before + 1


def refused_completions() -> float:
    labels = {"event": "ModelCompleted", "state": "requestCanceled"}
    return REGISTRY.get_sample_value("model_core_events_refused_total", labels) or 0.0
