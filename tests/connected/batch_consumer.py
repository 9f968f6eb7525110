"""A consumer process for ``test_consumer_batch``: the kernel's runtime with an effect that
is not idempotent by itself (a row per call), so a count of rows is a count of applies.

``python -m tests.connected.batch_consumer DATABASE_URL BOOTSTRAP``. The handler of the
event for request ``stall`` waits for advisory lock 42 after its row is written: a test
holding that lock keeps the batch's transaction open, mid-batch, for as long as it likes.
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.core import ModelCompleted
from contracts.topics import CORE_EVENTS
from servicekit.consumer import EventConsumer
from servicekit.db import UnitOfWork, make_engine
from servicekit.outbox import OutboxWriter
from servicekit.tracing import Tracing

GROUP = "batchkill"
STALL_LOCK = 42


async def effect(uow: UnitOfWork, event: ModelCompleted) -> None:
    await uow.session.execute(
        text("INSERT INTO effects (request_id) VALUES (:r)"), {"r": event.request_id}
    )
    if event.request_id == "stall":
        await uow.session.execute(text(f"SELECT pg_advisory_xact_lock_shared({STALL_LOCK})"))


async def main(database_url: str, bootstrap: str) -> None:
    sessions = async_sessionmaker(
        make_engine(database_url), class_=AsyncSession, expire_on_commit=False
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    await EventConsumer(
        service=GROUP,
        topics=(CORE_EVENTS,),
        bootstrap_servers=bootstrap,
        uow_factory=lambda: UnitOfWork(sessions, OutboxWriter("/test")),
        handlers={ModelCompleted: effect},
        dead_letter_producer=producer,
        tracer=Tracing(GROUP).tracer,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    ).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
