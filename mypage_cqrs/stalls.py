"""Stalled sagas, seen from the read model: requests that have not moved for too long.

mypage_cqrs consumes every event of every saga (model's, target's and core's), so its
rows say, for each request, its state and when an event last changed it. A saga is
stalled when a request sits longer than ``SAGA_STALL_AFTER_S`` where the saga should
move on by itself:

- ``approved_no_job``: a model approved, and no training step since (no job started);
- ``job_finished_no_outcome``: every training step done, and no outcome (the model
  neither completed nor failed);
- ``job_silent``: a model in training with no step for that long;
- ``target_not_moving``: a target approved whose model completed, not extracted;
- ``lms_no_outcome``: a target extracted, and neither LmsSent nor LmsFailed.

A request waiting on a person (requested: an admin's decision) or finished is never
stalled. The count is the ``saga_stalled_requests`` gauge (refreshed every
``STALL_CHECK_INTERVAL_S``), alerted on; the list is ``GET /myRequests/ops/stalls``
(admins), which ``nocode status`` shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import Gauge
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.model import ModelState
from contracts.target import TargetState
from mypage_cqrs.tables import my_requests
from servicekit.auth import Caller, caller, require_admin
from servicekit.http import Schema

log = structlog.get_logger(__name__)

REASONS = {
    "model": ("approved_no_job", "job_finished_no_outcome", "job_silent"),
    "target": ("target_not_moving", "lms_no_outcome"),
}
STALLED = Gauge(
    "saga_stalled_requests",
    "Requests whose saga has not moved for longer than SAGA_STALL_AFTER_S, by flow and reason",
    ["flow", "reason"],
)


class Stall(Schema):
    id: str
    kind: str
    request_id: int
    user_id: str | None
    name: str | None
    state: str
    reason: str
    since: datetime
    stalled_for_s: float


async def find_stalls(session: AsyncSession, now: datetime, after: timedelta) -> list[Stall]:
    r, m = my_requests, my_requests.alias("model")
    cutoff = now - after
    still = r.c.updated_at < cutoff
    model = r.c.kind == "model"
    reasons = [
        ("approved_no_job", and_(model, r.c.state == ModelState.APPROVED.value, still)),
        (
            "job_finished_no_outcome",
            and_(
                model,
                r.c.state == ModelState.IN_PROGRESS.value,
                r.c.total_steps > 0,
                r.c.step >= r.c.total_steps,
                still,
            ),
        ),
        (
            "job_silent",
            and_(
                model, r.c.state == ModelState.IN_PROGRESS.value, r.c.step < r.c.total_steps, still
            ),
        ),
        (
            "lms_no_outcome",
            and_(
                r.c.kind == "target",
                r.c.state == TargetState.COMPLETED.value,
                r.c.lms_status.is_(None),
                still,
            ),
        ),
    ]
    found: list[Stall] = []
    for reason, where in reasons:
        rows = (await session.execute(select(r).where(where).order_by(r.c.updated_at))).all()
        found += [_stall(row, reason, row.updated_at, now) for row in rows]
    # A target waits on its model: stalled once both stood still for long enough.
    since = func.greatest(r.c.updated_at, m.c.updated_at).label("since")
    query = (
        select(r, since)
        .join(m, and_(m.c.kind == "model", m.c.request_id == r.c.model_request_id))
        .where(
            r.c.kind == "target",
            r.c.state == TargetState.APPROVED.value,
            m.c.state == ModelState.COMPLETED.value,
        )
        .where(since < cutoff)
        .order_by(since)
    )
    for row in (await session.execute(query)).all():
        found.append(_stall(row, "target_not_moving", row.since, now))
    return found


def _stall(row: Any, reason: str, since: datetime, now: datetime) -> Stall:
    return Stall(
        id=row.id,
        kind=row.kind,
        request_id=row.request_id,
        user_id=row.user_id,
        name=row.name,
        state=row.state,
        reason=reason,
        since=since,
        stalled_for_s=round((now - since).total_seconds(), 1),
    )


def count(stalls: list[Stall]) -> None:
    """Set the gauge: every flow and reason, zero included (so alerts see the series)."""
    for flow, reasons in REASONS.items():
        for reason in reasons:
            n = sum(1 for s in stalls if s.kind == flow and s.reason == reason)
            STALLED.labels(flow, reason).set(n)


class StallWatch:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        after_s: float,
        interval_s: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessionmaker = sessionmaker
        self.after = timedelta(seconds=after_s)
        self.interval_s = interval_s
        self.now = now

    async def stalls(self) -> list[Stall]:
        async with self.sessionmaker() as session:
            return await find_stalls(session, self.now(), self.after)

    async def run(self) -> None:
        count([])
        while True:
            try:
                stalls = await self.stalls()
                count(stalls)
                if stalls:
                    log.warning(
                        "sagas stalled",
                        count=len(stalls),
                        requests=[f"{s.id} ({s.reason})" for s in stalls[:20]],
                    )
            except Exception as exc:  # the database is away: try again next time
                log.warning("stalls not checked", error=repr(exc))
            await asyncio.sleep(self.interval_s)


def mount_stalls(app: FastAPI, watch: StallWatch) -> None:
    router = APIRouter(prefix="/myRequests/ops", tags=["ops"])

    @router.get("/stalls")
    async def list_stalls(who: Caller) -> list[Stall]:
        require_admin(who, "see stalled sagas")
        return await watch.stalls()

    app.include_router(router, dependencies=[Depends(caller)])
