"""HTTP routes of the notice service: the notifications, read-only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from notice import handlers
from notice.repository import NoticeUnitOfWork, Notification
from servicekit.auth import Caller, listing_for
from servicekit.http import (
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


@router.get("")
async def list_all(
    uow: Uow,
    who: Caller,
    user_id: UserFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[NoticeOut]:
    return [
        NoticeOut.of(n)
        for n in await handlers.list_notices(uow, listing_for(who, user_id), limit, offset)
    ]


@router.get("/{id}")
async def read(uow: Uow, who: Caller, id: PositiveId) -> NoticeOut:
    notice = await handlers.get(uow, id)
    ensure_visible(who, notice.user_id, "notice", id)
    return NoticeOut.of(notice)
