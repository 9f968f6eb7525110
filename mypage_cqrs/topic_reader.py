"""Reading the event topics for a replay until they hold what the producers hold.

A broker's end offsets are not trusted alone (the embedded broker once reported a
high watermark one short): a phase reads up to the end offsets taken when it starts,
then until each topic holds as many distinct events as its producers' outboxes held
when asked (their ``GET /health/outbox``, counts only: rows published, and rows the
relay is still publishing, or publishing again to a broker that lost them), then keeps
fetching for a short linger, so a record an end offset left out is read too. Records
past the end offsets are kept: applying an event is idempotent and order-tolerant.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpx
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import Event
from servicekit.envelope import UndecodableMessage, decode

log = structlog.get_logger(__name__)

Sink = Callable[[list[Event]], Awaitable[None]]


class ReplayIncomplete(RuntimeError):
    """The topics did not come to hold what their producers' outboxes hold."""


@dataclass
class ProducerCounts:
    """How many events the producers' outboxes hold per topic, and who could not be asked."""

    per_topic: dict[str, int] = field(default_factory=dict)
    unasked: dict[str, str] = field(default_factory=dict)  # producer -> why


async def producer_counts(producers: Mapping[str, str], timeout_s: float = 5.0) -> ProducerCounts:
    """Ask each producing service (name -> base URL) how many events its outbox holds."""
    result = ProducerCounts()
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        answers = await asyncio.gather(
            *(client.get(f"{url.rstrip('/')}/health/outbox") for url in producers.values()),
            return_exceptions=True,
        )
    for name, answer in zip(producers, answers, strict=True):
        if isinstance(answer, BaseException):
            result.unasked[name] = f"{type(answer).__name__}: {answer}"[:200]
            continue
        if answer.status_code != 200:
            result.unasked[name] = f"HTTP {answer.status_code}"
            continue
        for topic, counts in answer.json().get("topics", {}).items():
            result.per_topic[topic] = result.per_topic.get(topic, 0) + int(counts["retained"])
    return result


@dataclass
class Reading:
    """Everything one replay read: records per partition, distinct events per topic."""

    per_partition: Counter[str] = field(default_factory=Counter)  # "topic/partition" -> records
    event_ids: dict[str, set[str]] = field(default_factory=dict)  # topic -> distinct event ids
    skipped: int = 0  # records that are not events of a known contract

    def per_topic(self, topics: tuple[str, ...]) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for where, n in self.per_partition.items():
            counts[where.rsplit("/", 1)[0]] += n
        return {t: counts.get(t, 0) for t in topics}


async def read_phase(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    sink: Sink,
    reading: Reading,
    *,
    expected: Mapping[str, int],
    stall_timeout_s: float,
    linger_s: float,
) -> None:
    """Feed ``sink`` every event from the current positions until the end offsets taken
    now are passed, each topic of ``expected`` holds that many distinct events, and then
    ``linger_s`` more seconds of fetching."""
    ends = await consumer.end_offsets(tps) if tps else {}
    reached_at: float | None = None
    last_progress = time.monotonic()
    while True:
        now = time.monotonic()
        if reached_at is None:
            pending = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            short = {
                topic: (len(reading.event_ids.get(topic, ())), want)
                for topic, want in expected.items()
                if len(reading.event_ids.get(topic, ())) < want
            }
            if not pending and not short:
                reached_at = now
            elif now - last_progress > stall_timeout_s:
                raise ReplayIncomplete(_why(pending, short))
        elif now - reached_at >= linger_s:
            return
        if not tps:
            await asyncio.sleep(min(0.1, linger_s))
            continue
        batches = await consumer.getmany(*tps, timeout_ms=100, max_records=1000)
        events: list[Event] = []
        for tp, records in batches.items():
            for record in records:
                reading.per_partition[f"{tp.topic}/{tp.partition}"] += 1
                try:
                    envelope = decode(record.value, record.headers)
                except UndecodableMessage as exc:
                    reading.skipped += 1
                    log.warning("replay: record skipped", topic=tp.topic, error=str(exc))
                    continue
                reading.event_ids.setdefault(tp.topic, set()).add(envelope.id)
                events.append(envelope.event)
        if events:
            await sink(events)
        if batches:
            last_progress = time.monotonic()


def _why(pending: list[TopicPartition], short: Mapping[str, tuple[int, int]]) -> str:
    parts = [
        f"{topic} holds {have} of the {want} events its producer's outbox holds"
        for topic, (have, want) in short.items()
    ]
    if pending:
        parts.append("no records before the end offsets of " + ", ".join(map(str, pending)))
    return "replay stopped, nothing swapped: " + "; ".join(parts)
