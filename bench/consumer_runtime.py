"""CPU the consumer runtime adds per event, without a broker or a database.

Run on demand, never in the test suite::

    .venv/bin/python -m bench.consumer_runtime --events 10000 [--no-recording]

Feeds ``--events`` records of ``model.Requested`` through ``EventConsumer.process_batch``,
one per call (as under light load) and ten per call (a fetched batch), with a unit of work
whose statements return at once and a handler that does nothing: what remains is the
kernel's own work per event (headers, envelope decode, the record's span and log context,
the inbox claim's parameters, metrics). ``--no-recording`` uses a tracer whose spans are
not recorded. The whole platform's figures are ``bench.platform``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from aiokafka import ConsumerRecord
from opentelemetry.trace import NoOpTracer, Tracer

from contracts.model import Requested
from servicekit.consumer import EventConsumer
from servicekit.envelope import Envelope
from servicekit.logging import configure_logging
from servicekit.tracing import Tracing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _Row:
    def __init__(self, event_id: str) -> None:
        self.event_id = event_id


class _Result:
    def __init__(self, params: list[dict[str, Any]]) -> None:
        self.params = params

    def first(self) -> tuple[int]:
        return (1,)

    def __iter__(self) -> Any:
        return iter([_Row(p["event_id"]) for p in self.params])


class _Session:
    async def execute(self, _: Any, params: Any = None) -> _Result:
        return _Result(params if isinstance(params, list) else [params])


class _UnitOfWork:
    session = _Session()

    async def __aenter__(self) -> _UnitOfWork:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def commit(self) -> None:
        return None


async def _nothing(uow: Any, event: Any) -> None:
    return None


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    event = Requested(id=offset, state="requested", user_id="u", model_name="m")
    envelope = Envelope.wrap(event, "/nocode/model", TRACEPARENT)
    return ConsumerRecord(
        "model.events", 0, offset, 0, 0, str(offset).encode(), envelope.value(), None, 1, 1,
        envelope.headers(),
    )  # fmt: skip


async def measure(events: int, tracer: Tracer) -> tuple[float, float]:
    """CPU µs per event: one record per batch, ten per batch."""
    consumer = EventConsumer(
        service="mypage_cqrs",
        topics=("model.events",),
        bootstrap_servers="127.0.0.1:1",
        uow_factory=_UnitOfWork,  # type: ignore[arg-type]
        handlers={Requested: _nothing},
        dead_letter_producer=None,  # type: ignore[arg-type]
        tracer=tracer,
    )
    records = [_record(n) for n in range(events)]
    for record in records[:200]:  # warm up
        await consumer.process_batch([record])
    started = time.process_time()
    for record in records:
        await consumer.process_batch([record])
    alone = (time.process_time() - started) / events * 1e6
    started = time.process_time()
    for n in range(0, events, 10):
        await consumer.process_batch(records[n : n + 10])
    batched = (time.process_time() - started) / events * 1e6
    return alone, batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--no-recording", action="store_true", help="spans not recorded")
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull:
        configure_logging("mypage_cqrs", "INFO", stream=devnull)
        tracer = NoOpTracer() if args.no_recording else Tracing("mypage_cqrs").tracer
        alone, batched = asyncio.run(measure(args.events, tracer))
    spans = "not recorded" if args.no_recording else "recorded"
    print(
        f"consumer runtime CPU per event (spans {spans}): "
        f"{alone:.1f} µs one record per batch, {batched:.1f} µs in batches of 10"
    )


if __name__ == "__main__":
    main()
