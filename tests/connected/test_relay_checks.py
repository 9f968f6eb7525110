"""The relay's check after the acks: acks from a broker replaced during the batch are not
taken. Real embedded broker (Tansu, memory only) killed with SIGKILL and started again on
the same port between the acks and that check; real PostgreSQL; exact counts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from contracts.topics import ALL_TOPICS, MODEL_EVENTS
from model.tables import outbox
from nocode.embedded_broker import EmbeddedBroker
from servicekit.kafka import ensure_topics
from tests.connected.model_service import model_service
from tests.connected.test_outbox_republish import kill_and_restart, sample
from tests.support import ce, eventually, read_topic

pytestmark = pytest.mark.connected


async def test_acks_from_a_broker_replaced_during_the_batch_are_not_taken(
    model_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    failures_before = sample("outbox_publish_failures_total", "model")
    async with model_service(model_db, topics) as (client, runtime):
        relay = await eventually(lambda: _value(runtime.relay), what="the relay started")
        send_batch = relay.sends.publish
        seen: dict[str, Any] = {}

        async def replace_broker_after_the_acks(rows: list[Any]) -> tuple[list[Any], Any]:
            acked, failure = await send_batch(rows)
            if acked and "old" not in seen:  # the first acked batch only
                seen["old"] = await asyncio.to_thread(kill_and_restart, broker)
                await ensure_topics(topics, ALL_TOPICS, 3, 1)  # what the supervisor does
            return acked, failure

        meet = relay._meet

        async def meet_noting_the_row(cluster_id: str | None) -> bool:
            if "old" in seen and cluster_id == broker.cluster_id and "marked" not in seen:
                seen["marked"] = await _marked(runtime)  # before the re-publish unmarks it
            return await meet(cluster_id)

        relay.sends.publish = replace_broker_after_the_acks  # type: ignore[method-assign]
        relay._meet = meet_noting_the_row  # type: ignore[method-assign]
        created = await client.post("/models", json={"userId": "test", "modelName": "M"})
        assert created.status_code == 201

        await eventually(
            lambda: _all_published(runtime), what="the event published to the new broker"
        )
        records = await read_topic(topics, MODEL_EVENTS, expect=1)
        async with runtime.engine.connect() as conn:
            [event_id] = (await conn.execute(select(outbox.c.event_id))).scalars().all()

    # The old broker acked the event, but the relay saw another cluster after the acks:
    # the batch failed and the row stayed unpublished until the relay met the new broker,
    # which got it once.
    assert seen["old"] and seen["old"] != broker.cluster_id
    assert seen["marked"] == 0
    assert sample("outbox_publish_failures_total", "model") - failures_before >= 1
    assert [ce(r)["ce_id"] for r in records] == [event_id]


async def _marked(runtime: Any) -> int:
    """How many outbox rows are marked published now."""
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.published_at))).all()
    return sum(1 for r in rows if r.published_at is not None)


async def _value(thing: Any) -> Any:
    return thing


async def test_batches_over_the_same_connections_ask_the_broker_once_per_poll_interval(
    model_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    """Ten requests a few milliseconds apart go out in several batches over the producer's
    connections of the last answer: the broker is asked once, not twice per batch, and
    every event is on the topic once."""
    async with model_service(model_db, topics, outbox_poll_interval_s=5.0) as (client, runtime):
        relay = await eventually(lambda: _value(runtime.relay), what="the relay started")
        first = await client.post("/models", json={"userId": "test", "modelName": "M0"})
        assert first.status_code == 201
        await eventually(lambda: _all_published(runtime), what="the first event published")
        ask, asked = relay.check.ask, []

        async def counted_ask(*args: Any) -> Any:
            asked.append(args)
            return await ask(*args)

        relay.check.ask = counted_ask  # type: ignore[method-assign]
        published_before = _published()
        for n in range(1, 11):
            created = await client.post("/models", json={"userId": "test", "modelName": f"M{n}"})
            assert created.status_code == 201
            await asyncio.sleep(0.005)
        await eventually(lambda: _all_published(runtime), what="every event published")
        asked_while_publishing = len(asked)
        published = _published() - published_before
        records = await read_topic(topics, MODEL_EVENTS, expect=11)

    assert published == 10
    assert len({ce(r)["ce_id"] for r in records}) == len(records) == 11
    assert asked_while_publishing == 0  # the answer of the first event's batch still held


def _published() -> float:
    labels = {"service": "model", "topic": MODEL_EVENTS}
    return REGISTRY.get_sample_value("outbox_events_published_total", labels) or 0.0


async def _all_published(runtime: Any) -> bool:
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.published_at))).all()
    return bool(rows) and all(r.published_at for r in rows)
