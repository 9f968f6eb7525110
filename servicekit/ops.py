"""The admin's re-drive API every consuming service mounts under its own prefix.

- ``GET  {prefix}/ops/dead-letters``            parked ones (``status``: or all, ...)
- ``POST {prefix}/ops/dead-letters/redrive``    a dry run unless ``dryRun=false``
- ``GET  {prefix}/ops/failed``                  the service's own failed things (``kind``, ``id``)
- ``POST {prefix}/ops/failed/redrive``          a dry run unless ``dryRun=false``
- ``POST {prefix}/ops/failed/{id}/redrive``     that one, now; 409 unless it is failed

A service's failed things (core's jobs and LMS sends, notice's chat messages) are
re-driven through their own lifecycle (a ``redrive`` transition back to where they
are tried again); a second re-drive of one that is pending again is a 409 for the
single route and selects nothing in the batch one (only failed things are selected).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Protocol

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator

from servicekit.auth import Caller, caller, require_admin
from servicekit.dead_letters import DeadLetter, Status
from servicekit.http import ONE_LINE, Id, Limit, PositiveId, Schema, optional_line
from servicekit.redrive import DeadLetterRedriver, Outcome
from servicekit.runtime import ServiceRuntime
from servicekit.statemachine import IllegalTransition

Ids = Annotated[list[Id] | None, Query(alias="id", max_length=1000)]
EventType = Annotated[
    str | None,
    Query(alias="eventType", max_length=255, json_schema_extra=ONE_LINE),
    AfterValidator(optional_line),
]
DryRun = Annotated[bool, Query(alias="dryRun")]


class Stuck(Schema):
    """One failed thing a service can try again."""

    id: int
    kind: str
    subject: str  # what it is about, e.g. "target request 12"
    state: str
    error: str | None
    attempts: int
    redrives: int
    since: datetime


class FailedThings(Protocol):
    kinds: tuple[str, ...]

    async def failed(self, kind: str | None, ids: list[int] | None, limit: int) -> list[Stuck]: ...

    async def redrive(self, id: int) -> Stuck:
        """Back to be tried again; raises NotFound, or IllegalTransition unless failed."""
        ...


class DeadLetterOut(Schema):
    id: int
    consumer: str
    topic: str
    partition: int
    offset: int
    event_id: str
    event_type: str
    key: str | None
    error: str
    attempts: int
    status: str
    redrives: int
    outcome: str | None
    dead_lettered_at: datetime
    redriven_at: datetime | None

    @classmethod
    def of(cls, d: DeadLetter) -> DeadLetterOut:
        return cls(
            id=d.id,
            consumer=d.consumer,
            topic=d.topic,
            partition=d.partition,
            offset=d.offset,
            event_id=d.event_id,
            event_type=d.ce_type,
            key=d.key,
            error=d.error,
            attempts=d.attempts,
            status=d.status,
            redrives=d.redrives,
            outcome=d.outcome,
            dead_lettered_at=d.dead_lettered_at,
            redriven_at=d.redriven_at,
        )


class DeadLetterRedrive(Schema):
    dead_letter: DeadLetterOut
    outcome: str  # would_apply | would_skip | applied | skipped | failed | conflict
    detail: str

    @classmethod
    def of(cls, o: Outcome) -> DeadLetterRedrive:
        return cls(dead_letter=DeadLetterOut.of(o.letter), outcome=o.outcome, detail=o.detail)


class StuckRedrive(Schema):
    item: Stuck
    outcome: str  # would_redrive | redriven | conflict


class RedriveReport(Schema):
    dry_run: bool
    dead_letters: list[DeadLetterRedrive] = []
    failed: list[StuckRedrive] = []


def ops_router(
    prefix: str, redriver: DeadLetterRedriver, failed: FailedThings | None = None
) -> APIRouter:
    router = APIRouter(prefix=f"{prefix}/ops", tags=["ops"])

    @router.get("/dead-letters")
    async def list_dead_letters(
        who: Caller,
        status: Literal["parked", "redriven", "skipped", "all"] = "parked",
        event_type: EventType = None,
        ids: Ids = None,
        limit: Limit = 100,
    ) -> list[DeadLetterOut]:
        require_admin(who, "see dead letters")
        chosen = None if status == "all" else Status(status)
        found = await redriver.list(chosen, ids=ids, event_type=event_type, limit=limit)
        return [DeadLetterOut.of(d) for d in found]

    @router.post("/dead-letters/redrive")
    async def redrive_dead_letters(
        who: Caller,
        dry_run: DryRun = True,
        event_type: EventType = None,
        ids: Ids = None,
        limit: Limit = 100,
    ) -> RedriveReport:
        require_admin(who, "re-drive dead letters")
        outcomes = await redriver.redrive(
            dry_run=dry_run, ids=ids, event_type=event_type, limit=limit
        )
        return RedriveReport(
            dry_run=dry_run, dead_letters=[DeadLetterRedrive.of(o) for o in outcomes]
        )

    if failed is None:
        return router
    things = failed

    def known(kind: str | None) -> str | None:
        if kind is not None and kind not in things.kinds:
            raise RequestValidationError(
                [
                    {
                        "type": "enum",
                        "loc": ("query", "kind"),
                        "msg": f"must be one of {', '.join(things.kinds)}",
                        "input": kind,
                    }
                ]
            )
        return kind

    @router.get("/failed")
    async def list_failed(
        who: Caller, kind: str | None = None, ids: Ids = None, limit: Limit = 100
    ) -> list[Stuck]:
        require_admin(who, "see failed work")
        return await things.failed(known(kind), ids, limit)

    @router.post("/failed/redrive")
    async def redrive_failed(
        who: Caller, dry_run: DryRun = True, kind: str | None = None, ids: Ids = None
    ) -> RedriveReport:
        require_admin(who, "re-drive failed work")
        chosen = await things.failed(known(kind), ids, 1000)
        report = []
        for stuck in chosen:
            if dry_run:
                report.append(StuckRedrive(item=stuck, outcome="would_redrive"))
                continue
            try:
                report.append(StuckRedrive(item=await things.redrive(stuck.id), outcome="redriven"))
            except IllegalTransition:  # re-driven by someone else meanwhile
                report.append(StuckRedrive(item=stuck, outcome="conflict"))
        return RedriveReport(dry_run=dry_run, failed=report)

    @router.post("/failed/{id}/redrive")
    async def redrive_one(who: Caller, id: PositiveId) -> Stuck:
        require_admin(who, "re-drive failed work")
        return await things.redrive(id)

    return router


def mount_ops(
    app: FastAPI, runtime: ServiceRuntime, prefix: str, failed: FailedThings | None = None
) -> None:
    """Add the re-drive API to a service's app (every route needs a valid token)."""
    redriver = DeadLetterRedriver(
        runtime.settings.service_name, runtime.sessionmaker, runtime.subscriptions
    )
    app.include_router(ops_router(prefix, redriver, failed), dependencies=[Depends(caller)])
    runtime.run_worker("dead-letters", redriver.watch)
