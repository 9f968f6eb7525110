"""HTTP routes of core: the jobs, read-only (thin, each one call into handlers)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from core import handlers
from core.domain import Job, Kind, State
from core.repository import CoreUnitOfWork
from servicekit.auth import Caller, listing_for
from servicekit.http import (
    Limit,
    NotFound,
    Offset,
    PositiveId,
    Schema,
    UserFilter,
    ensure_visible,
    unit_of_work,
)


class JobOut(Schema):
    id: int
    kind: str
    request_id: str
    user_id: str
    name: str
    state: str
    step: int
    total_steps: int
    attempts: int
    max_attempts: int
    cancel_requested: bool
    reason: str | None
    last_error: str | None
    available_at: datetime
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls.model_validate(job, from_attributes=True)


Uow = Annotated[CoreUnitOfWork, Depends(unit_of_work)]

router = APIRouter(prefix="/cores", tags=["cores"])


@router.get("")
async def list_all(
    uow: Uow,
    who: Caller,
    user_id: UserFilter = None,
    state: State | None = None,
    kind: Kind | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[JobOut]:
    return [
        JobOut.of(j)
        for j in await handlers.list_jobs(
            uow, listing_for(who, user_id), state, kind, limit, offset
        )
    ]


@router.get("/{id}")
async def read(uow: Uow, who: Caller, id: PositiveId) -> JobOut:
    job = await handlers.get(uow, id)
    ensure_visible(who, job.user_id, "job", id)
    return JobOut.of(job)


@router.get("/{id}/artifact", responses={200: {"content": {"application/json": {}}}})
async def artifact(request: Request, uow: Uow, who: Caller, id: PositiveId) -> Response:
    """The trained model's card (core.artifact): its owner's and admins' only."""
    job = await handlers.get(uow, id)
    ensure_visible(who, job.user_id, "job", id)
    body = request.app.state.artifacts.read(id) if job.state == State.COMPLETED else None
    if body is None:
        raise NotFound("artifact of job", id)
    return Response(body, media_type="application/json")
