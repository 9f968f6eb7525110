"""CPU per event a service's consumer applies: its runtime, handlers and PostgreSQL.

Run on demand, never in the test suite::

    .venv/bin/python -m bench.event_apply --events 2000 --rounds 5

On an embedded PostgreSQL of its own (no broker): each round, ``--events`` model requests'
``Requested`` then ``Approved`` events go through ``EventConsumer.process_batch`` of notice
and of mypage_cqrs, one record per call (as when the platform is not under load), with
the services' own handlers and units of work. Printed per service and event type: the
CPU µs per event of this process (the consumer) and of the database's backends, medians
of the rounds. ``bench.platform`` measures the whole platform; this isolates what
applying one event costs, where the platform's idle polling cannot blur it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import uvloop
from aiokafka import ConsumerRecord
from opentelemetry.trace import NoOpTracer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench import procs
from contracts import Event
from contracts.model import Approved, Requested
from mypage_cqrs.handlers import HANDLERS as MYPAGE_HANDLERS
from mypage_cqrs.repository import MypageUnitOfWork
from notice.handlers import HANDLERS as NOTICE_HANDLERS
from notice.repository import NoticeUnitOfWork
from servicekit import migrations
from servicekit.consumer import EventConsumer
from servicekit.db import make_engine
from servicekit.envelope import Envelope
from servicekit.logging import configure_logging
from servicekit.outbox import OutboxWriter

SERVICES: dict[str, tuple[Callable[..., Any], dict[type[Event], Any]]] = {
    "notice": (NoticeUnitOfWork, NOTICE_HANDLERS),
    "mypage_cqrs": (MypageUnitOfWork, MYPAGE_HANDLERS),
}


def _record(event: Event, offset: int) -> ConsumerRecord[bytes, bytes]:
    envelope = Envelope.wrap(event, "/nocode/model")
    return ConsumerRecord(
        "model.events", 0, offset, 0, 0, envelope.subject.encode(), envelope.value(), None,
        1, 1, envelope.headers(),
    )  # fmt: skip


def _events(kind: type[Event], first: int, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    made = []
    for n in range(first, first + count):
        state = "requested" if kind is Requested else "approved"
        made.append(_record(kind(id=n, state=state, user_id="u", model_name=f"m{n}"), n))
    return made


def _backends_ms(database: str, postmaster: int) -> float:
    snap = procs.Snapshot.take([], postmaster)
    return sum(ticks for label, ticks in snap.ticks.values() if label == f"pg:{database}") * (
        procs.TICK_MS
    )


async def _round(
    consumers: dict[str, EventConsumer], postmaster: int, first: int, count: int
) -> dict[str, tuple[float, float]]:
    """(consumer µs, database µs) per event, by "service event"."""
    out = {}
    for kind in (Requested, Approved):
        records = _events(kind, first, count)
        for service, consumer in consumers.items():
            pg, cpu = _backends_ms(service, postmaster), time.process_time()
            for record in records:
                await consumer.process_batch([record])
            spent = (time.process_time() - cpu) * 1e6 / count
            out[f"{service} {kind.__name__}"] = (
                spent,
                (_backends_ms(service, postmaster) - pg) * 1000 / count,
            )
    return out


async def run(args: argparse.Namespace) -> None:
    from nocode.embedded_postgres import EmbeddedPostgres

    data = Path(tempfile.mkdtemp(prefix="nocode-event-apply-"))
    pg = EmbeddedPostgres(data / "postgres", args.port)
    process = pg.start()
    try:
        admin = await asyncpg.connect(pg.url("postgres", "postgresql"))
        consumers = {}
        for service, (uow_class, handlers) in SERVICES.items():
            if args.only and service != args.only:
                continue
            await admin.execute(f"CREATE DATABASE {service}")
            url = pg.url(service)
            await asyncio.to_thread(migrations.upgrade, service, url)
            sessions = async_sessionmaker(
                make_engine(url), class_=AsyncSession, expire_on_commit=False
            )
            consumers[service] = EventConsumer(
                service=service,
                topics=("model.events",),
                bootstrap_servers="127.0.0.1:1",
                uow_factory=lambda c=uow_class, s=sessions: c(s, OutboxWriter("/bench")),
                handlers=handlers,
                dead_letter_producer=None,  # type: ignore[arg-type]
                tracer=NoOpTracer(),
            )
        await admin.close()
        await _round(consumers, process.pid, 1_000_000, 200)  # connections, statements
        rounds = [
            await _round(consumers, process.pid, n * args.events, args.events)
            for n in range(1, args.rounds + 1)
        ]
    finally:
        pg.stop()
    print(f"\n{args.events} events per round, {args.rounds} rounds, medians (µs per event)")
    print("\n| service, event | consumer | its PostgreSQL | total |\n|---|---:|---:|---:|")
    for key in rounds[0]:
        own = statistics.median(r[key][0] for r in rounds)
        db = statistics.median(r[key][1] for r in rounds)
        print(f"| {key} | {own:.0f} | {db:.0f} | {own + db:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=25500)
    parser.add_argument("--only", choices=sorted(SERVICES), help="one service")
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull:
        configure_logging("bench", "WARNING", stream=devnull)
        uvloop.run(run(args))  # the event loop the services run on


if __name__ == "__main__":
    main()
