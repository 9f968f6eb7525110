"""HTTP routes of the notice service: the notifications, read-only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError

from notice import handlers
from notice.repository import NoticeUnitOfWork, Notification
from servicekit.auth import Caller, listing_for
from servicekit.http import (
    MAX_ID,
    Limit,
    Offset,
    PositiveId,
    Schema,
    UserFilter,
    ensure_visible,
    unit_of_work,
)


class NoticeOut(Schema):
    id: int
    event_id: str
    event_type: str
    user_id: str | None
    request_kind: str
    request_id: int
    text: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    redrives: int

    @classmethod
    def of(cls, n: Notification) -> NoticeOut:
        return cls(
            id=n.id,
            event_id=n.event_id,
            event_type=n.event_type,
            user_id=n.user_id,
            request_kind=n.request_kind,
            request_id=n.request_id,
            text=n.text,
            status=n.status,
            attempts=n.attempts,
            last_error=n.last_error,
            created_at=n.created_at,
            sent_at=n.sent_at,
            redrives=n.redrives,
        )


Uow = Annotated[NoticeUnitOfWork, Depends(unit_of_work)]

router = APIRouter(prefix="/notices", tags=["notices"])


RequestKind = Annotated[Literal["model", "target"] | None, Query(alias="requestKind")]
RequestId = Annotated[int | None, Query(alias="requestId", ge=1, le=MAX_ID)]


@router.get("")
async def list_all(
    uow: Uow,
    who: Caller,
    user_id: UserFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
    request_kind: RequestKind = None,
    request_id: RequestId = None,
) -> list[NoticeOut]:
    """Chat notifications, oldest first: a user's own (admins: anyone's, or all), of one
    request with ``requestKind`` and ``requestId`` (e.g. for the request's timeline)."""
    owner = listing_for(who, user_id)
    if request_kind is None and request_id is None:
        found = await handlers.list_notices(uow, owner, limit, offset)
    else:
        found = await _of_request(uow, owner, _request(request_kind, request_id), limit, offset)
    return [NoticeOut.of(n) for n in found]


def _request(kind: str | None, id: int | None) -> tuple[str, int]:
    if kind is None or id is None:
        missing = "requestKind" if kind is None else "requestId"
        other = "requestId" if kind is None else "requestKind"
        error = {"type": "missing", "loc": ("query", missing), "msg": f"required with {other}"}
        raise RequestValidationError([error])
    return kind, id


async def _of_request(
    uow: NoticeUnitOfWork, owner: str | None, request: tuple[str, int], limit: int, offset: int
) -> list[Notification]:
    async with uow:
        return await uow.notifications.list(owner, limit, offset, request=request)


@router.get("/{id}")
async def read(uow: Uow, who: Caller, id: PositiveId) -> NoticeOut:
    notice = await handlers.get(uow, id)
    ensure_visible(who, notice.user_id, "notice", id)
    return NoticeOut.of(notice)
