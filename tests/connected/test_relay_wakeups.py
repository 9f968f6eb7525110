"""When the relay reads, on the real database and broker: a request's commit wakes the
relay of its own process before the request answers, and the NOTIFY of that commit (which
names the row) costs no second read."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from contracts.topics import MODEL_EVENTS
from model import handlers
from nocode.embedded_broker import EmbeddedBroker
from tests.connected.model_service import model_service
from tests.connected.test_relay_checks import _all_published
from tests.support import ce, eventually, read_topic

pytestmark = pytest.mark.connected


async def test_each_request_is_read_once_and_before_it_answers(
    model_db: str, broker: EmbeddedBroker, topics: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered: dict[str, float] = {}  # request id -> when its handler returned
    request_model = handlers.request_model

    async def timed_request(*args: Any) -> Any:
        req = await request_model(*args)
        answered[str(req.id)] = time.monotonic()
        return req

    monkeypatch.setattr(handlers, "request_model", timed_request)
    # A long poll interval: every read here is a wake-up's.
    async with model_service(model_db, topics, outbox_poll_interval_s=30.0) as (client, runtime):
        relay = await eventually(lambda: _started(runtime), what="the relay leading")
        first = await client.post("/models", json={"userId": "test", "modelName": "M0"})
        assert first.status_code == 201
        await eventually(lambda: _all_published(runtime), what="the first event published")
        await asyncio.sleep(0.2)  # the first event's NOTIFY is in
        next_rows, reads = relay._next_rows, []

        async def timed_read() -> Any:
            began = time.monotonic()
            rows, backlog = await next_rows()
            reads.append((began, [r.key for r in rows]))
            return rows, backlog

        relay._next_rows = timed_read  # type: ignore[method-assign]
        answered.clear()
        for n in range(1, 11):
            created = await client.post("/models", json={"userId": "test", "modelName": f"M{n}"})
            assert created.status_code == 201
            await eventually(lambda: _all_published(runtime), what=f"event {n} published")
            await asyncio.sleep(0.05)  # its NOTIFY is in, and woke nothing
        records = await read_topic(topics, MODEL_EVENTS, expect=11)

    assert [keys for _, keys in reads] == [[key] for key in answered]  # one read each, no empty
    # Each read began before the handler that committed its row returned: woken by the
    # commit, not by its NOTIFY, which is read only once the request has answered.
    assert all(began < answered[keys[0]] for began, keys in reads)
    assert len({ce(r)["ce_id"] for r in records}) == len(records) == 11


async def _started(runtime: Any) -> Any:
    relay = runtime.relay
    return relay if relay is not None and relay._conn is not None else None
