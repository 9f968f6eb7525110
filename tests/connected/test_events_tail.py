"""``nocode events tail``: a topic's records with their headers, from a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from contracts.model import Approved, Requested
from contracts.topics import ALL_TOPICS, MODEL_EVENTS
from servicekit.envelope import Envelope

pytestmark = pytest.mark.connected

NOCODE = str(Path(sys.executable).parent / "nocode")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def publish(bootstrap: str, *events: Requested | Approved) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            envelope = Envelope.wrap(event, "model", TRACEPARENT)
            await producer.send_and_wait(
                event.topic, envelope.value(), key=event.key.encode(), headers=envelope.headers()
            )
    finally:
        await producer.stop()


def tail(bootstrap: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.Popen(
        [NOCODE, "events", "tail", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_tail_from_the_beginning_shows_key_partition_offset_headers_and_value(
    topics: str,
) -> None:
    requested = Requested(id=7, state="requested", user_id="test", model_name="TestModel10")
    approved = Approved(id=7, state="approved", user_id="test", model_name="TestModel10")
    await publish(topics, requested, approved)

    shown = tail(topics, MODEL_EVENTS, "--from-beginning", "--max", "2")
    out, _ = shown.communicate(timeout=60)
    assert shown.returncode == 0
    print(out)
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 2
    first = blocks[0].splitlines()
    assert first[0].startswith(f"{MODEL_EVENTS} partition ")
    assert " offset 0  key=7  " in first[0]
    assert f"  ce_id: {requested.event_id}" in first
    assert "  ce_type: nocode.model.Requested" in first
    assert "  ce_source: model" in first
    assert f"  traceparent: {TRACEPARENT}" in first
    assert json.loads(first[-1]) == requested.to_value()
    assert "  ce_type: nocode.model.Approved" in blocks[1].splitlines()
    assert " offset 1  key=7  " in blocks[1].splitlines()[0]

    as_json = tail(topics, MODEL_EVENTS, "--from-beginning", "--max", "2", "--json")
    records = [json.loads(line) for line in as_json.communicate(timeout=60)[0].splitlines()]
    assert [r["offset"] for r in records] == [0, 1]
    assert records[1]["headers"]["ce_id"] == approved.event_id
    assert records[1]["value"] == approved.to_value()


async def test_tail_shows_only_what_arrives_after_it_started(topics: str) -> None:
    await publish(topics, Requested(id=1, state="requested", user_id="u", model_name="old"))
    shown = tail(topics, MODEL_EVENTS, "--max", "1", "--json")
    sent = 0
    deadline = time.monotonic() + 60
    while shown.poll() is None and time.monotonic() < deadline:
        sent += 1
        await publish(
            topics, Requested(id=100 + sent, state="requested", user_id="u", model_name="new")
        )
        await asyncio.sleep(0.5)
    out, _ = shown.communicate(timeout=30)
    assert shown.returncode == 0
    record = json.loads(out)
    assert record["value"]["modelName"] == "new"
    assert 101 <= record["value"]["id"] <= 100 + sent


def test_an_unknown_topic_is_one_line_and_a_hint_and_exit_1(topics: str) -> None:
    shown = tail(topics, "no.such.topic", "--max", "1")
    out, err = shown.communicate(timeout=60)
    assert shown.returncode == 1 and out == ""
    assert err.splitlines() == [
        f"nocode: error: no topic 'no.such.topic' on {topics}",
        f"  hint: the platform's topics: {', '.join(ALL_TOPICS)}",
    ]
