"""Nothing acknowledged is lost: requests made while the broker is down are published later."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest

from contracts.topics import ALL_TOPICS, MODEL_EVENTS
from nocode.embedded_broker import EmbeddedBroker
from servicekit.kafka import ensure_topics
from tests.connected.model_service import model_service
from tests.support import ce, read_topic

pytestmark = pytest.mark.connected


async def test_requests_made_while_the_broker_is_down_are_all_published_once_in_order(
    model_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    async with model_service(model_db, topics) as (client, _):
        first = await client.post("/models", json={"userId": "warmup", "modelName": "before"})
        warmup = first.json()["id"]
        await read_topic(topics, MODEL_EVENTS, expect=1)

        broker.stop()
        created = [
            await client.post("/models", data={"userId": "test", "modelName": f"TestModel{i}"})
            for i in range(50)
        ]
        assert [r.status_code for r in created] == [201] * 50
        ids = [r.json()["id"] for r in created]
        for id in ids[:10]:
            assert (await client.put("/models", json={"id": id})).status_code == 200
        # Still ready: the writes above are in the outbox; the broker's outage is reported.
        outage = await client.get("/health/ready")
        assert outage.status_code == 200, outage.text
        assert outage.json()["database"] == "ok"
        assert outage.json()["broker"].startswith("unreachable")

        await asyncio.sleep(1.0)  # let the relay fail against the dead broker at least once
        broker.start()  # same port, empty memory: everything must come from the outbox
        await ensure_topics(topics, ALL_TOPICS, 3, 1)
        # The new broker (another cluster id) gets the warm-up event again, with the rest.
        records = await read_topic(topics, MODEL_EVENTS, expect=61, timeout_s=60)
        ready = await client.get("/health/ready")

    event_ids = Counter(ce(r)["ce_id"] for r in records)
    assert len(records) == 61 and max(event_ids.values()) == 1
    by_key: dict[int, list[str]] = {}
    for r in records:  # sorted by partition, offset: a key's records are in topic order
        by_key.setdefault(int(r.key), []).append(orjson.loads(r.value)["eventType"])
    assert sorted(by_key) == [warmup, *ids]
    assert all(by_key[id] == ["Requested", "Approved"] for id in ids[:10])
    assert all(by_key[id] == ["Requested"] for id in ids[10:])
    assert ready.status_code == 200
