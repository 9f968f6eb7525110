"""Replay equals live after the broker lost everything, and never swaps in less than live.

The producers are real (model's relay publishes from its outbox), the broker is killed
with SIGKILL and started again on the same port; replay asks model how many events it
published (``GET /health/outbox``) and reads until the topics hold them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from contracts.topics import ALL_TOPICS, CORE_EVENTS, MODEL_EVENTS, TARGET_EVENTS
from mypage_cqrs.bootstrap import build as build_mypage
from mypage_cqrs.replay import ReplayIncomplete, ReplayRefused, rebuild
from mypage_cqrs.tables import inbox as mypage_inbox
from nocode.embedded_broker import EmbeddedBroker
from servicekit.kafka import ensure_topics
from tests.connected.model_service import model_service
from tests.connected.services import running
from tests.connected.test_mypage_view import mypage_settings, view_rows
from tests.connected.test_outbox_republish import count_is, kill_and_restart
from tests.support import eventually, free_port, read_topic

pytestmark = pytest.mark.connected

REPO = Path(__file__).resolve().parents[2]


async def test_replay_after_a_broker_restart_and_re_publish_rebuilds_exactly_the_live_rows(
    model_db: str, mypage_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    settings = mypage_settings(mypage_db, topics)
    async with (
        model_service(model_db, topics) as (client, _),
        running(build_mypage, settings) as (_, mypage),
    ):
        ids = [
            (await client.post("/models", json={"userId": "test", "modelName": f"R{i}"})).json()[
                "id"
            ]
            for i in range(4)
        ]
        for id in ids[:2]:
            assert (await client.put(f"/models/{id}")).status_code == 200
        inbox_count = select(func.count()).select_from(mypage_inbox)
        await _eventually(count_is(mypage, inbox_count, 6))
        live = await view_rows(mypage_db)
        counts = (await client.get("/health/outbox")).json()

        kill_and_restart(broker)
        await ensure_topics(topics, ALL_TOPICS, 3, 1)
        # At once: the relay may not have re-published yet; replay reads until it has.
        report = await rebuild(settings, producers={"model": str(client.base_url)})
        rebuilt = await view_rows(mypage_db)

    assert counts == {
        "service": "model",
        "topics": {MODEL_EVENTS: {"retained": 6, "published": 6, "unpublished": 0}},
    }
    assert len(live) == 4 and rebuilt == live
    assert report.rows_built == report.live_rows == 4
    assert report.events_read == {MODEL_EVENTS: 6, TARGET_EVENTS: 0, CORE_EVENTS: 0}
    assert sum(n for p, n in report.partitions.items() if p.startswith(MODEL_EVENTS)) == 6
    assert report.expected == {MODEL_EVENTS: 6}  # model's outbox, published or going again
    assert report.unasked == {}


async def test_replay_refuses_fewer_rows_than_live_unless_forced(
    model_db: str, mypage_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    settings = mypage_settings(mypage_db, topics)
    async with (
        model_service(model_db, topics) as (client, _),
        running(build_mypage, settings) as (_, mypage),
    ):
        for i in range(3):
            await client.post("/models", json={"userId": "test", "modelName": f"F{i}"})
        await read_topic(topics, MODEL_EVENTS, expect=3)
        await _eventually(count_is(mypage, select(func.count()).select_from(mypage_inbox), 3))
    live = await view_rows(mypage_db)

    # The broker loses everything and no relay is left to publish it again.
    kill_and_restart(broker)
    await ensure_topics(topics, ALL_TOPICS, 3, 1)

    with pytest.raises(ReplayRefused) as refused:
        await rebuild(settings, producers={})
    after_refusal = await view_rows(mypage_db)

    env = {
        **os.environ,
        "MYPAGE_CQRS_DATABASE_URL": mypage_db,
        "KAFKA_BOOTSTRAP_SERVERS": topics,
        # Where `nocode replay` looks for the producers: nothing listens there.
        "MODEL_PORT": str(free_port()),
        "TARGET_PORT": str(free_port()),
        "CORE_PORT": str(free_port()),
    }
    code, out, err = await _nocode(env, "replay", "mypage")
    forced_code, forced_out, _ = await _nocode(env, "replay", "mypage", "--force")
    forced = await view_rows(mypage_db)

    assert len(live) == 3
    assert (refused.value.rebuilt, refused.value.live) == (0, 3)
    assert after_refusal == live
    assert code == 1 and "mypage rebuilt" not in out
    assert err.strip().splitlines()[-1] == (
        "nocode: replay refused: the rebuilt view holds 0 requests, the live one 3; "
        "the topics have lost events, nothing swapped (--force swaps it anyway)"
    )
    assert forced_code == 0, forced_out
    assert any(
        line.startswith("mypage rebuilt: 0 rows (live had 3)") for line in forced_out.splitlines()
    )
    assert f"{MODEL_EVENTS}/0: 0 records" not in forced_out  # nothing read, nothing listed
    assert "model not asked (" in forced_out
    assert forced == []


async def _eventually(probe) -> None:  # type: ignore[no-untyped-def]
    await eventually(probe, what="the consumer applied every event")


async def _nocode(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nocode",
        *args,
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_replay_waits_for_what_the_producers_published_not_the_end_offsets(
    model_db: str, mypage_db: str, broker: EmbeddedBroker, topics: str
) -> None:
    """The broker's end offsets say 0; model's outbox holds 3: replay does not swap in an
    empty view, and rebuilds once the relay has published them again."""
    settings = mypage_settings(mypage_db, topics)
    # Polling every 60 s: an idle relay notices the new broker only when woken by a write.
    async with (
        model_service(model_db, topics, outbox_poll_interval_s=60) as (client, _),
        running(build_mypage, settings) as (_, mypage),
    ):
        for i in range(3):
            await client.post("/models", json={"userId": "test", "modelName": f"W{i}"})
        await _eventually(count_is(mypage, select(func.count()).select_from(mypage_inbox), 3))
        live = await view_rows(mypage_db)
        kill_and_restart(broker)
        await ensure_topics(topics, ALL_TOPICS, 3, 1)
        producers = {"model": str(client.base_url)}

        with pytest.raises(ReplayIncomplete) as stopped:
            await rebuild(settings, producers=producers, stall_timeout_s=3)
        unchanged = await view_rows(mypage_db)

        await client.post("/models", json={"userId": "test", "modelName": "wakes-the-relay"})
        report = await rebuild(settings, producers=producers)
        await _eventually(count_is(mypage, select(func.count()).select_from(mypage_inbox), 4))
        rebuilt = await view_rows(mypage_db)

    assert str(stopped.value) == (
        "replay stopped, nothing swapped: model.events holds 0 of the 3 events its producer's "
        "outbox holds"
    )
    assert unchanged == live and len(live) == 3
    assert report.expected == {MODEL_EVENTS: 4} and report.events_read[MODEL_EVENTS] == 4
    assert report.rows_built == 4 and len(rebuilt) == 4
    assert [r for r in rebuilt if r.id != "model-4"] == live
