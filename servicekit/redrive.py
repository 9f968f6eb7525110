"""Re-driving a service's dead letters through the consumer's own path.

A re-drive decodes the stored record and, in one transaction, claims its event id in
the consumer's inbox, runs the handler and records the outcome on the dead letter:
an event applied meanwhile (a re-publish, an earlier re-drive) is skipped, and one
that fails again stays parked with the new error. A dry run says what each would do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import Event
from servicekit.consumer import Handler
from servicekit.db import UnitOfWork
from servicekit.dead_letters import (
    PARKED,
    Action,
    DeadLetter,
    Status,
    count_parked,
    move,
    select_dead_letters,
)
from servicekit.envelope import UndecodableMessage, decode
from servicekit.inbox import INBOX, claim

log = structlog.get_logger(__name__)


REDRIVES = Counter(
    "dead_letter_redrives_total",
    "Dead letters re-driven by an admin, by outcome (applied, skipped, failed)",
    ["service", "outcome"],
)


class Subscription(Protocol):
    topics: tuple[str, ...]
    handlers: Mapping[type[Event], Handler]
    uow_factory: Callable[[], UnitOfWork]


class NotParked(Exception):
    """Someone else re-drove it meanwhile."""


@dataclass(frozen=True)
class Outcome:
    letter: DeadLetter
    outcome: str  # applied | skipped | failed | would_apply | would_skip
    detail: str = ""


class DeadLetterRedriver:
    def __init__(
        self,
        service: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        subscriptions: Sequence[Subscription],
    ) -> None:
        self.service = service
        self.sessionmaker = sessionmaker
        self.subscriptions = subscriptions

    async def count_parked(self) -> int:
        """Count the parked dead letters into the ``dead_letters_parked`` gauge."""
        async with self.sessionmaker() as session:
            parked = await count_parked(session)
        PARKED.labels(self.service).set(parked)
        return parked

    async def watch(self, interval_s: float = 10.0) -> None:
        while True:
            try:
                await self.count_parked()
            except Exception as exc:  # the database is away: next time
                log.debug("dead letters not counted", error=repr(exc))
            await asyncio.sleep(interval_s)

    async def list(self, status: Status | None, **filters: Any) -> list[DeadLetter]:
        async with self.sessionmaker() as session:
            return await select_dead_letters(session, status=status, **filters)

    async def redrive(self, *, dry_run: bool, **filters: Any) -> list[Outcome]:
        """Re-drive the parked dead letters the filters select (ids, event_type, limit)."""
        outcomes = []
        for letter in await self.list(Status.PARKED, **filters):
            if dry_run:
                outcomes.append(await self._preview(letter))
            else:
                outcomes.append(await self._redrive_one(letter.id))
        if not dry_run:
            await self.count_parked()
        return outcomes

    async def _preview(self, letter: DeadLetter) -> Outcome:
        async with self.sessionmaker() as session:
            applied = await session.scalar(
                select(INBOX.c.event_id).where(
                    INBOX.c.event_id == letter.event_id, INBOX.c.consumer == letter.consumer
                )
            )
        return Outcome(letter, "would_skip" if applied else "would_apply")

    def _route(self, letter: DeadLetter) -> tuple[Subscription, Handler]:
        for sub in self.subscriptions:
            if letter.topic in sub.topics:
                handlers = {c.ce_type(): h for c, h in sub.handlers.items()}
                handler = handlers.get(letter.ce_type)
                if handler is not None:
                    return sub, handler
        raise UndecodableMessage(f"no handler for {letter.ce_type or 'it'} on {letter.topic}")

    async def _redrive_one(self, id: int) -> Outcome:
        error: Exception
        try:
            letter = await self._get(id)
            if letter is None or letter.status != Status.PARKED:
                raise NotParked(f"dead letter {id} is no longer parked")
            sub, handler = self._route(letter)
            envelope = decode(letter.value or b"", letter.record_headers())
            async with sub.uow_factory() as uow:
                letter = await self._get(id, uow.session)
                if letter is None or letter.status != Status.PARKED:
                    raise NotParked(f"dead letter {id} is no longer parked")
                if not await claim(uow.sql, letter.consumer, letter.topic, envelope):
                    await move(uow.session, letter, Action.SKIP, "skipped: already applied")
                    await uow.commit()
                    return await self._done(letter, "skipped", "already applied")
                await handler(uow, envelope.event)
                await move(uow.session, letter, Action.APPLY, "applied")
                await uow.commit()
                return await self._done(letter, "applied")
        except NotParked as exc:
            found = await self._get(id)
            assert found is not None
            return Outcome(found, "conflict", str(exc))
        except Exception as exc:
            error = exc
        first_line = (str(error).splitlines() or [""])[0]  # not the statement and its values
        detail = f"{type(error).__name__}: {first_line}"
        async with self.sessionmaker() as session, session.begin():
            letter = await self._get(id, session)
            assert letter is not None
            await move(session, letter, Action.FAIL, f"failed: {detail}")
        log.warning("dead letter re-drive failed", dead_letter_id=id, error=detail)
        REDRIVES.labels(self.service, "failed").inc()
        return Outcome(await self._get(id) or letter, "failed", detail)

    async def _done(self, letter: DeadLetter, outcome: str, detail: str = "") -> Outcome:
        REDRIVES.labels(self.service, outcome).inc()
        log.info(
            "dead letter re-driven",
            dead_letter_id=letter.id,
            event_id=letter.event_id,
            event_type=letter.ce_type,
            outcome=outcome,
        )
        return Outcome(await self._get(letter.id) or letter, outcome, detail)

    async def _get(self, id: int, session: AsyncSession | None = None) -> DeadLetter | None:
        """One dead letter; locked when read in the caller's ``session``."""
        if session is None:
            async with self.sessionmaker() as own:
                found = await select_dead_letters(own, status=None, ids=[id], limit=1)
        else:
            found = await select_dead_letters(
                session, status=None, ids=[id], limit=1, for_update=True
            )
        return found[0] if found else None
