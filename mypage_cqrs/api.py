"""HTTP routes of mypage_cqrs: read-only, each one call into handlers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import AfterValidator, Field

from mypage_cqrs import handlers
from mypage_cqrs.repository import MypageUnitOfWork
from mypage_cqrs.timeline import Entry, Kind
from mypage_cqrs.view import MyRequest
from servicekit.auth import Caller, listing_for
from servicekit.http import (
    Limit,
    Offset,
    PositiveId,
    Schema,
    UserFilter,
    ensure_visible,
    one_line,
    unit_of_work,
)


class MyRequestOut(Schema):
    id: str
    kind: str
    request_id: int
    user_id: str
    name: str | None
    model_request_id: int | None
    state: str
    progress: int
    step: int
    total_steps: int
    reason: str | None
    lms_status: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: MyRequest) -> MyRequestOut:
        return cls(
            id=row.id,
            kind=row.kind,
            request_id=row.request_id,
            user_id=row.user_id or "",
            name=row.name,
            model_request_id=row.model_request_id,
            state=row.state or "",
            progress=row.progress,
            step=row.step,
            total_steps=row.total_steps,
            reason=row.shown_reason,
            lms_status=row.lms_status,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class TimelineEntryOut(Schema):
    """One thing that happened to the request, from one event."""

    at: datetime = Field(description="when it happened: the event's own time")
    kind: Kind = Field(
        description="state: a state change; batch: a Vertica batch read for a training step; "
        "progress: a training step done; check: the compensation check (core asked model "
        "whether the request was cancelled before completing it) or model refusing a "
        "completion; job: core's job ended otherwise (stopped, failed, extraction done); "
        "lms: the LMS bulk send to MIDAS"
    )
    state: str | None = Field(description="the state it reached (state, check, job, lms)")
    actor: str | None = Field(
        description="who: a user id (requester, approving/rejecting admin, who cancelled), or "
        "core / model / target for what the platform did; null on events older than the field"
    )
    reason: str | None = Field(description="why: rejection, cancellation or failure reason")
    event_type: str = Field(description="the event it comes from, e.g. Approved, ModelProgressed")
    event_id: str = Field(description="the event's id (a chat notice's eventId names it too)")
    detail: dict[str, Any] = Field(
        description="by kind: state {previousState, step?, totalSteps?, progress?}; "
        "batch {jobId, batch, offset, rows, totalRows}; progress {jobId, step, totalSteps, "
        "progress}; check {jobId, outcome, modelState?, tries?}; job {jobId}; "
        "lms {jobId, midasSendId?}"
    )

    @classmethod
    def of(cls, e: Entry) -> TimelineEntryOut:
        return cls.model_validate(e, from_attributes=True)


class TimelineOut(Schema):
    request: MyRequestOut = Field(description="the request as GET /myRequests/{id} shows it")
    entries: list[TimelineEntryOut] = Field(description="what happened to it, oldest first")


Uow = Annotated[MypageUnitOfWork, Depends(unit_of_work)]

router = APIRouter(prefix="/myRequests", tags=["myRequests"])


@router.get("")
async def list_all(
    uow: Uow,
    who: Caller,
    user_id: UserFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[MyRequestOut]:
    """A user's requests (all users' without ``userId``), oldest first."""
    return [
        MyRequestOut.of(r)
        for r in await handlers.list_requests(uow, listing_for(who, user_id), limit, offset)
    ]


@router.get("/{id}")
async def read(
    uow: Uow, who: Caller, id: Annotated[str, Path(max_length=64), AfterValidator(one_line)]
) -> MyRequestOut:
    """One request by view id: ``model-1`` or ``target-2``."""
    row = await handlers.get(uow, id)
    ensure_visible(who, row.user_id, "my request", id)
    return MyRequestOut.of(row)


@router.get(
    "/{kind}/{id}/timeline",
    responses={404: {"description": "no such request, or someone else's (the same answer)"}},
)
async def request_timeline(
    uow: Uow, who: Caller, kind: Literal["model", "target"], id: PositiveId
) -> TimelineOut:
    """Everything that happened to one request, built from the events: each state change
    with time, actor and reason, the training steps and Vertica batches, the compensation
    check, the LMS send. Someone else's request is a 404, as a missing one."""
    row, entries = await handlers.request_timeline(uow, kind, id)
    ensure_visible(who, row.user_id, "my request", row.id)
    return TimelineOut(
        request=MyRequestOut.of(row), entries=[TimelineEntryOut.of(e) for e in entries]
    )
