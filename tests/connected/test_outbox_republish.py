"""The outbox is the log of record: a broker that lost it (another cluster id) gets it again.

Real embedded broker (Tansu, memory only) killed with SIGKILL and started again on the
same port, the way the supervisor restarts it; real PostgreSQL; exact counts.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from contracts.topics import ALL_TOPICS, MODEL_EVENTS
from model.tables import outbox, relay_state
from mypage_cqrs.bootstrap import build as build_mypage
from mypage_cqrs.tables import inbox as mypage_inbox
from nocode.embedded_broker import EmbeddedBroker
from nocode.status import ServiceStatus, Snapshot, parse_metrics, verdict
from servicekit.kafka import ensure_topics
from servicekit.runtime import ServiceRuntime
from tests.connected.model_service import model_service
from tests.connected.services import running
from tests.connected.test_mypage_view import mypage_settings, view_rows
from tests.support import ce, eventually, free_port, read_topic

pytestmark = pytest.mark.connected


def consumed(group: str, outcome: str) -> float:
    """events_consumed_total of ``group`` on model.events with ``outcome``, every type."""
    total = 0.0
    for family in REGISTRY.collect():
        for s in family.samples:
            if (
                s.name == "events_consumed_total"
                and s.labels.get("group") == group
                and s.labels.get("topic") == MODEL_EVENTS
                and s.labels.get("outcome") == outcome
            ):
                total += s.value
    return total


def sample(name: str, service: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": service}) or 0.0


async def scalar(runtime: ServiceRuntime, query):  # type: ignore[no-untyped-def]
    async with runtime.engine.connect() as conn:
        return await conn.scalar(query)


def count_is(runtime: ServiceRuntime, query, expected: int):  # type: ignore[no-untyped-def]
    """A probe for ``eventually``: does ``query`` count ``expected``?"""

    async def probe() -> bool:
        return await scalar(runtime, query) == expected

    return probe


def kill_and_restart(broker: EmbeddedBroker) -> str:
    """SIGKILL, then a fresh broker on the same port; returns the old cluster id."""
    assert broker.process is not None
    old = broker.cluster_id
    os.kill(broker.process.pid, signal.SIGKILL)
    broker.process.wait()
    broker.start()
    assert broker.cluster_id != old
    return old or ""


async def test_a_broker_that_lost_everything_gets_every_retained_event_again_in_order(
    model_db: str, mypage_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    republished_before = sample("outbox_events_republished_total", "model")
    async with model_service(model_db, topics) as (client, runtime):
        ids = [
            (await client.post("/models", json={"userId": "test", "modelName": f"M{i}"})).json()[
                "id"
            ]
            for i in range(6)
        ]
        for id in ids[:3]:
            assert (await client.put(f"/models/{id}")).status_code == 200
        old = await read_topic(topics, MODEL_EVENTS, expect=9)
        assert len(old) == 9

        # A consumer group applies all nine, then stops (its offsets die with the broker).
        async with running(build_mypage, mypage_settings(mypage_db, topics)) as (_, mypage):
            await eventually(
                count_is(mypage, select(func.count()).select_from(mypage_inbox), 9),
                what="mypage applied 9",
            )
            assert await scalar(mypage, select(func.count()).select_from(mypage_inbox)) == 9
        applied_before = consumed("mypage_cqrs", "applied")
        duplicates_before = consumed("mypage_cqrs", "duplicate")

        kill_and_restart(broker)

        async def met() -> bool:
            return (await _relay_state(runtime)).one().cluster_id == broker.cluster_id

        await eventually(met, what="the relay met the new broker")  # no topics yet: rows wait
        # Written during the re-publish: they come after the nine, each after its request's.
        for id in ids[3:5]:
            assert (await client.put(f"/models/{id}")).status_code == 200
        new_id = (await client.post("/models", json={"userId": "test", "modelName": "N"})).json()[
            "id"
        ]
        waiting = await scalar(runtime, select(func.count()).where(outbox.c.published_at.is_(None)))
        await ensure_topics(topics, ALL_TOPICS, 3, 1)  # what the supervisor does

        records = await read_topic(topics, MODEL_EVENTS, expect=12, timeout_s=60)
        state = (await _relay_state(runtime)).one()
        unpublished = await scalar(
            runtime, select(func.count()).where(outbox.c.published_at.is_(None))
        )

        # The consumer group comes back: it sees all twelve, applies only the three new ones.
        async with running(build_mypage, mypage_settings(mypage_db, topics)) as (_, mypage):

            async def all_applied() -> bool:
                return consumed("mypage_cqrs", "applied") - applied_before == 3 and (
                    consumed("mypage_cqrs", "duplicate") - duplicates_before == 9
                )

            await eventually(all_applied, what="mypage applied 3 new, skipped 9 old")
            await asyncio.sleep(0.5)  # nothing more arrives
            inbox_rows = await scalar(mypage, select(func.count()).select_from(mypage_inbox))
        view = {r.id: r.state for r in await view_rows(mypage_db)}

    assert waiting == 12
    assert consumed("mypage_cqrs", "applied") - applied_before == 3
    assert consumed("mypage_cqrs", "duplicate") - duplicates_before == 9
    assert inbox_rows == 12
    assert view == {f"model-{id}": "approved" for id in ids[:5]} | {
        f"model-{ids[5]}": "requested",
        f"model-{new_id}": "requested",
    }

    # A fresh reader sees every event once, each request's in order.
    old_ids = {ce(r)["ce_id"] for r in old}
    event_ids = Counter(ce(r)["ce_id"] for r in records)
    assert len(records) == 12 and len(event_ids) == 12 and old_ids <= set(event_ids)
    by_key: dict[int, list[str]] = {}
    for r in records:  # sorted by partition, offset
        by_key.setdefault(int(r.key), []).append(orjson.loads(r.value)["eventType"])
    assert by_key == {id: ["Requested", "Approved"] for id in ids[:5]} | {
        ids[5]: ["Requested"],
        new_id: ["Requested"],
    }
    # The lost events went out before anything written after the broker was lost.
    for partition in {r.partition for r in records}:
        kinds = [ce(r)["ce_id"] in old_ids for r in records if r.partition == partition]
        assert kinds == sorted(kinds, reverse=True), f"partition {partition}: {kinds}"
    assert state.cluster_id == broker.cluster_id and state.republish_through is None
    assert unpublished == 0
    assert sample("outbox_events_republished_total", "model") - republished_before == 9


async def test_a_row_for_a_topic_the_broker_does_not_have_waits_until_it_exists(
    model_db: str, broker: EmbeddedBroker
) -> None:
    bootstrap = broker.bootstrap_servers  # no topics created
    failures_before = sample("outbox_publish_failures_total", "model")
    async with model_service(model_db, bootstrap) as (client, runtime):
        created = await client.post("/models", json={"userId": "test", "modelName": "early"})
        assert created.status_code == 201

        async def failed_twice() -> bool:
            return sample("outbox_publish_failures_total", "model") - failures_before >= 2

        await eventually(failed_twice, what="the relay held the row twice")
        waiting = await scalar(runtime, select(func.count()).where(outbox.c.published_at.is_(None)))
        topics_meanwhile = await _topics(bootstrap)

        await ensure_topics(bootstrap, ALL_TOPICS, 3, 1)
        [record] = await read_topic(bootstrap, MODEL_EVENTS, expect=1, timeout_s=30)
        await eventually(
            count_is(runtime, select(func.count()).where(outbox.c.published_at.is_not(None)), 1),
            what="the row marked published",
        )
    partitions = await _partitions(bootstrap, MODEL_EVENTS)

    assert waiting == 1
    assert MODEL_EVENTS not in topics_meanwhile  # the relay did not make the broker create it
    assert orjson.loads(record.value)["modelName"] == "early"
    assert partitions == 3  # created by ensure_topics, not by a send (Tansu would make 4)


async def test_a_broker_that_keeps_its_cluster_id_gets_nothing_again(
    model_db: str, tmp_path: Path
) -> None:
    """A real Kafka keeps its cluster id (and its log): restarting the relay re-publishes
    nothing."""
    kafka = EmbeddedBroker(free_port(), log_file=tmp_path / "kafka.log", cluster_id="kafka-like")
    kafka.start()
    try:
        await ensure_topics(kafka.bootstrap_servers, ALL_TOPICS, 3, 1)
        republished_before = sample("outbox_events_republished_total", "model")
        async with model_service(model_db, kafka.bootstrap_servers) as (client, runtime):
            for i in range(3):
                await client.post("/models", json={"userId": "test", "modelName": f"K{i}"})
            await read_topic(kafka.bootstrap_servers, MODEL_EVENTS, expect=3)
            await eventually(
                count_is(runtime, select(func.count()).where(outbox.c.published_at.is_(None)), 0),
                what="3 rows marked published",
            )
        async with model_service(model_db, kafka.bootstrap_servers) as (client, runtime):
            created = await client.post(
                "/models", json={"userId": "test", "modelName": "after-restart"}
            )
            key = str(created.json()["id"]).encode()
            records = await read_topic(kafka.bootstrap_servers, MODEL_EVENTS, expect=4)
            await asyncio.sleep(1.5)  # three more idle checks of the cluster id
            state = (await _relay_state(runtime)).one()
        records = await read_topic(kafka.bootstrap_servers, MODEL_EVENTS, expect=4)
    finally:
        kafka.stop()

    assert [orjson.loads(r.value)["modelName"] for r in records if r.key == key] == [
        "after-restart"
    ]
    assert len(records) == 4 and len({ce(r)["ce_id"] for r in records}) == 4
    assert state.cluster_id == "kafka-like" and state.republish_through is None
    assert sample("outbox_events_republished_total", "model") - republished_before == 0


async def test_a_re_publish_short_of_pruned_events_says_so_in_metrics_and_status(
    model_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    one_second = 1 / 3600
    async with model_service(model_db, topics, outbox_retention_hours=one_second) as (
        client,
        runtime,
    ):
        for i in range(2):
            await client.post("/models", json={"userId": "test", "modelName": f"P{i}"})
        await read_topic(topics, MODEL_EVENTS, expect=2)
        await eventually(
            count_is(runtime, select(func.count()).select_from(outbox), 0),
            timeout_s=30,
            what="both rows pruned",
        )
        kill_and_restart(broker)
        await ensure_topics(topics, ALL_TOPICS, 3, 1)

        async def met() -> bool:
            state = (await _relay_state(runtime)).one()
            return state.cluster_id == broker.cluster_id

        await eventually(met, what="the relay met the new broker")
        state = (await _relay_state(runtime)).one()

        async def scraped() -> str | None:
            text = (await client.get("/metrics")).text
            return text if parse_metrics("model", text).republish_missing else None

        scrape = await eventually(scraped, what="the metric set")

    assert state.pruned_rows == 2 and state.republish_missing == 2
    status = parse_metrics("model", scrape)
    assert status.republish_missing == 2
    reasons = verdict(Snapshot((ServiceStatus("model", "-", "ok", metrics=status),))).reasons
    assert any("model outbox re-publish incomplete: 2 events" in r for r in reasons), reasons


async def _relay_state(runtime: ServiceRuntime):  # type: ignore[no-untyped-def]
    async with runtime.engine.connect() as conn:
        return await conn.execute(select(relay_state))


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def _partitions(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        await admin.close()


async def test_a_consumer_running_through_the_broker_kill_applies_every_event_once(
    model_db: str, mypage_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    async with (
        model_service(model_db, topics) as (client, _),
        running(build_mypage, mypage_settings(mypage_db, topics)) as (_, mypage),
    ):
        inbox_count = select(func.count()).select_from(mypage_inbox)
        ids = []
        for i in range(6):
            created = await client.post("/models", json={"userId": "test", "modelName": f"L{i}"})
            ids.append(created.json()["id"])
        for id in ids[:3]:
            assert (await client.put(f"/models/{id}")).status_code == 200
        await eventually(count_is(mypage, inbox_count, 9), what="mypage applied 9")
        applied_before = consumed("mypage_cqrs", "applied")

        kill_and_restart(broker)
        for id in ids[3:]:
            assert (await client.put(f"/models/{id}")).status_code == 200
        await ensure_topics(topics, ALL_TOPICS, 3, 1)
        await read_topic(topics, MODEL_EVENTS, expect=12, timeout_s=60)
        await eventually(count_is(mypage, inbox_count, 12), timeout_s=60, what="mypage has 12")
        await asyncio.sleep(1.0)
        view = {r.id: r.state for r in await view_rows(mypage_db)}
        applied = consumed("mypage_cqrs", "applied") - applied_before

    assert applied == 3
    assert view == {f"model-{id}": "approved" for id in ids}


async def test_a_consumer_whose_position_is_past_the_pruned_re_publish_reads_it_from_the_start(
    model_db: str, mypage_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    """Retention pruned what mypage had applied, so the new broker's log is the new events
    only, at offsets below mypage's old position: it must read them, not skip them."""
    one_second = 1 / 3600
    async with (
        model_service(model_db, topics, outbox_retention_hours=one_second) as (client, runtime),
        running(build_mypage, mypage_settings(mypage_db, topics)) as (_, mypage),
    ):
        inbox_count = select(func.count()).select_from(mypage_inbox)
        for i in range(6):
            await client.post("/models", json={"userId": "test", "modelName": f"old{i}"})
        await eventually(count_is(mypage, inbox_count, 6), what="mypage applied 6")
        await eventually(
            count_is(runtime, select(func.count()).select_from(outbox), 0),
            timeout_s=30,
            what="the 6 rows pruned",
        )
        kill_and_restart(broker)
        for i in range(9):
            await client.post("/models", json={"userId": "test", "modelName": f"new{i}"})
        await ensure_topics(topics, ALL_TOPICS, 3, 1)
        await eventually(count_is(mypage, inbox_count, 15), timeout_s=60, what="mypage has 15")
        await asyncio.sleep(1.0)
        view = await view_rows(mypage_db)
        applied = await scalar(mypage, inbox_count)

    assert applied == 15
    assert sorted(r.name for r in view) == sorted(
        [f"old{i}" for i in range(6)] + [f"new{i}" for i in range(9)]
    )
