"""The dead letters a consumer keeps in its own database, and their lifecycle.

parked --apply--> redriven    (a re-drive applied it)
parked --skip---> skipped     (a re-drive found it applied already: the inbox had its id)
parked --fail---> parked      (a re-drive failed again; the row says why)

A row keeps the record as it came (value and headers), so a re-drive decodes and
applies exactly what the consumer could not.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import Gauge
from sqlalchemy import MetaData, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import UnitOfWork
from servicekit.envelope import Headers, header_map
from servicekit.resilience import Backoff
from servicekit.statemachine import TransitionTable
from servicekit.tables import dead_letters_table

log = structlog.get_logger(__name__)

DEAD_LETTERS = dead_letters_table(MetaData())

PARKED = Gauge(
    "dead_letters_parked",
    "Dead letters kept in the service's database and not re-driven yet",
    ["service"],
)


class Status(StrEnum):
    PARKED = "parked"
    REDRIVEN = "redriven"
    SKIPPED = "skipped"


class Action(StrEnum):
    APPLY = "apply"
    SKIP = "skip"
    FAIL = "fail"


LIFECYCLE: TransitionTable[Status, Action] = TransitionTable(
    "dead letter",
    {
        (Status.PARKED, Action.APPLY): Status.REDRIVEN,
        (Status.PARKED, Action.SKIP): Status.SKIPPED,
        (Status.PARKED, Action.FAIL): Status.PARKED,
    },
)


@dataclass(frozen=True)
class DeadLetter:
    id: int
    consumer: str
    topic: str
    partition: int
    offset: int
    event_id: str
    ce_type: str
    key: str | None
    headers: list[list[str]]
    value: bytes | None
    error: str
    attempts: int
    status: str
    redrives: int
    outcome: str | None
    dead_lettered_at: datetime
    redriven_at: datetime | None

    def record_headers(self) -> Headers:
        return [(name, base64.b64decode(value)) for name, value in self.headers]


async def record_dead_letter(
    uow_factory: Callable[[], UnitOfWork],
    group_id: str,
    record: ConsumerRecord,
    error: BaseException,
    attempts: int,
) -> None:
    """Keep ``record`` as a parked dead letter of ``group_id`` (once per record)."""
    headers = header_map(record.headers)
    async with uow_factory() as uow:
        await uow.session.execute(
            insert(DEAD_LETTERS)
            .values(
                consumer=group_id,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                event_id=headers.get("ce_id", ""),
                ce_type=headers.get("ce_type", ""),
                key=(record.key or b"").decode("utf-8", "replace") or None,
                headers=[
                    [name, base64.b64encode(value or b"").decode()]
                    for name, value in record.headers or ()
                ],
                value=record.value,
                error=f"{type(error).__name__}: {error}"[:4000],
                attempts=attempts,
                status=Status.PARKED.value,
            )
            .on_conflict_do_nothing(constraint="uq_dead_letters_record")
        )
        await uow.commit()


async def park(
    uow_factory: Callable[[], UnitOfWork],
    producer: AIOKafkaProducer,
    *,
    service: str,
    group_id: str,
    topic: str,
    record: ConsumerRecord,
    error: BaseException,
    attempts: int,
) -> None:
    """What a consumer does with a record it gives up on: kept in the database first (the
    embedded broker keeps topics in memory only), then published on the dead-letter
    ``topic`` with the error in its headers; each retried until taken: moving on without
    it would lose it."""
    headers = [
        *(record.headers or ()),
        ("dlt_error", f"{type(error).__name__}: {error}"[:4000].encode()),
        ("dlt_original_topic", record.topic.encode()),
        ("dlt_original_partition", str(record.partition).encode()),
        ("dlt_original_offset", str(record.offset).encode()),
        ("dlt_consumer_group", group_id.encode()),
        ("dlt_attempts", str(attempts).encode()),
    ]
    retries = Backoff(0.5, 5.0).retries()
    while True:
        try:
            await record_dead_letter(uow_factory, group_id, record, error, attempts)
            PARKED.labels(service).inc()  # the redriver's count corrects it
            break
        except Exception as exc:
            log.warning("dead letter not stored yet", error=repr(exc))
            await asyncio.sleep(retries.next_delay())
    retries.reset()
    while True:
        try:
            await producer.send_and_wait(topic, record.value, key=record.key, headers=headers)
            break
        except Exception as exc:
            log.warning("dead-letter publish failed", error=str(exc))
            await asyncio.sleep(retries.next_delay())


async def count_parked(session: AsyncSession) -> int:
    query = select(func.count()).where(DEAD_LETTERS.c.status == Status.PARKED.value)
    return int(await session.scalar(query) or 0)


async def select_dead_letters(
    session: AsyncSession,
    *,
    status: Status | None = Status.PARKED,
    ids: list[int] | None = None,
    event_type: str | None = None,
    limit: int = 100,
    for_update: bool = False,
) -> list[DeadLetter]:
    query = select(DEAD_LETTERS).order_by(DEAD_LETTERS.c.id).limit(limit)
    if status is not None:
        query = query.where(DEAD_LETTERS.c.status == status.value)
    if ids:
        query = query.where(DEAD_LETTERS.c.id.in_(ids))
    if event_type:
        query = query.where(DEAD_LETTERS.c.ce_type.contains(event_type))
    if for_update:
        query = query.with_for_update()
    rows = (await session.execute(query)).mappings().all()
    return [DeadLetter(**row) for row in rows]


async def move(session: AsyncSession, letter: DeadLetter, action: Action, outcome: str) -> None:
    """The re-drive's outcome on the row, in the caller's transaction."""
    status = LIFECYCLE.next(letter.id, Status(letter.status), action)
    values: dict[str, Any] = {
        "status": status.value,
        "outcome": outcome[:4000],
        "redrives": DEAD_LETTERS.c.redrives + 1,
        "redriven_at": func.now(),
    }
    await session.execute(
        update(DEAD_LETTERS).where(DEAD_LETTERS.c.id == letter.id).values(**values)
    )
