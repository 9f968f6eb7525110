"""``nocode events tail TOPIC``: the records on a topic, with their key, partition, offset,
headers (``ce_id``, ``ce_type``, ``traceparent``...) and JSON value.

It reads every partition without a consumer group (nothing is committed, no service's
offsets move), from the end — or from the beginning with ``--from-beginning`` — until
``--max`` records or Ctrl-C. The broker is ``KAFKA_BOOTSTRAP_SERVERS``, else the local
platform's embedded one (``NOCODE_BROKER_PORT``, 9092).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from contracts.topics import ALL_TOPICS
from nocode.errors import CliError

# Tansu holds a fetch for the whole wait: short, so records show as they arrive.
FETCH_MAX_WAIT_MS = 100


class UnknownTopic(Exception):
    pass


def bootstrap_servers(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    given = env.get("KAFKA_BOOTSTRAP_SERVERS")
    return given or f"127.0.0.1:{env.get('NOCODE_BROKER_PORT', '9092')}"


def as_dict(record: ConsumerRecord) -> dict[str, Any]:
    headers = {
        k: (v.decode("utf-8", "replace") if v is not None else None) for k, v in record.headers
    }
    raw = record.value or b""
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw.decode("utf-8", "replace")
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
        "headers": headers,
        "value": value,
    }


def render(record: dict[str, Any]) -> str:
    """A record as a person reads it: a line of where it is, its headers, its value."""
    lines = [
        f"{record['topic']} partition {record['partition']} offset {record['offset']}"
        f"  key={record['key']}  {record['timestamp']}"
    ]
    lines += [f"  {name}: {value}" for name, value in record["headers"].items()]
    value = record["value"]
    lines.append(
        "  " + (json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value)
    )
    return "\n".join(lines) + "\n"


async def tail(
    topic: str,
    out: Callable[[dict[str, Any]], None],
    *,
    bootstrap: str,
    from_beginning: bool = False,
    max_records: int | None = None,
) -> int:
    """Print ``topic``'s records through ``out`` until ``max_records``; returns how many."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        client_id="nocode-events-tail",
    )
    try:
        await consumer.start()
        known = await consumer.topics()  # fetches the cluster's metadata
        partitions = consumer.partitions_for_topic(topic) if topic in known else None
        if not partitions:
            raise UnknownTopic(f"no topic {topic!r} on {bootstrap}")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if from_beginning:
            await consumer.seek_to_beginning(*assigned)
        else:
            await consumer.seek_to_end(*assigned)
        seen = 0
        while max_records is None or seen < max_records:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    out(as_dict(record))
                    seen += 1
                    if max_records is not None and seen >= max_records:
                        return seen
        return seen
    finally:
        await consumer.stop()


def main(
    topic: str,
    *,
    from_beginning: bool,
    max_records: int | None,
    as_json: bool,
    echo: Callable[[str], None],
) -> int:
    def out(record: dict[str, Any]) -> None:
        echo(json.dumps(record, ensure_ascii=False) if as_json else render(record))

    bootstrap = bootstrap_servers()
    try:
        asyncio.run(
            tail(
                topic,
                out,
                bootstrap=bootstrap,
                from_beginning=from_beginning,
                max_records=max_records,
            )
        )
    except UnknownTopic as exc:
        raise CliError(str(exc), f"the platform's topics: {', '.join(ALL_TOPICS)}") from exc
    except KeyboardInterrupt:
        return 0
    return 0
